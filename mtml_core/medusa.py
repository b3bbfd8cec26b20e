"""Options from Medusa (universal feature learning via attentional multitasking): per-task shared-feature attention
masks and multi-scale head inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SharedFeatureMask(nn.Module):
    """A learned per-task channel mask on every block's output, in (0, 2), starting at exactly 1.

    It composes multiplicatively with the attention multiplier, so it costs nothing at run time: the runtime
    multiplier vector is ``(1 - w) * mask``.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(size))

    def forward(self) -> torch.Tensor:
        """The mask vector (B·C,)."""
        return 2.0 * torch.sigmoid(self.logits)


def fuse_scales(feats: list[torch.Tensor]) -> torch.Tensor:
    """Multi-scale head input: every block's features pooled to the last block's size, concatenated on channels."""
    size = feats[-1].shape[-2:]
    return torch.cat([F.adaptive_avg_pool2d(f, size) for f in feats], dim=1)
