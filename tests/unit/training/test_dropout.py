"""``model.dropout``: every dropout layer of the backbone set while training."""
import torch
from torch import nn

from kgscale.models.training import ModelSettings, load_for_training


def _two_forwards(model):
    ids = torch.arange(5, 25).reshape(2, 10)
    with torch.no_grad():
        return [model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state for _ in range(2)]


def test_checkpoint_dropout_kept_by_default_and_set_by_config():
    kept = load_for_training(ModelSettings(model="tiny-bert", lora={"enabled": False}))
    assert kept.training
    assert {m.p for m in kept.modules() if isinstance(m, nn.Dropout)} == {0.1}  # BertConfig's own
    a, b = _two_forwards(kept)
    assert not torch.equal(a, b)  # masks drawn in train mode

    off = load_for_training(ModelSettings(model="tiny-bert", lora={"enabled": False}, dropout=0.0))
    assert off.training and {m.p for m in off.modules() if isinstance(m, nn.Dropout)} == {0.0}
    a, b = _two_forwards(off)
    assert torch.equal(a, b)  # no mask drawn, attention's dropout included

    more = load_for_training(ModelSettings(model="tiny-bert", lora={"enabled": False}, dropout=0.3))
    assert {m.p for m in more.modules() if isinstance(m, nn.Dropout)} == {0.3}
    assert more.config.hidden_dropout_prob == 0.1  # the exported config keeps the checkpoint's


def test_lora_dropout_is_its_own_setting():
    model = load_for_training(ModelSettings(model="tiny-llama", lora={"enabled": True, "dropout": 0.2}, dropout=0.0))
    lora = {m.p for n, m in model.named_modules() if isinstance(m, nn.Dropout) and "lora_dropout" in n}
    assert lora == {0.2}
    default = load_for_training(ModelSettings(model="tiny-llama"))
    assert not [m for n, m in default.named_modules() if isinstance(m, nn.Dropout) and "lora_dropout" in n and m.p > 0]
