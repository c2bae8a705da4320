"""All-gather with gradients for the local shard.

KaLM's reference uses only the negatives of its own device. Gathering every
worker's embeddings gives each query ``world_size x B`` candidates at the cost
of one all-gather of [B, D] per step. The copies that come from other workers
are constants here (``all_gather`` has no backward); the local slice is the
tensor itself, so the gradient of the local loss flows into the local
encoder. Every worker does the same for its own rows, and DDP / DeepSpeed
average the parameter gradients, which is the usual "gather with local
gradient" scheme (as in CLIP-style training).
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_with_local_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` [B, ...] on every rank (B equal on all ranks) -> [world*B, ...],
    ordered by rank, where rank r's own rows keep their autograd graph."""
    rank, size = world()
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0)
