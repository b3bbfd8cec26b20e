"""The attention prior w̄: what a model serves before it has adapted to an environment."""

import torch

from mtml_core.adaptation import adapt_task, estimate_prior_weights
from mtml_core.checkpoint import load_checkpoint, save_checkpoint
from mtml_core.config import ModelConfig
from mtml_core.model import MultiTaskModel

CFG = dict(input_hw=(32, 32), filters=8, attention_dim=16, attention_heads=2, attention_init_bias=0.0)


def _support(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.rand(n, 1, 32, 32, generator=g) * 4 + 0.5


def test_prior_starts_as_identity_and_becomes_the_mean_attention_output():
    torch.manual_seed(0)
    model = MultiTaskModel(ModelConfig(tasks=("depth",), **CFG)).eval()
    assert model.prior_multiplier("depth") is None
    sets = [_support(3, s) for s in range(4)]
    estimate_prior_weights(model, {"depth": sets})
    with torch.no_grad():
        expected = torch.stack([model.attention_weights("depth", model.embed(x), y) for x, y in sets]).mean(0)
    assert torch.allclose(model.attention["depth"].prior, expected)
    assert torch.allclose(model.prior_multiplier("depth"), 1 - expected)
    # served without attention, adaptation starts from the prior multiplier, not from the identity
    x, y = _support(3, 9)
    assert torch.allclose(adapt_task(model, "depth", x, y, 0, 0.0, use_attention=False).multiplier, 1 - expected)


def test_prior_round_trips_and_old_checkpoints_load_as_identity(tmp_path):
    model = MultiTaskModel(ModelConfig(tasks=("depth", "vp"), **CFG))
    model.attention["vp"].prior.copy_(torch.linspace(0, 1, model.cfg.multiplier_size))
    save_checkpoint(model, tmp_path / "new")
    loaded, _ = load_checkpoint(tmp_path / "new")
    assert torch.equal(loaded.attention["vp"].prior, model.attention["vp"].prior)
    # a checkpoint written before the prior existed: same weights, no prior tensor
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "new" / "model.safetensors"))
    for key in [k for k in state if k.endswith(".prior")]:
        del state[key]
    save_file(state, str(tmp_path / "new" / "model.safetensors"))
    old, _ = load_checkpoint(tmp_path / "new")
    assert not old.attention["vp"].prior.any() and old.prior_multiplier("vp") is None
