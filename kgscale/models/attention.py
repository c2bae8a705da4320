"""Which attention kernel a model runs with, training and embedding.

Eager attention and SDPA compute the same function; which is faster depends
on the device and the shapes. On a CPU, SDPA's kernels carry a fixed cost per
head and batch that short sequences do not repay, and its backward is the
slower one: measured here (2 threads, bf16), SmolLM2's attention forward and
back with 2,048 tokens a batch, SDPA/eager time 1.27 at 32 tokens, 1.39 at 64,
1.44 at 128, 1.11 at 256 and 0.79 at 512 (a SmolLM2 LoRA KaLM step of 8
samples: 2.05-2.35 s with SDPA, 1.51-1.70 s eager; MiniLM on 25-token
queries: 286 against 206 ms). Embedding WN18RR's views (forward only), eager
ran the 64-wide tiny model 1.1-1.7x and all-MiniLM-L6-v2 (384 wide)
1.06-1.16x faster in bf16, and SmolLM2-135M (576 wide) no faster
(101-112 texts/s against 108) with its bf16 EOS states further from fp32's
(cosine min 0.9905 against SDPA's 0.9955). On a GPU SDPA's fused kernels are
the faster ones.
"""
from __future__ import annotations

# views of at most this many tokens train (and, for narrow models, embed)
# with eager attention on a CPU
EAGER_ON_CPU_UP_TO = 256
# the widest model that embeds with eager attention on a CPU
EAGER_EMBEDDING_MAX_WIDTH = 384


def training_attention(setting: str, use_gpu: bool, max_length: int) -> str:
    """The attention kernel a run trains with: ``setting`` unless it is
    ``auto``, which is ``eager`` on a CPU for sequences of at most
    :data:`EAGER_ON_CPU_UP_TO` tokens and ``auto`` (transformers' default)
    otherwise."""
    if setting != "auto":
        return setting
    return "eager" if not use_gpu and max_length <= EAGER_ON_CPU_UP_TO else "auto"


def embedding_attention(device: str, max_length: int | None, width: int) -> str | None:
    """The kernel an embedder runs a model of ``width`` with: ``eager`` on a
    CPU for views of at most :data:`EAGER_ON_CPU_UP_TO` tokens when the model
    is at most :data:`EAGER_EMBEDDING_MAX_WIDTH` wide, else None (the model's
    own default)."""
    if device != "cpu" or max_length is None or max_length > EAGER_ON_CPU_UP_TO:
        return None
    return "eager" if width <= EAGER_EMBEDDING_MAX_WIDTH else None
