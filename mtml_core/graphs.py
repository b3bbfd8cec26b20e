"""The model as the runtime sees it, shared by the exporter (:mod:`mtml_core.export`) and the torch-side backends:
the backbone and head graphs, and a fixed multiplier folded into a backbone's weights. Plain torch, no ONNX.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from mtml_core.model import Backbone, MultiTaskModel, last_norm


def feature_blocks(model: MultiTaskModel) -> list[int]:
    """Indices of the blocks whose features the exported backbone returns."""
    blocks = model.cfg.blocks
    every = bool(model.cfg.multiscale_heads) or model.cfg.arch == "unet"
    return list(range(blocks)) if every else [blocks - 1]


def head_reads_all(model: MultiTaskModel, task: str) -> bool:
    """Whether ``task``'s head reads every block (``unet`` preset or a Medusa multi-scale head)."""
    return model.cfg.arch == "unet" or task in model.cfg.multiscale_heads


class BackboneGraph(nn.Module):
    """The backbone as exported: (images, multipliers (M, B·C)) → the features the heads read."""

    def __init__(self, backbone: Backbone, blocks: Sequence[int]) -> None:
        super().__init__()
        self.backbone = backbone
        self.keep = list(blocks)

    def forward(self, images: torch.Tensor, multipliers: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Selected per-block features."""
        feats = self.backbone(images, multipliers)
        return tuple(feats[b] for b in self.keep)


class HeadGraph(nn.Module):
    """One head as exported: the backbone graph's outputs → the task's output (fusing scales if multi-scale)."""

    def __init__(self, model: MultiTaskModel, task: str) -> None:
        super().__init__()
        self.head = model.heads[task]
        self.head_input = model.head_input
        self.task = task

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        """Task output from the features (all blocks, or only the last for a paper head)."""
        return self.head(self.head_input(self.task, list(feats)))


def fold_multiplier(backbone: Backbone, multiplier: torch.Tensor) -> Backbone:
    """A copy of ``backbone`` (eval mode) whose last normalisation layer per block absorbs a fixed multiplier.

    Block b ends in relu(γ·x̂ + β) (then max-pooling in the paper preset) and is multiplied by m_b; for m ≥ 0 the
    channel-wise scale commutes with ReLU and max-pooling, so it equals relu(γ'·x̂ + β') with γ' = γ·m_b and
    β' = β·m_b (BatchNorm or GroupNorm alike).
    """
    m = multiplier.detach().to(torch.float32).reshape(-1)
    if m.numel() != backbone.multiplier_size:
        raise ValueError(f"fold: multiplier has {m.numel()} values, backbone needs {backbone.multiplier_size} (the "
                         "sum of its block widths; B·C for equal widths)")
    if not torch.isfinite(m).all() or (m < 0).any():
        raise ValueError("fold: multiplier values must be finite and >= 0 (a negative scale does not commute "
                         "with ReLU/max-pool)")
    folded = copy.deepcopy(backbone).eval()
    with torch.no_grad():
        for b, (block, scale) in enumerate(zip(folded.blocks, m.split(folded.widths))):
            try:
                norm = last_norm(block)
            except ValueError:
                raise ValueError(f"fold: block {b} has no affine normalisation to fold into") from None
            norm.weight.mul_(scale)
            norm.bias.mul_(scale)
    return folded
