"""The graph as every path-mining worker sees it: built once, shared zero-copy.

The driver builds the CSR graph of a snapshot, the search index and the
texts (entity names, relation arrows) once and puts them into Ray's object
store with :func:`put_shared_graph`. Everything inside is a plain numpy
array, so a worker's ``ray.get`` maps the arrays read-only out of shared
memory instead of copying or rebuilding them (strings too: they are kept
as Arrow-style offsets + bytes, not Python objects, which would be
unpickled into every worker).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kgscale.kg.graph import CSRGraph
from kgscale.kg.snapshot import Snapshot
from kgscale.synth.paths import SearchIndex
from kgscale.synth.verbalise import arrow_texts


@dataclass(frozen=True)
class Strings:
    """A column of strings as two numpy arrays (zero-copy through the object store)."""

    offsets: np.ndarray  # int64 [n + 1]
    data: np.ndarray  # uint8

    @classmethod
    def from_arrow(cls, values: pa.Array | pa.ChunkedArray) -> "Strings":
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        values = pc.fill_null(values.cast(pa.large_string()), "")
        if len(values) == 0:
            return cls(np.zeros(1, np.int64), np.zeros(0, np.uint8))
        _, off, data = values.buffers()
        offsets = np.frombuffer(off, np.int64)[values.offset : values.offset + len(values) + 1].copy()
        raw = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
        start = int(offsets[0])
        return cls(offsets - start, raw[start : int(offsets[-1])].copy())

    @classmethod
    def from_list(cls, values: list[str]) -> "Strings":
        return cls.from_arrow(pa.array(values, pa.large_string()))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def arrow(self) -> pa.LargeStringArray:
        return pa.LargeStringArray.from_buffers(len(self), pa.py_buffer(self.offsets), pa.py_buffer(self.data))

    def take(self, ids: np.ndarray) -> pa.Array:
        return self.arrow().take(pa.array(np.asarray(ids, dtype=np.int64))).cast(pa.string())

    def __getitem__(self, i: int) -> str:
        return bytes(self.data[self.offsets[i] : self.offsets[i + 1]]).decode("utf-8")


@dataclass(frozen=True)
class SharedGraph:
    graph: CSRGraph
    index: SearchIndex
    entity_names: Strings  # [num_entities]: name, or the key when the entity has none
    relation_texts: Strings  # [num_relations]
    arrows: Strings  # [2 * num_relations]: " --r--> " (forward), " <--r-- " (inverse) at 2r + inverse
    splits: tuple[str, ...]

    def nbytes(self) -> int:
        s = self.graph.nbytes() + self.index.nbytes()
        for t in (self.entity_names, self.relation_texts, self.arrows):
            s += t.offsets.nbytes + t.data.nbytes
        return s


def build_shared_graph(snapshot: Snapshot, splits: tuple[str, ...] = ("train",), seed: int = 0) -> SharedGraph:
    graph = CSRGraph.from_snapshot(snapshot, splits)
    ents = snapshot.entities.sort_by("id")
    rels = snapshot.relations.sort_by("id")
    names = pc.if_else(pc.greater(pc.fill_null(pc.utf8_length(ents["name"]), 0), 0), ents["name"], ents["key"])
    texts = pc.if_else(pc.greater(pc.fill_null(pc.utf8_length(rels["text"]), 0), 0), rels["text"], rels["key"])
    rel_list = texts.to_pylist()
    return SharedGraph(
        graph=graph,
        index=SearchIndex.build(graph, seed=seed),
        entity_names=Strings.from_arrow(names),
        relation_texts=Strings.from_list(rel_list),
        arrows=Strings.from_list(arrow_texts(rel_list)),
        splits=tuple(splits),
    )


def put_shared_graph(shared: SharedGraph):
    """Put the graph into the object store once; hand the ref to every worker."""
    import ray

    return ray.put(shared)


def get_shared_graph(ref) -> SharedGraph:
    """In a worker: the graph, mapped read-only from the object store (no copy, no rebuild)."""
    import ray

    return ray.get(ref)
