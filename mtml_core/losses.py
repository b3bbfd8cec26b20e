"""Per-task losses L^j. Dense losses ignore invalid pixels (non-finite labels, depth ≤ 0).

- class: cross-entropy.
- depth: mean squared error of log-depth over valid pixels (the head predicts log-depth).
- normals: mean squared error between unit vectors over valid pixels (= (2 - 2·cos) / 3 per pixel).
- vp: squared error of unit directions invariant to every sign and to the order of the two horizontals (which
  the Manhattan frame does not fix): the vertical's sign-invariant error plus the better of the two pairings of
  the horizontals (eq. VP-1 below). Directions a label does not give (NaN rows) are left out.
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


def _sign_free_sq(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """min(|d̂ - d|², |d̂ + d|²) = 2 - 2·|d̂·d| for unit rows, over the last dimension."""
    return torch.minimum(((pred - y) ** 2).sum(-1), ((pred + y) ** 2).sum(-1))


def vp_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) unit directions, row 0 vertical. Eq. VP-1:
    L = e(v̂, v) + min(e(ĥ₁, h₁) + e(ĥ₂, h₂), e(ĥ₁, h₂) + e(ĥ₂, h₁)), e the sign-free squared error, averaged
    over the given directions (a NaN label row drops its terms)."""
    valid = torch.isfinite(y).all(-1)
    safe = torch.where(valid[..., None], y, torch.zeros_like(y))
    def err(i: int, j: int) -> torch.Tensor:
        return torch.where(valid[:, j], _sign_free_sq(pred[:, i], safe[:, j]), torch.zeros_like(safe[:, j, 0]))
    horizontal = torch.minimum(err(1, 1) + err(2, 2), err(1, 2) + err(2, 1))
    return (err(0, 0) + horizontal).sum() / (3.0 * valid.sum().clamp(min=1))


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
        if torch.isinf(y).any():
            raise ValueError("vp labels: contain inf")
        if not torch.isfinite(y[:, 0]).all():
            raise ValueError("vp labels: the vertical direction (row 0) must be given (NaN marks only unknown "
                             "horizontal directions)")
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
