"""The last layer run at the last token only gives the full forward's state there."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kgscale.models.last_token import LastTokenForward


def _trunk(kind: str, dtype=torch.float32, attn: str = "eager"):
    """A small random decoder of each covered layout: grouped queries, and
    Qwen2's biased q/k/v projections."""
    from transformers import LlamaConfig, LlamaModel, MistralConfig, MistralModel, Qwen2Config, Qwen2Model

    torch.manual_seed(0)
    common = dict(vocab_size=101, hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=6,
                  num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, attn_implementation=attn)
    config = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[kind](**common)
    model = {"llama": LlamaModel, "mistral": MistralModel, "qwen2": Qwen2Model}[kind](config)
    return model.to(dtype).eval()


def _batch(lengths, left: bool = False):
    g = torch.Generator().manual_seed(1)
    t = max(lengths)
    ids = torch.zeros(len(lengths), t, dtype=torch.long)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        span = slice(t - n, t) if left else slice(0, n)
        ids[i, span] = torch.randint(1, 101, (n,), generator=g)
        mask[i, span] = 1
    return ids, mask


def _full_last(trunk, ids, mask):
    from kgscale.models.pooling import last_token

    with torch.no_grad():
        return last_token(trunk(input_ids=ids, attention_mask=mask).last_hidden_state, mask)


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_same_state_as_the_full_forward(kind, attn):
    trunk = _trunk(kind, attn=attn)
    fast = LastTokenForward.of(trunk)
    assert fast is not None
    ids, mask = _batch([1, 5, 17, 9, 17])
    with torch.no_grad():
        got = fast(ids, mask)
    torch.testing.assert_close(got, _full_last(trunk, ids, mask), atol=2e-5, rtol=1e-4)
    # the model itself is untouched: all its layers and its norm still run
    assert len(trunk.layers) == 3 and not isinstance(trunk.norm, torch.nn.Identity)


def test_left_padding_and_bf16():
    trunk = _trunk("llama")
    ids, mask = _batch([3, 12, 7], left=True)
    with torch.no_grad():
        got = LastTokenForward.of(trunk)(ids, mask)
    torch.testing.assert_close(got, _full_last(trunk, ids, mask), atol=2e-5, rtol=1e-4)
    half = _trunk("llama", torch.bfloat16)
    ids, mask = _batch([4, 30, 11, 30])
    with torch.no_grad():
        got = LastTokenForward.of(half)(ids, mask).float()
    want = _full_last(half, ids, mask).float()
    cos = torch.nn.functional.cosine_similarity(got, want, dim=-1)
    assert cos.min() >= 0.999, cos


def test_other_models_and_long_windows_take_the_full_forward():
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64))
    assert LastTokenForward.of(bert) is None
    # weights partitioned by DeepSpeed ZeRO-3 (its parameters carry a ds_id)
    zero3 = _trunk("llama")
    zero3.layers[-1].self_attn.q_proj.weight.ds_id = 0
    assert LastTokenForward.of(zero3) is None
    trunk = _trunk("mistral")
    trunk.config.sliding_window = 8
    fast = LastTokenForward.of(trunk)
    assert fast.covers(8) and not fast.covers(9)


def test_embed_ids_takes_it_for_last_pooling_only(monkeypatch):
    """embed_ids reads a causal trunk's last token by the short path, giving
    the unit rows of the full forward, and pools mean the old way."""
    from kgscale.models.embed import embed_ids

    trunk = _trunk("llama")
    rows = [[5, 6, 7], [9] * 20, [3, 4], [8, 1, 2, 3, 4, 5]]
    calls = []
    original = LastTokenForward.__call__

    def counted(self, ids, mask):
        calls.append(ids.shape)
        return original(self, ids, mask)

    monkeypatch.setattr(LastTokenForward, "__call__", counted)
    got = embed_ids(trunk, rows, "last", 0, max_tokens=24)
    n_last = len(calls)
    mean = embed_ids(trunk, rows, "mean", 0, max_tokens=24)
    assert len(calls) == n_last
    assert calls and sum(s[0] for s in calls) == len(rows)
    for i, r in enumerate(rows):
        with torch.no_grad():
            h = trunk(input_ids=torch.tensor([r])).last_hidden_state[0]
        np.testing.assert_allclose(got[i], (h[-1] / h[-1].norm()).numpy(), atol=2e-5)
        np.testing.assert_allclose(mean[i], (h.mean(0) / h.mean(0).norm()).numpy(), atol=2e-5)
