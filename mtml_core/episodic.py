"""Backbone forward for T episodes at once, with per-episode BatchNorm statistics and optional per-episode weights.

The T episodes are laid side by side as T convolution groups: activations are (N, T·C, h, w) in channels_last
memory, every conv is a grouped conv (groups = T), and BatchNorm over the T·C channels yields each episode's own
batch statistics with the native kernel. This computes exactly what :class:`mtml_core.model.Backbone` computes
for each episode separately (tested), about twice as fast on CPU as vmapping the module, and lets MAML give every
episode its own weights (parameters with a leading T dimension) without vmap.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mtml_core.model import Backbone


def _block_layers(backbone: Backbone) -> list[tuple[nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d]]:
    """(conv, bn, pool) of every block; refuses a block layout this module does not know."""
    layers = []
    for b, block in enumerate(backbone.blocks):
        conv, bn, act, pool = block
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(act, nn.ReLU)
                and isinstance(pool, nn.MaxPool2d) and bn.track_running_stats):
            raise ValueError(f"episodic backbone: block {b} is not conv-BN(running stats)-ReLU-maxpool")
        layers.append((conv, bn, pool))
    return layers


def _per_group(value: torch.Tensor, shared_dims: int, t: int) -> torch.Tensor:
    """Stack a parameter for T groups along dim 0: shared (repeated T times) or already per episode (T, ...)."""
    if value.dim() == shared_dims:
        return value.repeat(t, *([1] * (shared_dims - 1)))
    if value.shape[0] != t:
        raise ValueError(f"episodic backbone: per-episode parameter has {value.shape[0]} rows for {t} episodes")
    return value.flatten(0, 1)


def _per_image_features(backbone: Backbone, images: torch.Tensor, multipliers: torch.Tensor | None,
                        params: Mapping[str, torch.Tensor] | None) -> list[torch.Tensor]:
    """GroupNorm backbones normalise every image on its own: episodes need no grouping, only their multipliers."""
    t, n = images.shape[:2]
    if params is not None and any(params[k].shape != p.shape for k, p in backbone.named_parameters()):
        raise ValueError("episodic backbone: per-episode weights need the paper (BatchNorm) backbone")
    m = None
    if multipliers is not None:
        if multipliers.dim() == 2 and multipliers.shape[0] != t:
            raise ValueError(f"multipliers: {multipliers.shape[0]} rows for {t} episodes")
        m = multipliers.reshape(-1, multipliers.shape[-1]).expand(t, -1).repeat_interleave(n, dim=0)
    x = images.flatten(0, 1).contiguous(memory_format=torch.channels_last)
    feats = backbone(x, m) if params is None else torch.func.functional_call(backbone, dict(params), (x, m))
    return [f.unflatten(0, (t, n)) for f in feats]


def episode_features(backbone: Backbone, images: torch.Tensor, multipliers: torch.Tensor | None = None,
                     params: Mapping[str, torch.Tensor] | None = None, *,
                     update_stats: bool = True) -> list[torch.Tensor]:
    """Per-block outputs for T episodes: images (T, N, 3, H, W) → list of (T, N, C, h, w) (views).

    ``multipliers``: None, (B·C,) shared or (T, B·C) per episode. ``params``: backbone parameters by name (default:
    the module's own), each either shaped as in the module or with a leading T dimension (per-episode weights).
    In train mode BatchNorm normalises each episode with its own statistics and, if ``update_stats``, the mean of
    the episodes' running-statistics updates is written to the module's buffers (never inside a torch.func
    transform: pass ``update_stats=False`` there). In eval mode the running statistics are used. Non-negative
    multipliers (all that 1 − w and Medusa masks produce) are folded into the BatchNorm affine parameters.
    """
    if images.dim() != 5 or images.shape[2] != 3:
        raise ValueError(f"episode images: expected (T, N, 3, H, W), got {tuple(images.shape)}")
    t, n, _, height, width = images.shape
    if backbone.arch != "paper":
        return _per_image_features(backbone, images, multipliers, params)
    layers = _block_layers(backbone)
    c = backbone.widths[0]
    if multipliers is not None:
        if multipliers.shape[-1] != len(layers) * c or multipliers.dim() > 2:
            raise ValueError(f"multipliers: expected ({len(layers) * c},) or (T, {len(layers) * c}), "
                             f"got {tuple(multipliers.shape)}")
        if multipliers.dim() == 2 and multipliers.shape[0] != t:
            raise ValueError(f"multipliers: {multipliers.shape[0]} rows for {t} episodes")
        multipliers = multipliers.reshape(-1, len(layers), c).expand(t, -1, -1)
    fold = multipliers is not None and bool((multipliers >= 0).all())
    params = dict(backbone.named_parameters()) if params is None else params
    # (T, N, 3, H, W) → (N, T·3, H, W) in channels_last memory: one copy.
    h = images.permute(1, 3, 4, 0, 2).reshape(n, height, width, t * 3).permute(0, 3, 1, 2)
    feats = []
    for b, (conv, bn, pool) in enumerate(layers):
        p = f"blocks.{b}."
        weight = _per_group(params[p + "0.weight"], 4, t)
        bias = _per_group(params[p + "0.bias"], 1, t)
        h = F.conv2d(h, weight, bias, stride=conv.stride, padding=conv.padding, groups=t)
        mean = var = None
        if not bn.training or update_stats:
            mean, var = bn.running_mean.repeat(t), bn.running_var.repeat(t)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked + 1)
        gamma, beta = _per_group(params[p + "1.weight"], 1, t), _per_group(params[p + "1.bias"], 1, t)
        m = None if multipliers is None else multipliers[:, b].reshape(t * c)
        if fold:  # m·relu(maxpool(γ·x̂ + β)) = relu(maxpool(mγ·x̂ + mβ)) for m >= 0: no extra pass
            gamma, beta, m = gamma * m, beta * m, None
        h = F.batch_norm(h, mean, var, gamma, beta, bn.training, momentum, bn.eps)
        if bn.training and update_stats:
            with torch.no_grad():
                bn.running_mean.copy_(mean.view(t, c).mean(0))
                bn.running_var.copy_(var.view(t, c).mean(0))
                bn.num_batches_tracked.add_(1)
        # relu∘maxpool = maxpool∘relu (relu is monotone), on a quarter of the values
        h = F.relu(F.max_pool2d(h, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode))
        if m is not None:
            h = h * m.view(1, t * c, 1, 1)
        feats.append(h)
    return [f.unflatten(1, (t, c)).transpose(0, 1) for f in feats]
