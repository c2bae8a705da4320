"""A synthetic knowledge graph with the shape of a real one, at any size.

For measuring how kgscale's cost grows with the graph (``bench/scale.py``)
without a 20M-triple download. The shape is what drives the cost:

- **power-law degrees**: both ends of a triple are drawn from a Zipf-like
  law over entities (weight of entity i ~ (i + 1)^-alpha, alpha 0.8 by
  default), so a few hubs have degrees in the hundreds of thousands and the
  median entity a handful, as in Wikidata5M; every entity heads at least one
  triple, so none is isolated;
- **skewed relations**: a few hundred relations with Zipf frequencies
  (exponent 1.1 by default: the commonest takes about a fifth of the triples);
- **text**: every entity has a name made of syllables and a short
  description naming its kind and another entity; every relation a readable
  text (``has member``, ``located in``);
- **splits**: valid and test are random triples (``valid_fraction``,
  ``test_fraction``) whose entities and relation all occur in train (one that
  does not, goes back to train), disjoint from train and from each other; no
  triple occurs twice and there are no self-loops (a drawn loop's tail moves
  to the next id).

Written as a benchmark directory (``train.txt``, ``valid.txt``,
``test.txt``, ``entities.tsv``, ``relations.tsv``: what the dataset registry
resolves WN18RR to, so ``kgscale ingest DIR`` reads it) and as N-Triples, plain
(``nt/``) and gzipped (``nt_gz/``): one file per split plus ``text.nt`` with
the names (``rdfs:label``) and descriptions (``rdfs:comment``).

**Reproducible**: the same config gives the same bytes. Random numbers come
from one generator per fixed-size chunk (seeded from ``(seed, chunk)``),
gzip headers carry no time or name.

**Memory**: the triples are held as int32 columns (12 bytes a triple, plus
the de-duplication's key and sort, about 24 more while it runs: 0.8 GB at 20M
triples), never as Python objects; text is formatted and written a chunk at a time with Arrow's
string kernels.
"""
from __future__ import annotations

import gzip
import json
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Rows generated (and formatted) per chunk; part of the seed schedule, so
# changing it changes the output.
CHUNK = 1 << 20
ENTITY_IRI = "http://kgscale.example/entity/"
RELATION_IRI = "http://kgscale.example/relation/"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
SPLIT_FILES = ("train", "valid", "test")

_SYLLABLES = ("ka ri to mel an vor sil du ne pa lo gra thi ben cor ul fen zo mar is "
              "te yan bru os lin qua det hal ro mi sen ar").split()
_KINDS = ("person city river album film species company village song novel mountain "
          "university painting protein church lake ship school football club award "
          "language galaxy island journal").split(" ")
_VERBS = ("has", "located in", "member of", "part of", "born in", "works for", "created by", "written by",
          "capital of", "spouse of", "followed by", "based on", "named after", "instance of", "subclass of",
          "received", "genre of", "plays for", "directed by", "flows into")
_NOUNS = ("", "member", "part", "author", "editor", "owner", "founder", "parent", "child", "sibling",
          "neighbour", "successor", "predecessor", "sponsor", "student", "teacher", "host", "partner",
          "label", "sequel", "origin", "twin", "rival", "patron", "heir", "ally", "guest", "mentor",
          "agent", "heirloom")


@dataclass(frozen=True)
class SyntheticKGConfig:
    triples: int = 100_000
    # None: triples / 4.5 (Wikidata5M: 20.6M triples over 4.6M entities)
    entities: int | None = None
    relations: int = 300
    seed: int = 0
    # degree law of entities and frequency law of relations (Zipf exponents)
    entity_alpha: float = 0.8
    relation_alpha: float = 1.1
    valid_fraction: float = 0.01
    test_fraction: float = 0.01

    @property
    def num_entities(self) -> int:
        return self.entities or max(2, int(self.triples / 4.5))

    def check(self) -> None:
        if self.triples < 10:
            raise ValueError(f"triples must be at least 10, got {self.triples}")
        if not 2 <= self.num_entities <= self.triples:
            raise ValueError(f"entities must lie in [2, triples={self.triples}], got {self.num_entities}"
                             " (every entity heads at least one triple)")
        if not 1 <= self.relations <= len(_VERBS) * len(_NOUNS):
            raise ValueError(f"relations must lie in [1, {len(_VERBS) * len(_NOUNS)}], got {self.relations}")
        if self.valid_fraction < 0 or self.test_fraction < 0 or self.valid_fraction + self.test_fraction >= 0.5:
            raise ValueError("valid_fraction and test_fraction must be >= 0 and sum below 0.5")


def _rng(seed: int, stream: int, chunk: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, chunk]))


def _zipf_cdf(n: int, alpha: float) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=np.float64) ** -alpha
    cdf = np.cumsum(w)
    return cdf / cdf[-1]


