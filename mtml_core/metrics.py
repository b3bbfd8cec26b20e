"""Evaluation metrics per task (depth, normals, VP, class). Pure functions: tensors or arrays in, dict of floats out.

Validity masks follow the label convention: depth pixels count when finite and > 0, normal pixels when all three
components are finite, VP directions when all three components are finite. Keys ending in ``_pct`` are
percentages; angles are in degrees. ``within_1e-3_pct`` is the paper's Table 1 accuracy: the share of output values
within 1e-3 of the label. A metric with no valid entry is NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = torch.Tensor | np.ndarray
TOLERANCE = 1e-3


def _tensor(x: ArrayLike) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach().cpu(),
                           dtype=torch.float64)


def _pair(pred: ArrayLike, target: ArrayLike, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _tensor(pred), _tensor(target)
    if p.shape != t.shape:
        raise ValueError(f"{name} metrics: prediction shape {tuple(p.shape)} != label shape {tuple(t.shape)}")
    return p, t


def _mean(x: torch.Tensor) -> float:
    return float(x.mean()) if x.numel() else math.nan


def _pct(x: torch.Tensor) -> float:
    return 100.0 * float(x.double().mean()) if x.numel() else math.nan


def _angle_stats(angles: torch.Tensor, thresholds: tuple[float, ...]) -> dict[str, float]:
    stats = {"angle_mean": _mean(angles), "angle_median": float(angles.median()) if angles.numel() else math.nan}
    stats.update({f"within_{t:g}deg_pct": _pct(angles < t) for t in thresholds})
    return stats


def depth_metrics(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """Depth in metres, same shapes: MSE, AbsRel, RMSE, δ<1.25 (%), within 1e-3 (%)."""
    p, t = _pair(pred, target, "depth")
    valid = torch.isfinite(t) & (t > 0)
    p, t = p[valid], t[valid]
    sq = (p - t) ** 2
    ratio = torch.maximum(p / t, t / p)
    return {"mse": _mean(sq), "abs_rel": _mean((p - t).abs() / t), "rmse": math.sqrt(_mean(sq)),
            "delta_1.25_pct": _pct(ratio < 1.25), "within_1e-3_pct": _pct((p - t).abs() < TOLERANCE)}


def normals_metrics(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """Normals (N, 3, H, W): MSE over components, angular error (mean, median, % within 11.25/22.5/30°),
    within 1e-3 (% of components)."""
    p, t = _pair(pred, target, "normals")
    if p.dim() != 4 or p.shape[1] != 3:
        raise ValueError(f"normals metrics: expected (N, 3, H, W), got {tuple(p.shape)}")
    valid = torch.isfinite(t).all(dim=1)
    p, t = p.movedim(1, -1)[valid], t.movedim(1, -1)[valid]
    cos = (F.normalize(p, dim=-1) * F.normalize(t, dim=-1)).sum(-1).clamp(-1.0, 1.0)
    stats = {"mse": _mean((p - t) ** 2), "within_1e-3_pct": _pct((p - t).abs() < TOLERANCE)}
    return stats | _angle_stats(torch.rad2deg(torch.acos(cos)), (11.25, 22.5, 30.0))


def vp_metrics(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """Vanishing directions (N, 3, 3), row 0 vertical, invariant to signs and to the order of the two horizontals:
    MSE (as the loss), angular error (mean, median, % within 1/2/10°), within 1e-3 (% of components, sign
    aligned). NaN label rows are left out."""
    p, t = _pair(pred, target, "vp")
    if p.dim() != 3 or p.shape[1:] != (3, 3):
        raise ValueError(f"vp metrics: expected (N, 3, 3), got {tuple(p.shape)}")
    # the two horizontals are unordered (the Manhattan frame does not order them): take the better pairing
    swapped = p[:, [0, 2, 1]]
    def cost(q: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(1.0 - (F.normalize(q, dim=-1) * t).sum(-1).abs(), nan=0.0).sum(-1)
    p = torch.where((cost(swapped) < cost(p))[:, None, None], swapped, p)
    valid = torch.isfinite(t).all(dim=-1)
    p, t = F.normalize(p[valid], dim=-1), t[valid]
    sign = torch.where((p * t).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(p.dtype)
    diff = sign * p - t
    cos = (p * F.normalize(t, dim=-1)).sum(-1).abs().clamp(max=1.0)
    stats = {"mse": _mean((diff ** 2).sum(-1) / 3.0), "within_1e-3_pct": _pct(diff.abs() < TOLERANCE)}
    return stats | _angle_stats(torch.rad2deg(torch.acos(cos)), (1.0, 2.0, 10.0))


def class_metrics(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """Accuracy (%) of logits (N, K) or predicted labels (N,) against labels (N,)."""
    p, t = _tensor(pred), _tensor(target)
    labels = p.argmax(-1) if p.dim() == 2 else p
    if labels.shape != t.shape:
        raise ValueError(f"class metrics: {tuple(labels.shape)} predictions for labels {tuple(t.shape)}")
    return {"acc_pct": _pct(labels == t)}


METRICS = {"class": class_metrics, "depth": depth_metrics, "normals": normals_metrics, "vp": vp_metrics}


def task_metrics(task: str, pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """The metrics of ``task`` (one of class, depth, normals, vp)."""
    if task not in METRICS:
        raise ValueError(f"unknown task {task!r}; expected one of {list(METRICS)}")
    return METRICS[task](pred, target)
