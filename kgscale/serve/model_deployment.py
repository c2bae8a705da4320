"""The model replica: one copy of the model behind dynamic batching.

Requests from the ingress are queued per kind of work and run together:
``@serve.batch`` collects embedding inputs (counted in texts) and generation
prompts (counted in prompts) for up to ``batching.batch_wait_timeout_s`` (generation:
``batching.generation_wait_timeout_s``) or ``batching.max_batch_size``,
whichever comes first, and runs one forward
pass (embeddings) or one padded ``generate`` per set of equal sampling
settings. All model work runs on one worker thread, so the replica's event
loop keeps accepting requests (which then wait in the batch queues) while a
batch computes, and torch never has two passes fighting over the cores.
Streaming generation runs one prompt at a time on the same thread.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from ray import serve

from kgscale.serve.config import ServeConfig
from kgscale.serve.runtime import GenerationOutput, GenerationParams, ModelRuntime

log = logging.getLogger("kgscale.serve")


def _count_texts(items: list) -> int:
    return sum(len(x) for x in items)


def _count_prompts(items: list) -> int:
    return sum(len(item[0]) for item in items)  # (prompts, params, gone)


def load_entity_index(cfg: ServeConfig, runtime: ModelRuntime):
    """Load ``kg.index_dir`` when it holds an index made by this model and
    these settings; else embed every entity now (and write it there)."""
    from kgscale.kg.snapshot import Snapshot
    from kgscale.serve.entity_index import EntityIndex, build_index, index_meta

    snap = Snapshot(cfg.kg.snapshot)
    meta = index_meta(cfg, snap, runtime.pooling)
    directory = cfg.kg.index_dir
    if directory is not None and (directory / "manifest.json").is_file():
        index = EntityIndex.load(directory, meta, snap.num_entities)
        log.info("entity index: %d entities loaded from %s", index.size, directory)
        return index
    texts = snap.entity_texts
    ids = np.array([i for i, t in enumerate(texts) if t], dtype=np.int64)
    if cfg.kg.max_entity_tokens is not None:  # cut as training and evaluation cut them
        from kgscale.models.tokenize import truncate_texts

        texts = truncate_texts(runtime.tokenizer, [t or " " for t in texts], cfg.kg.max_entity_tokens)
    index = build_index(runtime, [texts[i] for i in ids], ids, snap.num_entities, max_length=cfg.kg.max_length,
                        batch_size=cfg.kg.build_batch_size)
    if directory is not None:
        index.save(directory, meta)
        log.info("entity index: %d entities written to %s", index.size, directory)
    return index


@serve.deployment
class ModelServer:
    def __init__(self, cfg: dict) -> None:
        self.cfg = ServeConfig.model_validate(cfg)
        d = self.cfg.deployment
        threads = d.torch_threads or max(1, int(d.num_cpus))
        self.runtime = ModelRuntime(self.cfg.model, pooling=self.cfg.pooling.how, device=d.device, dtype=d.dtype,
                                    torch_threads=threads)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        b = self.cfg.batching
        for handler, wait in ((self._embed_batch, b.batch_wait_timeout_s), (self._generate_batch, b.generation_wait_timeout_s)):
            handler.set_max_batch_size(b.max_batch_size)
            handler.set_batch_wait_timeout_s(wait)
        self.index = load_entity_index(self.cfg, self.runtime) if self.cfg.kg is not None else None

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # ---- embeddings -------------------------------------------------------

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_count_texts)
    async def _embed_batch(self, items: list[list[list[int]]]) -> list[np.ndarray]:
        flat = [ids for item in items for ids in item]
        emb = await self._run(self.runtime.embed, flat)
        bounds = np.cumsum([0] + [len(item) for item in items])
        return [emb[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    async def embed(self, inputs: list[list[int]]) -> np.ndarray:
        """Embeddings of token-id inputs (at most ``max_batch_size`` of them)."""
        return await self._embed_batch(inputs)

    # ---- generation -------------------------------------------------------

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_count_prompts)
    async def _generate_batch(self, items: list[tuple]) -> list[list[GenerationOutput]]:
        # one padded generate per set of equal settings (sampling is per batch in HF)
        groups: dict[GenerationParams, list[int]] = {}
        for i, (_, params, _gone) in enumerate(items):
            groups.setdefault(params, []).append(i)
        results: list[list[GenerationOutput] | None] = [None] * len(items)
        for params, members in groups.items():
            prompts = [p for i in members for p in items[i][0]]
            flags = [items[i][2] for i in members]
            # a generation nobody waits for any more stops at its next step
            outs = await self._run(self.runtime.generate, prompts, params, lambda f=flags: all(x.is_set() for x in f))
            at = 0
            for i in members:
                n = len(items[i][0])
                results[i] = outs[at:at + n]
                at += n
        return results

    async def generate(self, prompts: list[list[int]], params: GenerationParams) -> list[GenerationOutput]:
        gone = threading.Event()
        try:
            return await self._generate_batch((prompts, params, gone))
        except asyncio.CancelledError:  # the client disconnected: Serve cancels its request down to here
            gone.set()
            raise

    async def stream(self, prompt: list[int], params: GenerationParams):
        """Yields ``{"started": True}`` once accepted, then ``{"text": delta}``
        pieces, then ``{"done": GenerationOutput}``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def on_text(delta: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, delta)

        yield {"started": True}
        future = loop.run_in_executor(self.executor, self.runtime.stream, prompt, params, on_text, cancel)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, None))
        try:
            while (delta := await queue.get()) is not None:
                yield {"text": delta}
            yield {"done": await future}
        finally:
            cancel.set()  # the client went away: stop generating

    # ---- KG completion ----------------------------------------------------

    async def search(self, query: list[int], k: int, exclude: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` entities for one query (token ids of its text)."""
        if self.index is None:
            raise RuntimeError("this deployment has no entity index (kg is not configured)")
        emb = await self._embed_batch([query])
        excl = np.asarray(exclude, dtype=np.int64) if exclude else None
        return await self._run(self.index.search, emb[0], k, excl)

    def info(self) -> dict:
        return {"kind": self.runtime.kind, "dim": self.runtime.dim, "pooling": self.runtime.pooling,
                "device": self.runtime.device, "entity_index": None if self.index is None else self.index.size}
