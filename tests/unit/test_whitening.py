"""Whitening a frozen bank's key space (kgscale.models.whitening) and KaLM's
``whiten_bank``: the map's algebra, its file, and the objective applying it
to the bank and to the queries alike."""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from kgscale.models.whitening import WHITENING_FILE, Whitening, load_whitening
from kgscale.objectives.kalm import KaLMContrastive, KaLMContrastiveSettings
from tests.unit.objectives.test_kalm import kalm_batch
from tests.unit.objectives.tiny import tiny_bert


def anisotropic(n: int = 300, d: int = 8, seed: int = 0) -> torch.Tensor:
    """Unit rows crowded into a cone, as an untrained causal LM's EOS states are."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(3.0, 0.05, d) + 10.0 * torch.ones(d)
    return torch.nn.functional.normalize(x, dim=-1)


def test_whitened_bank_has_zero_mean_and_identity_covariance():
    x = anisotropic()
    assert float((x @ x.T).mean()) > 0.95  # the cone
    w = Whitening.fit(x)
    y = (x - w.mean) @ w.matrix
    assert torch.allclose(y.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(y.T @ y, torch.eye(8), atol=1e-4)
    unit = w.apply(x)
    assert torch.allclose(unit.norm(dim=1), torch.ones(len(x)), atol=1e-5)
    assert abs(float((unit @ unit.T).mean())) < 0.05  # the whole sphere, not a cone
    # the numpy form is the same map
    assert torch.allclose(torch.from_numpy(w.apply_numpy(x.numpy())), unit, atol=1e-6)


def test_whitening_needs_more_entities_than_dimensions():
    with pytest.raises(ValueError, match="more entities than dimensions"):
        Whitening.fit(anisotropic(n=8, d=8))


def test_whitening_file_round_trip_and_bad_files(tmp_path):
    assert load_whitening(tmp_path) is None  # a model trained without one
    assert load_whitening("smollm2-135m-instruct") is None  # a registry name, not a directory
    w = Whitening.fit(anisotropic())
    assert w.save(tmp_path) == tmp_path / WHITENING_FILE
    back = load_whitening(tmp_path)
    assert torch.equal(back.mean, w.mean) and torch.equal(back.matrix, w.matrix)

    from safetensors.torch import save_file

    save_file({"mean": torch.zeros(4), "matrix": torch.zeros(4, 3)}, str(tmp_path / WHITENING_FILE))
    with pytest.raises(ValueError, match=r"\[D, D\], not \[4\] and \[4, 3\]"):
        load_whitening(tmp_path)
    (tmp_path / WHITENING_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable whitening"):
        load_whitening(tmp_path)


@pytest.mark.parametrize("settings, says", [
    ({"whiten_bank": True}, "entity_bank: false, key_tower: shared"),
    ({"whiten_bank": True, "entity_bank": True}, "key_tower: shared"),
    ({"whiten_bank": True, "key_tower": "frozen"}, "entity_bank: false"),
])
def test_whiten_bank_needs_a_frozen_bank(settings, says):
    with pytest.raises(ValidationError, match="whiten_bank: .*needs entity_bank: true and key_tower: frozen") as err:
        KaLMContrastiveSettings(**settings)
    assert says in str(err.value)


def test_whiten_bank_is_not_refreshed():
    with pytest.raises(ValidationError, match="fitted once .* set bank_refresh_every: 0"):
        KaLMContrastiveSettings(whiten_bank=True, entity_bank=True, key_tower="frozen", bank_refresh_every=10)


def test_objective_whitens_the_bank_once_and_its_queries_alike():
    """The loss against a whitened bank equals the plain bank loss computed
    by hand on whitened queries and keys (fitted on the valid rows only)."""
    torch.manual_seed(0)
    model = tiny_bert()
    model.eval()
    # the query views alone: every key comes from the bank
    batch = {k: v for k, v in kalm_batch().items() if not k.startswith(("key_", "lm_"))}
    n = 40
    raw = anisotropic(n=n, d=model.config.hidden_size, seed=1)
    valid = torch.ones(n, dtype=torch.bool)
    valid[30] = False  # an entity without text: not in the fit
    kw = {"entity_bank": True, "key_tower": "frozen", "num_answers": n, "both_directions": False,
          "self_negatives": "none", "kind": "encoder", "learn_temperature": False}
    whitened = KaLMContrastive(whiten_bank=True, **kw)
    whitened.set_bank(raw, valid)
    expect = Whitening.fit(raw[valid])
    assert torch.allclose(whitened.bank, expect.apply(raw), atol=1e-5)
    with pytest.raises(RuntimeError, match="fitted once"):
        whitened.set_bank(raw, valid)

    plain = KaLMContrastive(**kw)
    plain.set_bank(expect.apply(raw), valid)
    q_raw, _, _ = plain.encode(model, batch)
    q, _, _ = whitened.encode(model, batch)
    assert torch.allclose(q, expect.apply(q_raw), atol=1e-5)
    with torch.no_grad():
        out = whitened(model, batch).loss
        ref, _ = plain.contrastive(expect.apply(q_raw), None, batch["query_id"], batch["answer_id"], batch.get("head_id"))
    assert torch.allclose(out, ref, atol=1e-5)


def test_the_serve_replica_embeds_through_a_models_whitening(tmp_path):
    """ModelRuntime (the serve replica, and the KG index it builds with role
    key) applies the whitening a model directory carries to both roles."""
    import shutil

    import numpy as np

    from kgscale.models.backbone import BackboneConfig, resolve
    from kgscale.serve.runtime import ModelRuntime, embedding_ids

    src = resolve(BackboneConfig(model="tiny-llama"))
    model_dir = tmp_path / "whitened"
    shutil.copytree(src, model_dir)
    plain = ModelRuntime(BackboneConfig(model=str(model_dir)), torch_threads=1, dtype="float32")
    width = plain.dim
    Whitening.fit(anisotropic(n=4 * width, d=width)).save(model_dir)
    whitened = ModelRuntime(BackboneConfig(model=str(model_dir)), torch_threads=1, dtype="float32")
    ids = embedding_ids(plain.tokenizer, ["a dog", "the bark of a tree"], append_eos=True)
    raw = plain.embed(ids)
    w = load_whitening(model_dir)
    for role in ("query", "key"):
        got = whitened.embed(ids, role=role)
        assert np.allclose(got, w.apply_numpy(raw), atol=1e-5)
        assert not np.allclose(got, raw, atol=1e-2)
