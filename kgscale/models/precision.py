"""Which floating-point precision to compute in, by what the hardware does fast.

``auto`` means bf16 on a GPU and on a CPU whose matrix units multiply bf16
natively (x86 AVX512-BF16 or AMX-BF16: on the 2-core development machine a
2048x2048 bf16 matmul runs at about 880 GFLOP/s against 140-380 in fp32),
fp32 elsewhere. Embeddings keep their quality: MiniLM's WN18RR embeddings in
bf16 have cosine >= 0.999 to fp32 and the same MRR to the third decimal
(docs/evaluation.md). Losses and reductions stay in fp32 (the objectives cast
their inputs up).
"""
from __future__ import annotations

import functools
from typing import Literal

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16_matmul() -> bool:
    """True when this CPU multiplies bf16 matrices natively (Linux: its flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return any(flag in flags for flag in BF16_CPU_FLAGS)
    except OSError:
        pass
    return False


def auto_precision(device: str) -> Literal["fp32", "bf16"]:
    """bf16 on CUDA and on CPUs with bf16 matrix units, else fp32."""
    if str(device).startswith("cuda"):
        return "bf16"
    return "bf16" if cpu_has_bf16_matmul() else "fp32"
