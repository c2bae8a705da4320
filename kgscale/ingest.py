"""The ingest stage: SOURCE -> KG snapshot, read by parallel read tasks on Ray."""
from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

from pydantic import Field

from kgscale.config import StrictModel, stage_path
from kgscale.kg import key_index
from kgscale.kg.assemble import assemble, split_block
from kgscale.kg.rdf.config import RdfConfig
from kgscale.kg.rejects import RejectLog
from kgscale.kg.schema import SPLITS
from kgscale.kg.snapshot import write_tables
from kgscale.kg.sources import open_source
from kgscale.kg.sources.ray_read import read_blocks
from kgscale.kg.sources.neo4j_source import Neo4jConfig
from kgscale.kg.sources.sparql import SparqlConfig
from kgscale.output import StageOutput, file_sha256
from kgscale.ray_session import RayConfig, ensure_ray


class IngestConfig(StrictModel):
    source: str
    out: Path = stage_path("output")
    # the first rejected row is fatal
    strict: bool = False
    # replace an existing snapshot at `out` (only once the new one is complete)
    overwrite: bool = False
    # size of the byte range one read task parses; a file larger than this is
    # read by several tasks in parallel
    read_task_mb: float = 8.0
    # how RDF statements map to the snapshot (files, oxigraph:, SPARQL)
    rdf: RdfConfig = Field(default_factory=RdfConfig)
    # SPARQL stores: paging, timeouts, retries, authentication
    sparql: SparqlConfig = Field(default_factory=SparqlConfig)
    # Neo4j: database, user, password variable, labels, properties
    neo4j: Neo4jConfig = Field(default_factory=Neo4jConfig)
    # read tasks for sources planned by rows rather than bytes (SPARQL, Neo4j);
    # None: the CPUs Ray has
    parallelism: int | None = Field(None, gt=0)


def run_ingest(cfg: IngestConfig, ray_cfg: RayConfig | None = None) -> dict:
    """Read ``cfg.source`` into a snapshot at ``cfg.out``; return the manifest."""
    stage = StageOutput("ingest", cfg.out, cfg.overwrite)
    timer = stage.timer
    with timer("open"):
        source = open_source(
            cfg.source,
            target_bytes=max(int(cfg.read_task_mb * (1 << 20)), 1 << 16),
            rdf=cfg.rdf,
            sparql=cfg.sparql,
            neo4j=cfg.neo4j,
            parallelism=cfg.parallelism,
        )
    ensure_ray(ray_cfg)
    rejects = RejectLog(strict=cfg.strict)
    with stage.writing() as tmp:
        with timer("plan"):
            datasource = source.datasource()
        # the driver only waits while the read tasks parse: it loads the key hash
        # the encode step needs meanwhile (0.5-0.7 s of a 1M-triple ingest's 6.6 s)
        threading.Thread(target=key_index.warm, daemon=True).start()
        with timer("read"):
            # each task cuts its rows for the steps after (kgscale.kg.assemble.split_block);
            # a task that kills its worker is a reject
            split = functools.partial(split_block, with_triple_keys=source.entities_from_triples)
            parts, crashed = read_blocks(datasource, split=split, parts=3)
            if crashed is not None:
                rejects.add_table(crashed)
        # assemble times its own steps: text, encode, dedup
        result = assemble(parts, rejects, entities_from_triples=source.entities_from_triples, timer=timer)
        with timer("write"):
            write_tables(tmp, result.triples, result.entities, result.relations)
        with timer("checksum_inputs"):
            inputs = [{"path": p, "bytes": os.path.getsize(p), "sha256": file_sha256(p)} for p in source.input_files()]
        counts_by_split = {s: 0 for s in SPLITS}
        for s, n in zip(*_value_counts(result.triples["split"])):
            counts_by_split[s] = n
        manifest = stage.finish(
            rejects,
            source=source.describe(),
            config=cfg.model_dump(mode="json"),
            inputs=inputs,
            counts={
                "entities": result.entities.num_rows,
                "relations": result.relations.num_rows,
                "triples": counts_by_split,
                "triples_total": result.triples.num_rows,
            },
            **result.stats,
        )
    return manifest


def _value_counts(column) -> tuple[list[str], list[int]]:
    vc = column.value_counts()
    return [v.as_py() for v in vc.field("values")], [c.as_py() for c in vc.field("counts")]


def summary(manifest: dict, out: Path) -> str:
    c = manifest["counts"]
    t = c["triples"]
    rej = manifest["rejected"]
    dup = manifest["duplicates"]["within_split"]
    reasons = ", ".join(f"{n} {r}" for r, n in rej["by_reason"].items()) or "none"
    return (
        f"Ingested {manifest['source'].get('dataset') or manifest['source'].get('path')} into {out}: "
        f"{c['entities']:,} entities, {c['relations']:,} relations, "
        f"{t['train']:,} / {t['valid']:,} / {t['test']:,} train / valid / test triples; "
        f"{rej['total']:,} rejected rows ({reasons}), {sum(dup.values()):,} duplicate triples dropped; "
        f"{manifest['timings_s']['total']:.1f} s."
    )
