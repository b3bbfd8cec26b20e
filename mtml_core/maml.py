"""MAML baseline (paper eq. 1): the whole network — backbone Φ and head θ — adapts in the inner loop.

Same meta-batch format, losses, balancer, optimiser and BatchNorm semantics as :class:`mtml_core.learner.MetaLearner`
(it is a subclass). Task-adaptation tasks (``class``) run k SGD steps on every parameter of backbone + head, for
all T episodes at once: the parameters get a leading T dimension, the backbone runs them as grouped convolutions
(:func:`mtml_core.episodic.episode_features`, BatchNorm affine parameters and buffers passed explicitly), the head
through ``torch.func.functional_call`` vmapped over episodes. Gradients come from ``torch.func.grad`` of the summed
episode losses (episodes share no parameter, so each gets its own gradient); second-order by default,
``first_order`` detaches the inner gradients. Running BatchNorm statistics are updated by the query pass of the
adapted networks only (inner-loop passes run inside ``torch.func.grad`` and leave them alone). Domain-adaptation
tasks are pre-trained exactly as in ANIL.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from mtml_core.config import TASK_ADAPTATION
from mtml_core.episodic import episode_features
from mtml_core.inner_loop import Params
from mtml_core.learner import MetaLearner
from mtml_core.losses import task_loss
from mtml_core.meta_batch import validate_batch
from mtml_core.objectives import TaskObjective, head_input

BACKBONE, HEAD = "backbone.", "head."


class MAMLLearner(MetaLearner):
    """MAML on a model without attention (``model_config_for("maml", cfg)``); API of :class:`MetaLearner`."""

    methods = ("maml",)

    def inner_parameters(self, task: str) -> dict[str, nn.Parameter]:
        """Every backbone and head parameter for task adaptation (names prefixed ``backbone.`` / ``head.``)."""
        if task not in TASK_ADAPTATION:
            return {}
        named = {BACKBONE + k: p for k, p in self.model.backbone.named_parameters()}
        return named | {HEAD + k: p for k, p in self.model.heads[task].named_parameters()}

    def adapt(self, task: str, support_x: torch.Tensor, support_y: torch.Tensor) -> Params:
        """Whole-network inner loop on T support sets: every parameter with a leading T dimension."""
        validate_batch(self.model, {task: (support_x, support_y, support_x, support_y)})
        return self._inner(task, support_x, support_y)

    def _predict(self, task: str, params: Params, images: torch.Tensor, update_stats: bool) -> torch.Tensor:
        """Outputs (T, N, ...) of T networks with per-episode parameters (leading T dimension) on (T, N, 3, H, W)."""
        backbone = {k[len(BACKBONE):]: v for k, v in params.items() if k.startswith(BACKBONE)}
        head = {k[len(HEAD):]: v for k, v in params.items() if k.startswith(HEAD)}
        feats = episode_features(self.model.backbone, images, self.model.task_multiplier(task), backbone,
                                 update_stats=update_stats)
        x = head_input(self.model, task, feats)
        return vmap(lambda p, xe: functional_call(self.model.heads[task], p, (xe,)))(head, x)

    def _inner(self, task: str, sx: torch.Tensor, sy: torch.Tensor) -> Params:
        """k SGD steps of rate α on each episode's support loss, over every parameter (expanded to T copies)."""
        t = sx.shape[0]

        def support_loss(p: Params) -> torch.Tensor:
            pred = self._predict(task, p, sx, update_stats=False)
            return vmap(lambda pe, ye: task_loss(task, pe, ye))(pred, sy).sum()

        params = {k: v.expand(t, *v.shape) for k, v in self.inner_parameters(task).items()}
        lr = self.cfg.lr_for(task)
        for _ in range(self.cfg.inner_steps):
            g = grad(support_loss)(params)
            params = {k: p - lr * (g[k].detach() if self.cfg.first_order else g[k]) for k, p in params.items()}
        return params

    def task_objective(self, task: str, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor,
                       qy: torch.Tensor) -> TaskObjective:
        """Eq. (1) for task adaptation: the query loss of the whole network after the inner loop; domain tasks as
        in ANIL."""
        if task not in TASK_ADAPTATION:
            return super().task_objective(task, sx, sy, qx, qy)
        pred = self._predict(task, self._inner(task, sx, sy), qx, update_stats=True)
        loss = vmap(lambda pe, ye: task_loss(task, pe, ye))(pred, qy).mean()
        acc = (pred.detach().argmax(-1) == qy).float().mean()
        return TaskObjective(loss, None, {"loss": float(loss.detach()), "acc": float(acc)})