def _draw(cdf: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    idx = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(idx, len(cdf) - 1).astype(np.int32)


def generate_triples(cfg: SyntheticKGConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(head, relation, tail, split) int32/int8 columns of ``cfg.triples``
    distinct triples, split 0 train, 1 valid, 2 test."""
    cfg.check()
    num_e, num_r, n = cfg.num_entities, cfg.relations, cfg.triples
    ent_cdf = _zipf_cdf(num_e, cfg.entity_alpha)
    rel_cdf = _zipf_cdf(num_r, cfg.relation_alpha)
    # Zipf rank -> entity id, so that hubs are spread over the id (and key) range
    ent_of_rank = _rng(cfg.seed, 0, 0).permutation(num_e).astype(np.int32)
    heads, rels, tails = [], [], []
    drawn, chunk = 0, 0
    target = int(n * 1.03) + 16  # a little more than n: duplicates are dropped
    while True:
        while drawn < target:
            rng = _rng(cfg.seed, 1, chunk)
            size = min(CHUNK, target - drawn)
            h = ent_of_rank[_draw(ent_cdf, rng, size)]
            # the first num_e draws head one triple per entity, so none is isolated
            cover = np.arange(drawn, min(drawn + size, num_e), dtype=np.int32)
            h[:len(cover)] = cover
            r = _draw(rel_cdf, rng, size)
            t = ent_of_rank[_draw(ent_cdf, rng, size)]
            # no self-loops: move the tail to the next id (keeps the head's triple)
            t = np.where(t == h, (t + 1) % num_e, t).astype(np.int32)
            heads.append(h), rels.append(r), tails.append(t)
            drawn += size
            chunk += 1
        head, rel, tail = np.concatenate(heads), np.concatenate(rels), np.concatenate(tails)
        heads, rels, tails = [head], [rel], [tail]
        # the first occurrence of each triple wins (a dropped duplicate has the
        # same head, so coverage is kept); one sort of all the keys
        key = (head.astype(np.int64) * num_r + rel) * num_e + tail
        _, first = np.unique(key, return_index=True)
        del key
        if len(first) >= n:
            break
        target = drawn + int((n - len(first)) * 1.5) + 16
    first.sort()
    first = first[:n]
    head, rel, tail = head[first], rel[first], tail[first]
    return head, rel, tail, _splits(cfg, head, rel, tail)


def _splits(cfg: SyntheticKGConfig, head, rel, tail) -> np.ndarray:
    rng = _rng(cfg.seed, 2, 0)
    u = rng.random(len(head))
    split = np.zeros(len(head), dtype=np.int8)
    split[u < cfg.valid_fraction + cfg.test_fraction] = 2
    split[u < cfg.valid_fraction] = 1
    train = split == 0
    # held-out triples must be answerable: their entities and relation occur
    # in train. Moving one back only adds to train, so one pass suffices.
    seen_e = np.zeros(cfg.num_entities, dtype=bool)
    seen_e[head[train]] = True
    seen_e[tail[train]] = True
    seen_r = np.zeros(cfg.relations, dtype=bool)
    seen_r[rel[train]] = True
    unseen = ~train & ~(seen_e[head] & seen_e[tail] & seen_r[rel])
    split[unseen] = 0
    return split


# ---- text -------------------------------------------------------------------

def _entity_keys(ids: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise("e", pc.cast(ids, pa.string()), "")


def _entity_names(ids: np.ndarray) -> pa.Array:
    """Syllable names: the digits of ``id + base**2`` in base len(_SYLLABLES)
    (so three syllables or more; distinct ids, distinct names), capitalised."""
    syl = pa.array(_SYLLABLES)
    base = len(_SYLLABLES)
    x = ids.astype(np.int64) + base ** 2
    parts, power = [], 1
    while power <= int(x.max(initial=0)):
        digit = pc.take(syl, pa.array((x // power) % base))
        parts.append(pc.if_else(pa.array(x >= power), digit, ""))
        power *= base
    return pc.utf8_capitalize(pc.binary_join_element_wise(*reversed(parts), ""))


def entity_text(cfg: SyntheticKGConfig, lo: int, hi: int) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(key, name, description) of entities lo..hi."""
    ids = np.arange(lo, hi, dtype=np.int64)
    rng = _rng(cfg.seed, 3, lo // CHUNK)
    kind = pc.take(pa.array(_KINDS), pa.array(rng.integers(0, len(_KINDS), hi - lo)))
    other = rng.integers(0, cfg.num_entities, hi - lo)
    desc = pc.binary_join_element_wise(kind, "related to", _entity_names(other), " ")
    return _entity_keys(pa.array(ids)), _entity_names(ids), desc


def relation_text(num_relations: int) -> tuple[list[str], list[str]]:
    keys = [f"r{i}" for i in range(num_relations)]
    texts = [" ".join(w for w in (_VERBS[i % len(_VERBS)], _NOUNS[i // len(_VERBS)]) if w) for i in range(num_relations)]
    return keys, texts


def _lines_bytes(*columns) -> bytes:
    """The concatenated bytes of one text line per row (columns joined as given,
    a newline appended): Arrow's string data buffer is exactly that."""
    lines = pc.binary_join_element_wise(*columns, "\n", "")
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return lines.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]


def _iri(prefix: str, keys: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(f"<{prefix}", keys, ">", "")


def _literal(text: pa.Array) -> pa.Array:
    # names and descriptions are letters and spaces: nothing to escape
    return pc.binary_join_element_wise('"', text, '"@en', "")


class _Writers:
    """One plain and one gzipped file per name; writes go to both."""

    def __init__(self, stack: ExitStack, out: Path, formats: set[str]) -> None:
        self.stack, self.out, self.formats, self.files = stack, out, formats, {}

    def write(self, kind: str, name: str, data: bytes) -> None:
        if kind not in self.formats:
            return
        key = (kind, name)
        if key not in self.files:
            if kind == "nt_gz":
                (self.out / "nt_gz").mkdir(exist_ok=True)
                raw = self.stack.enter_context(open(self.out / "nt_gz" / f"{name}.gz", "wb"))
                # no name and no time in the header: the same graph, the same bytes
                f = self.stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=1))
            elif kind == "nt":
                (self.out / "nt").mkdir(exist_ok=True)
                f = self.stack.enter_context(open(self.out / "nt" / name, "wb"))
            else:
                f = self.stack.enter_context(open(self.out / name, "wb"))
            self.files[key] = f
        self.files[key].write(data)


FORMATS = ("benchmark", "nt", "nt_gz")


def write_synthetic_kg(cfg: SyntheticKGConfig, out: str | Path, formats=FORMATS) -> dict:
    """Generate the graph and write it under ``out`` (see the module doc);
    return what was written (also in ``out/synthetic.json``)."""
    from kgscale.output import atomic_dir

    formats = set(formats)
    unknown = formats - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown format(s) {sorted(unknown)}; known: {', '.join(FORMATS)}")
    head, rel, tail, split = generate_triples(cfg)
    rel_keys, rel_texts = relation_text(cfg.relations)
    rel_key_arr = pa.array(rel_keys)
    with atomic_dir(out, overwrite=True) as tmp, ExitStack() as stack:
        w = _Writers(stack, tmp, formats)
        for code, name in enumerate(SPLIT_FILES):
            rows = np.flatnonzero(split == code)
            for lo in range(0, len(rows), CHUNK):
                sel = rows[lo:lo + CHUNK]
                hk = _entity_keys(pa.array(head[sel]))
                rk = pc.take(rel_key_arr, pa.array(rel[sel]))
                tk = _entity_keys(pa.array(tail[sel]))
                w.write("benchmark", f"{name}.txt", _lines_bytes(hk, "\t", rk, "\t", tk))
                nt = _lines_bytes(_iri(ENTITY_IRI, hk), " ", _iri(RELATION_IRI, rk), " ", _iri(ENTITY_IRI, tk), " .")
                w.write("nt", f"{name}.nt", nt)
                w.write("nt_gz", f"{name}.nt", nt)
        w.write("benchmark", "entities.tsv", b"id\tname\tdescription\n")
        w.write("benchmark", "relations.tsv", b"id\ttext\n")
        for lo in range(0, cfg.num_entities, CHUNK):
            key, name, desc = entity_text(cfg, lo, min(lo + CHUNK, cfg.num_entities))
            w.write("benchmark", "entities.tsv", _lines_bytes(key, "\t", name, "\t", desc))
            iri = _iri(ENTITY_IRI, key)
            nt = (_lines_bytes(iri, f" <{RDFS}label> ", _literal(name), " .")
                  + _lines_bytes(iri, f" <{RDFS}comment> ", _literal(desc), " ."))
            w.write("nt", "text.nt", nt)
            w.write("nt_gz", "text.nt", nt)
        rtext = pa.array(rel_texts)
        w.write("benchmark", "relations.tsv", _lines_bytes(rel_key_arr, "\t", rtext))
        nt = _lines_bytes(_iri(RELATION_IRI, rel_key_arr), f" <{RDFS}label> ", _literal(rtext), " .")
        w.write("nt", "text.nt", nt)
        w.write("nt_gz", "text.nt", nt)
        stack.close()
        counts = np.bincount(split, minlength=3)
        info = {
            "config": asdict(cfg) | {"entities": cfg.num_entities},
            "counts": {"entities": cfg.num_entities, "relations": cfg.relations,
                       "triples": {s: int(c) for s, c in zip(SPLIT_FILES, counts)}},
            "formats": sorted(formats),
            # how `kgscale ingest` reads the N-Triples with the right splits
            "ingest_nt": {"source": "DIR/nt", "rdf": {"splits": {"files": {"valid": ["valid.nt*"], "test": ["test.nt*"]}}}},
        }
        (tmp / "synthetic.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
