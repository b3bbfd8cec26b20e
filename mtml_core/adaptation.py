"""Test-time adaptation of one task to a new subtask/domain (paper Fig. 4c): attention → multipliers, then the
head's inner loop on the modulated support features. Shared by evaluation (torch backbone) and the online engine
(any deployed backbone, through ``features_fn``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mtml_core.inner_loop import Params, adapt_head_best, head_loss, head_params
from mtml_core.losses import check_labels
from mtml_core.model import CosineClassHead, MultiTaskModel

FeaturesFn = Callable[[torch.Tensor, torch.Tensor | None], list[torch.Tensor]]
# (head, params, head input x, labels) -> params: a closed-form correction (e.g. the depth-scale term of
# mtml_core.adapt.scale) that must never raise the support loss
ClosedForm = Callable[[torch.nn.Module, Params, torch.Tensor, torch.Tensor], Params]


def support_weights(model: MultiTaskModel, task: str, images: torch.Tensor, labels: torch.Tensor,
                    features_fn: FeaturesFn | None = None) -> torch.Tensor:
    """w (B·C,) that ``task``'s attention module predicts from a support set, read on plain (unmodulated) features."""
    plain = (features_fn or model.features)(images, model.task_multiplier(task))
    return model.attention_weights(task, model.token_features(plain), labels)


@dataclass
class TaskAdaptation:
    """The adapted state of one task: its runtime multiplier (None = identity) and adapted head parameters."""

    task: str
    multiplier: torch.Tensor | None
    params: Params
    support_loss_before: float
    support_loss_after: float


def adapt_task(model: MultiTaskModel, task: str, images: torch.Tensor, labels: torch.Tensor, steps: int, lr: float,
               features_fn: FeaturesFn | None = None, use_attention: bool = True,
               stop: Callable[[], bool] | None = None, closed_form: ClosedForm | None = None,
               optimizer: str = "sgd") -> TaskAdaptation:
    """Adapt ``task`` to a support set (images (S,3,H,W) normalised, labels per the task's convention).

    ``features_fn(images, multiplier)`` returns the backbone's per-block features; default: the model's own
    backbone. The head takes ``steps`` first-order steps and the iterate with the lowest support loss is kept
    (:func:`mtml_core.inner_loop.adapt_head_best`; ``stop()`` True ends it early). Without attention the multiplier
    is the model's prior. ``closed_form(head, params, x, labels)``, if given, corrects the head before the inner loop
    (so its steps start from e.g. the right depth scale) and once more after it; ``support_loss_before`` stays the
    loss of the meta-learnt head. ``optimizer``: the inner loop's, "sgd" (the paper's) or "adam".
    Everything returned is detached (ready to be swapped into a serving model).
    """
    check_labels(task, labels, model.cfg.n_way)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{task}: {images.shape[0]} support images but {labels.shape[0]} labels")
    feats_fn = features_fn or (lambda im, m: model.features(im, m))
    head = model.heads[task]
    with torch.no_grad():
        if use_attention and task in model.attention:
            multiplier = model.task_multiplier(task, support_weights(model, task, images, labels, feats_fn))
        else:
            multiplier = model.prior_multiplier(task)
        x = model.head_input(task, feats_fn(images, multiplier)).detach()
    theta = {k: v.detach() for k, v in head_params(head).items()}
    if isinstance(head, CosineClassHead):
        theta["prototypes"] = imprint_prototypes(head, theta["prototypes"], x, labels, len(model.cfg.class_names))
    initial = None
    if closed_form is not None:
        with torch.no_grad():
            initial = float(head_loss(head, theta, x, labels, task))
        theta = closed_form(head, theta, x, labels)
    with torch.enable_grad():
        adapted, before, after = adapt_head_best(head, theta, x, labels, task, steps, lr, stop, optimizer)
    if closed_form is not None:
        adapted = closed_form(head, adapted, x, labels)
        with torch.no_grad():
            after = float(head_loss(head, adapted, x, labels, task))
        before = initial
    return TaskAdaptation(task, None if multiplier is None else multiplier.detach(), adapted, before, after)


def imprint_prototypes(head: CosineClassHead, prototypes: torch.Tensor, x: torch.Tensor, labels: torch.Tensor,
                       first_free: int) -> torch.Tensor:
    """New categories of a cosine class head: every row ≥ ``first_free`` (rows the training did not name) that the
    support labels use gets the mean unit embedding of its support examples as prototype (weight imprinting)."""
    out = prototypes.clone()
    with torch.no_grad():
        emb = head.embed(x)
        for row in labels.unique().tolist():
            if row >= first_free:
                out[row] = F.normalize(emb[labels == row].mean(0), dim=0, eps=1e-6)
    return out


def estimate_prior_weights(model: MultiTaskModel,
                           support_sets: Mapping[str, Sequence[tuple[torch.Tensor, torch.Tensor]]]) -> None:
    """Store as each task's attention prior w̄ its mean output over (images, labels) support sets.

    Served before any adaptation, (1 - w̄) keeps the backbone near the modulated features it was trained on (in
    joint mode Φ and θ only ever see modulated features, so the identity multiplier is off their distribution).
    """
    with torch.no_grad():
        for task, sets in support_sets.items():
            if task not in model.attention or not sets:
                continue
            ws = [support_weights(model, task, x, y) for x, y in sets]
            model.attention[task].prior.copy_(torch.stack(ws).mean(0))
