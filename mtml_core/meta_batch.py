"""The meta-batch format every learner takes, and its validation.

A meta-batch is ``{task: (support_x (T,S,3,H,W), support_y (T,S,...), query_x (T,Q,3,H,W), query_y (T,Q,...))}``:
T episodes per high-level task, labels per the conventions of docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mtml_core.losses import check_labels
from mtml_core.model import MultiTaskModel

Episodes = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Batch = Mapping[str, Episodes]


def validate_batch(model: MultiTaskModel, batch: Batch) -> None:
    """Raise ValueError naming the problem unless ``batch`` fits ``model`` (shapes, tasks, labels)."""
    if not batch:
        raise ValueError("meta-batch: no tasks")
    for task, episodes in batch.items():
        if task not in model.heads:
            raise ValueError(f"meta-batch: task {task!r} is not among the model's tasks {list(model.cfg.tasks)}")
        if len(episodes) != 4:
            raise ValueError(f"{task}: expected (support_x, support_y, query_x, query_y), got {len(episodes)} items")
        sx, sy, qx, qy = episodes
        for split, x, y in (("support", sx, sy), ("query", qx, qy)):
            if x.dim() != 5 or x.shape[2] != 3:
                raise ValueError(f"{task} {split}_x: expected (T, N, 3, H, W), got {tuple(x.shape)} "
                                 f"({x.shape[2] if x.dim() == 5 else '?'} channels)")
            if x.shape[1] == 0:
                raise ValueError(f"{task}: empty {split} set")
            if x.shape[0] != sx.shape[0]:
                raise ValueError(f"{task} {split}_x: {x.shape[0]} episodes but support_x has {sx.shape[0]}")
            if tuple(y.shape[:2]) != tuple(x.shape[:2]):
                raise ValueError(f"{task} {split}_y: leading shape {tuple(y.shape[:2])} != {split}_x's "
                                 f"{tuple(x.shape[:2])} (episodes, examples)")
            model.check_images(x[0, :1])
            check_labels(task, y.flatten(0, 1), model.cfg.n_way)
