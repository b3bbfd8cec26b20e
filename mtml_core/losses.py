"""Per-task losses L^j. Dense losses ignore invalid pixels (non-finite labels, depth ≤ 0).

- class: cross-entropy.
- depth: mean squared error of log-depth over valid pixels (the head predicts log-depth).
- normals: mean squared error between unit vectors over valid pixels (= (2 - 2·cos) / 3 per pixel).
- vp: sign-invariant squared error of the three unit directions, min(|d - d̂|², |d + d̂|²), averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _valid_mean(err: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of err over valid entries (0 with zero gradient when nothing is valid)."""
    err = torch.where(valid, err, torch.zeros_like(err))
    return err.sum() / valid.sum().clamp(min=1)


def class_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (N, n_way) logits against (N,) labels."""
    return F.cross_entropy(logits, y)


def depth_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Masked MSE of log-depth; pred and y are (N, 1, H, W) metres."""
    valid = torch.isfinite(y) & (y > 0)
    safe = torch.where(valid, y, torch.ones_like(y))
    return _valid_mean((torch.log(pred) - torch.log(safe)) ** 2, valid)


def normals_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Masked MSE between (N, 3, H, W) unit normals."""
    valid = torch.isfinite(y).all(dim=1, keepdim=True).expand_as(y)
    safe = torch.where(valid, y, torch.zeros_like(y))
    return _valid_mean((pred - safe) ** 2, valid)


def vp_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sign-invariant squared error of (N, 3, 3) unit directions, averaged over directions and components."""
    plus = ((pred - y) ** 2).sum(-1)
    minus = ((pred + y) ** 2).sum(-1)
    return torch.minimum(plus, minus).mean() / 3.0


LOSSES = {"class": class_loss, "depth": depth_loss, "normals": normals_loss, "vp": vp_loss}


def task_loss(task: str, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L^task(pred, y)."""
    try:
        fn = LOSSES[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {list(LOSSES)}") from None
    return fn(pred, y)


def check_labels(task: str, y: torch.Tensor, n_way: int | None = None) -> None:
    """Raise ValueError naming the problem when labels cannot be used for ``task``."""
    if y.shape[0] == 0:
        raise ValueError(f"{task} labels: empty support set")
    if task == "class":
        if y.dtype not in (torch.int64, torch.int32) or y.dim() != 1:
            raise ValueError(f"class labels: expected (N,) integers, got shape {tuple(y.shape)} dtype {y.dtype}")
        if n_way is not None and (int(y.min()) < 0 or int(y.max()) >= n_way):
            raise ValueError(f"class labels: values in [{int(y.min())}, {int(y.max())}] do not fit the "
                             f"{n_way}-way head (N-way mismatch)")
        return
    if task == "vp":
        if y.dim() != 3 or y.shape[1:] != (3, 3):
            raise ValueError(f"vp labels: expected (N, 3, 3), got {tuple(y.shape)}")
        if not torch.isfinite(y).all():
            raise ValueError("vp labels: contain NaN or inf")
        return
    if task not in ("depth", "normals"):
        raise ValueError(f"unknown task {task!r}")
    channels = 1 if task == "depth" else 3
    if y.dim() != 4 or y.shape[1] != channels:
        raise ValueError(f"{task} labels: expected (N, {channels}, H, W), got {tuple(y.shape)}")
    if torch.isinf(y).any():
        raise ValueError(f"{task} labels: contain inf (mark invalid pixels with NaN)")
    if not torch.isfinite(y).any():
        raise ValueError(f"{task} labels: all NaN (no valid pixel)")
