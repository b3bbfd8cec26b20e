"""Closed-form depth-scale term of an adaptation.

Metric depth from one image is ambiguous in scale (field of view, camera height, room size), and a model trained on
one world is often off by a near-constant factor in a new room. The inner loop of a few SGD steps spends most of its
budget on that factor. The depth heads predict log-depth, ``depth = exp(clamp(out(h)))`` with ``out`` a 1x1
convolution (then a bilinear resize, whose weights sum to one), so a global factor e^s is exactly ``s`` added to
``out.bias``: it lives in the head's own parameters, and everything that serves adapted heads (every backend, the
ONNX head graphs that take their parameters as inputs, TensorRT refit, profiles) carries it unchanged.

``s`` is the median over the valid support pixels of ``log(label) - log(prediction)`` (robust to the sensor's
outliers and to mis-registered depth edges), clipped to ``±log(max_scale)`` so that a wrong label cannot push the
served depth arbitrarily far.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from mtml_core.inner_loop import Params
from mtml_core.losses import task_loss

BIAS = "out.bias"  # the depth heads' log-depth output bias (UNetDepthHead, DepthHead)
DEFAULT_MAX_SCALE = 16.0


def scale_param(head: nn.Module, params: Params) -> str | None:
    """Name of the parameter that shifts ``head``'s log-depth by a constant, or None if the head has none."""
    out = getattr(head, "out", None)
    if not isinstance(out, nn.Conv2d) or out.out_channels != 1 or out.kernel_size != (1, 1) or BIAS not in params:
        return None
    return BIAS


def log_scale(pred: torch.Tensor, labels: torch.Tensor, max_scale: float = DEFAULT_MAX_SCALE) -> float:
    """Median of log(label) - log(pred) over pixels valid in both (finite, > 0), clipped to ±log(max_scale); 0.0
    when no pixel is valid."""
    if max_scale < 1.0:
        raise ValueError(f"max_scale must be >= 1, got {max_scale}")
    valid = torch.isfinite(labels) & (labels > 0) & torch.isfinite(pred) & (pred > 0)
    if not valid.any():
        return 0.0
    r = torch.log(labels[valid].double()) - torch.log(pred[valid].double())
    bound = math.log(max_scale)
    return float(r.median().clamp(-bound, bound))


def with_log_scale(params: Params, name: str, s: float) -> Params:
    """``params`` with ``s`` added to parameter ``name`` (new tensors; the input is untouched)."""
    return {**params, name: (params[name] + s).detach()}


def apply_scale(head: nn.Module, params: Params, x: torch.Tensor, labels: torch.Tensor,
                max_scale: float = DEFAULT_MAX_SCALE, applied: float = 0.0) -> tuple[Params, float, float]:
    """Fold the closed-form scale of ``head`` (params) on the support (x, labels) into its output bias.

    ``applied``: the log shift already folded into these params by earlier calls; the total stays within
    ±log(max_scale). Returns (params, s, support loss). The scaled head is kept only if its support loss is no higher
    than the unscaled one's (the median is robust, not the loss's minimiser); otherwise the input params with s = 0.
    """
    name = scale_param(head, params)
    with torch.no_grad():
        pred = functional_call(head, params, (x,))
        loss = float(task_loss("depth", pred, labels))
        if name is None:
            return params, 0.0, loss
        bound = math.log(max_scale)
        s = min(max(applied + log_scale(pred, labels, max_scale), -bound), bound) - applied
        if s == 0.0:
            return params, 0.0, loss
        scaled = with_log_scale(params, name, s)
        scaled_loss = float(task_loss("depth", functional_call(head, scaled, (x,)), labels))
    return (scaled, s, scaled_loss) if scaled_loss <= loss else (params, 0.0, loss)
