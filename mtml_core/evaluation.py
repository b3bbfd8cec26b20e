"""Evaluation helpers: test-time episodes (adapt, then score the query set), NIL, and mean ± 95% CI.

NIL (no-head evaluation, Raghu et al.; paper §5.2): a query takes the label of the support example (``nearest``) or
class prototype (``prototype``: mean support embedding per class) with the highest cosine similarity.
Confidence intervals use Student's t-distribution: half-width = t_{0.975, n-1} · sd / √n (sd with n − 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from scipy import stats
from torch.func import functional_call

from mtml_core.adaptation import adapt_task, support_weights
from mtml_core.losses import check_labels, task_loss
from mtml_core.metrics import task_metrics
from mtml_core.model import MultiTaskModel

NIL_MODES = ("nearest", "prototype")


@contextmanager
def preserved_buffers(model: torch.nn.Module) -> Iterator[None]:
    """Restore every buffer (BatchNorm running statistics) on exit, so that evaluating in train mode has no effect."""
    saved = {k: v.clone() for k, v in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(saved[k])


def evaluate_episode(model: MultiTaskModel, task: str, support_x: torch.Tensor, support_y: torch.Tensor,
                     query_x: torch.Tensor, query_y: torch.Tensor, steps: int, lr: float,
                     use_attention: bool = True) -> dict[str, float]:
    """Adapt ``task`` on one support set (:func:`mtml_core.adaptation.adapt_task`) and score its query set.

    Returns the query ``loss``, the task's metrics, and ``support_loss_before``/``support_loss_after``. The model's
    mode decides BatchNorm (train: batch statistics of the support, then of the query set); buffers are left as
    they were.
    """
    check_labels(task, query_y, model.cfg.n_way)
    if query_x.shape[0] != query_y.shape[0]:
        raise ValueError(f"{task}: {query_x.shape[0]} query images but {query_y.shape[0]} labels")
    with preserved_buffers(model):
        adapted = adapt_task(model, task, support_x, support_y, steps, lr, use_attention=use_attention)
        with torch.no_grad():
            x = model.head_input(task, model.features(query_x, adapted.multiplier))
            pred = functional_call(model.heads[task], adapted.params, (x,))
            loss = float(task_loss(task, pred, query_y))
    return {"loss": loss, **task_metrics(task, pred, query_y),
            "support_loss_before": adapted.support_loss_before, "support_loss_after": adapted.support_loss_after}


def nil_predict(support_emb: torch.Tensor, support_y: torch.Tensor, query_emb: torch.Tensor,
                mode: str = "nearest") -> torch.Tensor:
    """Labels (Q,) for query embeddings (Q, D) by cosine similarity to support embeddings (S, D) or prototypes."""
    if mode not in NIL_MODES:
        raise ValueError(f"NIL mode: {mode!r} is not one of {list(NIL_MODES)}")
    if support_emb.shape[0] == 0:
        raise ValueError("NIL: empty support set")
    if support_emb.shape[0] != support_y.shape[0]:
        raise ValueError(f"NIL: {support_emb.shape[0]} support embeddings but {support_y.shape[0]} labels")
    if support_emb.shape[1:] != query_emb.shape[1:]:
        raise ValueError(f"NIL: support embeddings {tuple(support_emb.shape)} and query {tuple(query_emb.shape)} "
                         "differ in size")
    keys, labels = support_emb.flatten(1), support_y
    if mode == "prototype":
        labels = torch.unique(support_y)
        keys = torch.stack([keys[support_y == c].mean(0) for c in labels])
    sim = F.normalize(query_emb.flatten(1), dim=1) @ F.normalize(keys, dim=1).T
    return labels[sim.argmax(1)]


def nil_episode(model: MultiTaskModel, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                query_y: torch.Tensor, mode: str = "nearest", use_attention: bool = True) -> float:
    """NIL accuracy (%) of one classification episode on the (attention-modulated, if any) embeddings."""
    check_labels("class", support_y, model.cfg.n_way)
    with preserved_buffers(model), torch.no_grad():
        multiplier = model.task_multiplier("class")
        if use_attention and "class" in model.attention:
            multiplier = model.task_multiplier("class", support_weights(model, "class", support_x, support_y))
        pred = nil_predict(model.embed(support_x, multiplier), support_y, model.embed(query_x, multiplier), mode)
    return 100.0 * float((pred == query_y).double().mean())


def mean_ci(values: Sequence[float] | torch.Tensor, level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the two-sided ``level`` confidence interval, Student's t with n − 1 dof."""
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    if x.numel() == 0:
        raise ValueError("mean_ci: no values")
    if not 0 < level < 1:
        raise ValueError(f"mean_ci: level must be in (0, 1), got {level}")
    if x.numel() == 1:
        return float(x[0]), math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.numel() - 1)) * float(x.std()) / math.sqrt(x.numel())
    return float(x.mean()), half
