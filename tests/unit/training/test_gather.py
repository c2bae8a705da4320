"""Negatives gathered from every worker: two real processes over gloo."""
from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kgscale.objectives.kalm import KaLMContrastive


def _batch():
    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(8, 6, generator=gen), dim=-1)
    k = torch.nn.functional.normalize(q + 0.5 * torch.randn(8, 6, generator=gen), dim=-1)
    return q, k, torch.arange(8) * 2, torch.arange(8) + 100


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        q, k, qid, aid = _batch()
        local = slice(4 * rank, 4 * rank + 4)
        ql = q[local].clone().requires_grad_(True)
        kl = k[local].clone().requires_grad_(True)
        obj = KaLMContrastive(gather_negatives=True)
        loss, metrics = obj.contrastive(ql, kl, qid[local], aid[local])
        loss.backward()
        results[rank] = (float(loss), float(metrics["candidates"]), float(ql.grad.abs().sum()))
    finally:
        dist.destroy_process_group()


def test_gathered_negatives_equal_the_full_batch_loss():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(port, results), nprocs=2, join=True)
    q, k, qid, aid = _batch()
    full, _ = KaLMContrastive(gather_negatives=False).contrastive(q, k, qid, aid)
    # each rank averages over its own rows against all 8 candidates: the mean of
    # the two ranks' losses is the single-process loss on the whole batch
    assert abs((results[0][0] + results[1][0]) / 2 - float(full)) < 1e-5
    assert results[0][1] == 8 and results[1][1] == 8
    assert results[0][2] > 0 and results[1][2] > 0  # gradients reach the local views
    # without gathering, each rank would see only 4 candidates: a different loss
    part, _ = KaLMContrastive().contrastive(q[:4], k[:4], qid[:4], aid[:4])
    assert abs(float(part) - results[0][0]) > 1e-4
