"""Shared set-up for the export / backend / engine tests (a plain module, not a test): a small random model,
its export, and frames of built-in synthetic environments."""

from __future__ import annotations

from pathlib import Path

import torch

from mtml_core.config import ModelConfig
from mtml_core.data.sample import Frame
from mtml_core.data.spec import get_env
from mtml_core.data.synth import render_frame
from mtml_core.export import export_model
from mtml_core.model import MultiTaskModel

SIZE = (48, 64)
SMALL = {"filters": 8, "input_hw": SIZE, "n_way": 3, "attention_dim": 16, "attention_heads": 2}


def small_model(seed: int = 0, **overrides: object) -> MultiTaskModel:
    """A randomly initialised small model (BatchNorm statistics randomised so folding is not trivial)."""
    torch.manual_seed(seed)
    model = MultiTaskModel(ModelConfig(**{**SMALL, **overrides}))
    with torch.no_grad():
        for block in model.backbone.blocks:
            bn = block[1]
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
        for name, p in model.heads.named_parameters():  # He-scaled so head outputs really depend on features
            if name.endswith("weight"):
                p.normal_(0.0, (2.0 / p[0].numel()) ** 0.5)
        for att in model.attention.values():  # multipliers that vary with the support set (not ≈ 1)
            att.out.weight.normal_(0.0, 0.3)
            att.out.bias.fill_(-2.0)
    return model.eval()


def export_small(out: Path, seed: int = 0, fold: dict | None = None, **overrides: object) -> Path:
    """Export a small model to ``out``; returns the manifest path."""
    return export_model(small_model(seed, **overrides), out, fold=fold)


def env_frames(name: str, seeds: range | list[int], size: tuple[int, int] = SIZE) -> list[Frame]:
    """Frames of a built-in environment."""
    spec = get_env(name)
    return [render_frame(spec, s, size) for s in seeds]
