"""The meta-learner (paper eq. (3)–(5)) for AM, P-AM and the ANIL multi-head baseline:
optimisers, the multi-task sum of the per-task objectives (:mod:`mtml_core.objectives`) and the one optimiser step
that meta-training runs (``mtml-train`` and the benchmarks alike). MAML subclasses it in :mod:`mtml_core.maml`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from mtml_core.balancing import LossBalancer
from mtml_core.inner_loop import Params, adapt_head_batched, head_params
from mtml_core.meta_batch import Batch, validate_batch
from mtml_core.meta_config import MetaConfig, check_model
from mtml_core.model import MultiTaskModel
from mtml_core.objectives import OBJECTIVES, TaskObjective, anil_objective, features, head_input, task_adapts, tokens

GradientHook = Callable[[list[nn.Parameter]], None]


class MetaLearner:
    """Meta-trains a :class:`MultiTaskModel` with AM, P-AM or ANIL (MAML: :class:`mtml_core.maml.MAMLLearner`).

    Public attributes: ``model``, ``cfg``, ``balancer`` (:class:`LossBalancer`), ``optimizer`` (Adam, rate β: Φ, θ,
    label encoders, Medusa masks, uncertainty log-variances) and ``attention_optimizer`` (Adam, rate γ: Ψ; None
    without attention). Call ``model.train()`` for meta-training (per-episode BatchNorm statistics); in eval mode
    the running statistics are used (e.g. for validation under ``torch.no_grad()``, which the inner loop ignores).
    """

    methods: tuple[str, ...] = ("am", "pam", "anil")

    def __init__(self, model: MultiTaskModel, cfg: MetaConfig) -> None:
        if cfg.method not in self.methods:
            raise ValueError(f"method {cfg.method!r}: {type(self).__name__} runs {list(self.methods)}; "
                             "use build_learner to pick the right class")
        check_model(cfg.method, model)
        self.model, self.cfg = model, cfg
        device = next(model.parameters()).device
        self.balancer = LossBalancer(model.cfg.tasks, cfg.balancing, cfg.task_weights).to(device)
        outer = [p for n, p in model.named_parameters() if not n.startswith("attention.")]
        outer += [p for p in self.balancer.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(outer, lr=cfg.beta)
        psi = list(model.attention.parameters())
        self.attention_optimizer = torch.optim.Adam(psi, lr=cfg.gamma) if psi else None

    def task_adapts(self, task: str) -> bool:
        """Whether ``task`` is meta-trained with the head inner loop (see :func:`mtml_core.objectives.task_adapts`)."""
        return task_adapts(self.model, task)

    def inner_parameters(self, task: str) -> dict[str, nn.Parameter]:
        """The parameters the train-time inner loop adapts for ``task``: the head (task adaptation) or none."""
        return dict(self.model.heads[task].named_parameters()) if self.task_adapts(task) else {}

    def step(self, batch: Batch, *, lr_scale: float = 1.0, bf16: bool = False,
             reduce_gradients: GradientHook | None = None) -> dict[str, float]:
        """One meta-update on ``batch``, the optimiser step of every caller (``mtml-train``'s
        :func:`training.train.train_step`, the benchmarks): zero the gradients; set the rates to β, γ times
        ``lr_scale``; :meth:`meta_loss`, under bfloat16 autocast if ``bf16``; backward; ``reduce_gradients(params)``
        (e.g. the mean over ranks); clip the total norm to ``max_grad_norm``; one Adam step per optimiser.
        Returns the figures of :meth:`meta_loss` (plus ``grad_norm`` when clipping)."""
        optimizers = self._optimizers()
        for opt, base in zip(optimizers, (self.cfg.beta, self.cfg.gamma)):
            opt.zero_grad(set_to_none=True)
            for group in opt.param_groups:
                group["lr"] = base * lr_scale
        device = next(self.model.parameters()).device.type
        with torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss, stats = self.meta_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"meta-step: non-finite loss; per-task figures {stats}")
        loss.backward()
        params = [p for opt in optimizers for group in opt.param_groups for p in group["params"]]
        if reduce_gradients is not None:
            reduce_gradients(params)
        if self.cfg.max_grad_norm is not None:
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm))
        for opt in optimizers:
            opt.step()
        return stats

    def meta_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The differentiable meta-objective and its figures, without updating anything but BN running stats: eq. (3),
        the balanced sum over tasks of the losses that train Φ and θ, plus (literal mode) the losses that train only
        Ψ_j (eq. (5)), weighted alike.

        Figures: ``loss`` (the total), ``<task>/loss`` (adapted query loss of the path that trains Φ and θ),
        ``<task>/modulated`` (literal mode: the loss Ψ_j learns from), ``<task>/kl`` (P-AM), ``<task>/w`` (mean
        attention weight), ``<task>/acc`` (class query accuracy), ``<task>/weight`` (balancer weight).
        """
        validate_batch(self.model, batch)
        main: dict[str, torch.Tensor] = {}
        extra: dict[str, torch.Tensor] = {}
        stats: dict[str, float] = {}
        for task, episodes in batch.items():
            main[task], psi_loss, task_stats = self.task_objective(task, *episodes)
            if psi_loss is not None:
                extra[task] = psi_loss
            stats.update({f"{task}/{k}": v for k, v in task_stats.items()})
        total = self.balancer(main)
        weights = self.balancer.weights()
        for task, psi_loss in extra.items():
            total = total + weights[task].detach() * psi_loss
        stats.update({f"{task}/weight": float(weights[task].detach()) for task in batch})
        stats["loss"] = float(total.detach())
        return total, stats

    def task_objective(self, task: str, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor,
                       qy: torch.Tensor) -> TaskObjective:
        """``task``'s share of the meta-objective: the method's objective (:data:`mtml_core.objectives.OBJECTIVES`),
        ANIL's for a task without attention."""
        objective = OBJECTIVES[self.cfg.method] if task in self.model.attention else anil_objective
        return objective(self.model, self.cfg, task, sx, sy, qx, qy)

    def adapt(self, task: str, support_x: torch.Tensor, support_y: torch.Tensor) -> Params:
        """The head inner loop on T support sets (modulated by the attention if the model has it), as at train time
        for task adaptation: the adapted head parameters with a leading T dimension, keyed by parameter name."""
        validate_batch(self.model, {task: (support_x, support_y, support_x, support_y)})
        model = self.model
        feats = features(model, support_x, model.task_multiplier(task), update_stats=False)
        if task in model.attention:
            w = model.attention[task](tokens(model, task, feats, support_y)).weights
            feats = features(model, support_x, model.task_multiplier(task, w), update_stats=False)
        return adapt_head_batched(model.heads[task], head_params(model.heads[task]), head_input(model, task, feats),
                                  support_y, task, self.cfg.inner_steps, self.cfg.lr_for(task), self.cfg.first_order)

    def state_dict(self) -> dict[str, Any]:
        """Optimiser and balancer state (the model is saved by :mod:`mtml_core.checkpoint`)."""
        state = {"optimizer": self.optimizer.state_dict(), "balancer": self.balancer.state_dict()}
        if self.attention_optimizer is not None:
            state["attention_optimizer"] = self.attention_optimizer.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (copied: nothing stays shared with the source)."""
        state = copy.deepcopy(dict(state))
        self.optimizer.load_state_dict(state["optimizer"])
        self.balancer.load_state_dict(state["balancer"])
        if self.attention_optimizer is not None:
            self.attention_optimizer.load_state_dict(state["attention_optimizer"])

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.optimizer, self.attention_optimizer) if o is not None]
