"""The knowledge graph: sources, the snapshot format, ids and the CSR graph."""
