"""RDF: parsing (N-Triples/N-Quads fast path, pyoxigraph for every format),
the mapping from RDF statements to raw rows, and exporting a benchmark as RDF."""
