"""Loss balancing across high-level tasks: fixed weights (the paper, §5.1) or learned uncertainty weighting.

Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018) learns one log-variance ``s_j = log σ_j²`` per task and
minimises ``Σ_j exp(-s_j) · L_j + s_j``. Convention: the same form for every task (no ½ factor for regression
losses, since our losses are already means of squared errors or cross-entropies); ``s_j`` starts at 0, i.e. at
weight 1, and its effective weight is ``exp(-s_j)``. The stationary point of ``exp(-s)·L + s`` is ``s = log L``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

BALANCING = ("fixed", "uncertainty")


class LossBalancer(nn.Module):
    """Combines per-task losses into one scalar; ``weights()`` gives the current effective per-task weights."""

    def __init__(self, tasks: Sequence[str], mode: str = "fixed", weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if mode not in BALANCING:
            raise ValueError(f"balancing: unknown mode {mode!r}; expected one of {list(BALANCING)}")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(tasks))
        if unknown:
            raise ValueError(f"balancing: weights for unknown task(s) {unknown}; tasks are {list(tasks)}")
        bad = {t: w for t, w in weights.items() if not w > 0}
        if bad:
            raise ValueError(f"balancing: weights must be > 0, got {bad}")
        self.tasks = tuple(tasks)
        self.mode = mode
        fixed = torch.tensor([float(weights.get(t, 1.0)) for t in self.tasks])
        self.register_buffer("fixed", fixed)
        # s_j = log σ_j², initialised so that exp(-s_j) equals the fixed weight (1 unless given).
        self.log_vars = nn.Parameter(-fixed.log(), requires_grad=mode == "uncertainty")

    def weights(self) -> dict[str, torch.Tensor]:
        """Effective weight of each task's loss (differentiable for uncertainty weighting)."""
        values = self.fixed if self.mode == "fixed" else torch.exp(-self.log_vars)
        return dict(zip(self.tasks, values.unbind(0)))

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Σ_j w_j · L_j (fixed) or Σ_j exp(-s_j) · L_j + s_j (uncertainty), over the tasks present in ``losses``."""
        unknown = sorted(set(losses) - set(self.tasks))
        if unknown:
            raise ValueError(f"balancing: losses for unknown task(s) {unknown}; tasks are {list(self.tasks)}")
        if not losses:
            raise ValueError("balancing: no task losses to combine")
        total = torch.zeros((), dtype=next(iter(losses.values())).dtype, device=self.fixed.device)
        for j, task in enumerate(self.tasks):
            if task not in losses:
                continue
            if self.mode == "fixed":
                total = total + self.fixed[j] * losses[task]
            else:
                s = self.log_vars[j]
                total = total + torch.exp(-s) * losses[task] + s
        return total
