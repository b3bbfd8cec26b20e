"""Multi-task meta-step (paper eq. 3–5, DESIGN.md "Meta-learning") for AM, P-AM and the ANIL multi-head baseline.

A meta-batch is ``{task: (support_x (T,S,3,H,W), support_y (T,S,...), query_x (T,Q,3,H,W), query_y (T,Q,...))}``:
T episodes per high-level task. Per task j:

- Task adaptation (``class``): the head meta-init θ_j is adapted on each episode's support set by the functional
  inner loop (eq. 2, vmapped over the T episodes); the adapted heads' query losses are averaged over episodes.
- Domain adaptation (``depth``, ``normals``, ``vp``): pooled pre-training, no inner loop: θ_j itself is applied to
  the support and query frames of every episode.

Modes. *literal* (default, eq. 4/5): Φ and θ get the gradient of the plain path f_Φ(I); Ψ_j (and the label
encoder feeding its tokens) gets the gradient of the modulated path f_Φ(I, 1 − w) only — Φ, θ and the Medusa mask
are detached there. *joint*: one modulated path whose loss updates Φ, θ and Ψ together (about one ANIL step).
w comes from the support tokens ``[x_i ; enc(y_i)]`` with x the plain embeddings. P-AM: prior from the support
tokens, posterior from the query tokens (with labels); w = sigmoid(z), z ~ q reparameterised; the modulated loss
gains ``kl_weight · KL(q ‖ p)``.

BatchNorm: backbone calls go through :func:`mtml_core.episodic.episode_features`, so in train mode each episode's
support set and query set are normalised with their own batch statistics (the same for every method, MAML
included). Running statistics are updated by the plain (unmodulated) passes only (mean over the episodes).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from mtml_core.attention import gaussian_kl, sample_weights
from mtml_core.balancing import BALANCING, LossBalancer
from mtml_core.config import TASK_ADAPTATION, TASKS, ModelConfig
from mtml_core.episodic import episode_features
from mtml_core.inner_loop import Params, adapt_head_batched, head_params
from mtml_core.losses import check_labels, task_loss
from mtml_core.model import MultiTaskModel

Episodes = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Batch = Mapping[str, Episodes]
METHODS = ("am", "pam", "anil", "maml")
MODES = ("literal", "joint")


@dataclass
class MetaConfig:
    """Meta-training hyper-parameters.

    ``method``: am | pam | anil | maml. ``inner_steps``/``inner_lr``: k and α of the inner loop (``task_inner_lr``
    overrides α per task; domain tasks use it at test time). ``beta``: Adam rate for Φ, θ, label encoders, Medusa
    masks and uncertainty log-variances; ``gamma``: Adam rate for Ψ. ``first_order``: drop second-order terms.
    ``mode``: literal | joint. ``kl_weight``: P-AM KL factor. ``balancing``: fixed | uncertainty, ``task_weights``
    the fixed weights (default 1; initial weights for uncertainty). ``max_grad_norm``: clip the total gradient norm
    (None: off).
    """

    method: str = "am"
    inner_steps: int = 5
    inner_lr: float = 0.1
    task_inner_lr: dict[str, float] = field(default_factory=dict)
    beta: float = 1e-3
    gamma: float = 1e-3
    first_order: bool = False
    mode: str = "literal"
    kl_weight: float = 0.01
    balancing: str = "fixed"
    task_weights: dict[str, float] = field(default_factory=dict)
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        self.task_inner_lr = {str(k): float(v) for k, v in dict(self.task_inner_lr).items()}
        self.task_weights = {str(k): float(v) for k, v in dict(self.task_weights).items()}
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        choices = {"method": METHODS, "mode": MODES, "balancing": BALANCING}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        if not isinstance(self.inner_steps, int) or self.inner_steps < 0:
            raise ValueError(f"inner_steps: must be an integer >= 0, got {self.inner_steps!r}")
        for name in ("inner_lr", "beta", "gamma", "kl_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        for name in ("task_inner_lr", "task_weights"):
            unknown = sorted(set(getattr(self, name)) - set(TASKS))
            if unknown:
                raise ValueError(f"{name}: unknown task(s) {unknown}")
        if any(not v >= 0 for v in self.task_inner_lr.values()):
            raise ValueError(f"task_inner_lr: rates must be >= 0, got {self.task_inner_lr}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm: must be > 0 or None, got {self.max_grad_norm!r}")

    def lr_for(self, task: str) -> float:
        """Inner-loop rate α for ``task``."""
        return self.task_inner_lr.get(task, self.inner_lr)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for YAML/JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetaConfig:
        """Build from a dict, refusing unknown keys by name."""
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"meta config: unknown key(s) {unknown}")
        return cls(**data)


def model_config_for(method: str, cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with the attention settings ``method`` needs (AM: attention; P-AM: probabilistic; ANIL/MAML: none)."""
    if method not in METHODS:
        raise ValueError(f"method: {method!r} is not one of {list(METHODS)}")
    return dataclasses.replace(cfg, use_attention=method in ("am", "pam"), probabilistic=method == "pam")


def check_model(method: str, model: MultiTaskModel) -> None:
    """Raise ValueError when ``model``'s attention settings do not match ``method`` (see :func:`model_config_for`)."""
    want = model_config_for(method, model.cfg)
    if (want.use_attention, want.probabilistic) != (model.cfg.use_attention, model.cfg.probabilistic):
        raise ValueError(f"method {method!r} needs use_attention={want.use_attention}, probabilistic="
                         f"{want.probabilistic}; the model has use_attention={model.cfg.use_attention}, "
                         f"probabilistic={model.cfg.probabilistic} (build it with model_config_for)")


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
        """Whether ``task`` is meta-trained with the head inner loop (task adaptation: the paper's N-way class task);
        the ``unet`` preset's class head names fixed categories, so it is trained pooled like the domain tasks."""
        return task in TASK_ADAPTATION and self.model.cfg.arch == "paper"

    def inner_parameters(self, task: str) -> dict[str, nn.Parameter]:
        """The parameters the train-time inner loop adapts for ``task``: the head (task adaptation) or none."""
        return dict(self.model.heads[task].named_parameters()) if self.task_adapts(task) else {}

    def step(self, batch: Batch) -> dict[str, float]:
        """One meta-update on ``batch``; returns the losses and diagnostics as floats (see :meth:`meta_loss`)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.attention_optimizer is not None:
            self.attention_optimizer.zero_grad(set_to_none=True)
        loss, stats = self.meta_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"meta-step: non-finite loss; per-task figures {stats}")
        loss.backward()
        if self.cfg.max_grad_norm is not None:
            params = [p for g in self._optimizers() for group in g.param_groups for p in group["params"]]
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm))
        for opt in self._optimizers():
            opt.step()
        return stats

    def meta_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The differentiable meta-objective and its figures, without updating anything but BN running stats.

        Figures: ``loss`` (the total), ``<task>/loss`` (adapted query loss of the path that trains Φ and θ),
        ``<task>/modulated`` (literal mode: the loss Ψ_j learns from), ``<task>/kl`` (P-AM), ``<task>/w`` (mean
        attention weight), ``<task>/acc`` (class query accuracy), ``<task>/weight`` (balancer weight).
        """
        validate_batch(self.model, batch)
        main: dict[str, torch.Tensor] = {}
        extra: dict[str, torch.Tensor] = {}
        stats: dict[str, float] = {}
        for task, episodes in batch.items():
            main[task], psi_loss, task_stats = self._task_objective(task, *episodes)
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

    def adapt(self, task: str, support_x: torch.Tensor, support_y: torch.Tensor) -> Params:
        """The head inner loop on T support sets (modulated by the attention if the model has it), as at train time
        for task adaptation: the adapted head parameters with a leading T dimension, keyed by parameter name."""
        validate_batch(self.model, {task: (support_x, support_y, support_x, support_y)})
        feats = self._features(support_x, self.model.task_multiplier(task), update_stats=False)
        if task in self.model.attention:
            w = self._weights(task, feats, support_y)
            feats = self._features(support_x, self._multiplier(task, w), update_stats=False)
        x = self._head_input(task, feats)
        return adapt_head_batched(self.model.heads[task], head_params(self.model.heads[task]), x, support_y, task,
                                  self.cfg.inner_steps, self.cfg.lr_for(task), self.cfg.first_order)

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

    # -- internals -------------------------------------------------------------------------------------------------

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.optimizer, self.attention_optimizer) if o is not None]

    def _features(self, images: torch.Tensor, multipliers: torch.Tensor | None, frozen: bool = False,
                  update_stats: bool = True) -> list[torch.Tensor]:
        """Backbone features (T, N, C, h, w) per block; ``frozen`` detaches Φ (gradients reach only the multipliers)."""
        params = {k: v.detach() for k, v in self.model.backbone.named_parameters()} if frozen else None
        return episode_features(self.model.backbone, images, multipliers, params, update_stats=update_stats)

    def _multiplier(self, task: str, w: torch.Tensor | None, detach_mask: bool = False) -> torch.Tensor | None:
        """Runtime multiplier (1 − w) · Medusa mask; ``detach_mask`` keeps the mask out of Ψ's literal path."""
        if not detach_mask or task not in self.model.masks:
            return self.model.task_multiplier(task, w)
        mask = self.model.masks[task]().detach()
        return mask if w is None else (1.0 - w) * mask

    def _tokens(self, task: str, feats: list[torch.Tensor], y: torch.Tensor, detach: bool = False) -> torch.Tensor:
        """Per-episode attention tokens: per-block features (T, N, C, h, w) and labels (T, N, ...) → (T, N, D)."""
        t, n = y.shape[:2]
        x = self.model.token_features([f.flatten(0, 1) for f in feats])
        x = x.detach() if detach else x
        return self.model.attention_tokens(task, x, y.flatten(0, 1)).unflatten(0, (t, n))

    def _weights(self, task: str, feats: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """Deterministic per-episode w (T, B·C): AM output, or the P-AM prior mean."""
        out = self.model.attention[task](self._tokens(task, feats, y))
        return torch.sigmoid(out[0]) if isinstance(out, tuple) else out

    def _head_input(self, task: str, feats: list[torch.Tensor]) -> torch.Tensor:
        t, n = feats[-1].shape[:2]
        return self.model.head_input(task, [f.flatten(0, 1) for f in feats]).unflatten(0, (t, n))

    def _task_objective(self, task: str, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor,
                        qy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, float]]:
        """(loss training Φ and θ, extra loss training only Ψ in literal mode, figures) for one task."""
        model, literal = self.model, self.cfg.mode == "literal"
        plain_m, theta = model.task_multiplier(task), head_params(model.heads[task])
        fs = self._features(sx, plain_m)
        if task not in model.attention:
            loss, stats = self._adapted_loss(task, theta, fs, sy, self._features(qx, plain_m), qy)
            return loss, None, stats
        stats: dict[str, float] = {}
        if literal:  # eq. 4: Φ and θ from the plain path; the modulated path below sees them detached
            fq = self._features(qx, plain_m)
            loss, stats = self._adapted_loss(task, theta, fs, sy, fq, qy)
            theta = {k: v.detach() for k, v in theta.items()}
        elif model.cfg.probabilistic:  # the posterior reads plain query embeddings (no gradient needed there)
            with torch.no_grad():
                fq = self._features(qx, plain_m)
        tokens = self._tokens(task, fs, sy, detach=literal)
        kl = None
        if model.cfg.probabilistic:
            mu_p, log_sigma_p = model.attention[task](tokens)
            mu_q, log_sigma_q = model.attention[task](self._tokens(task, fq, qy, detach=True))
            w = sample_weights(mu_q, log_sigma_q)
            kl = gaussian_kl(mu_q, log_sigma_q, mu_p, log_sigma_p).mean()
        else:
            w = model.attention[task](tokens)
        m = self._multiplier(task, w, detach_mask=literal)
        ms = self._features(sx, m, frozen=literal, update_stats=False)
        mq = self._features(qx, m, frozen=literal, update_stats=False)
        mod_loss, mod_stats = self._adapted_loss(task, theta, ms, sy, mq, qy)
        stats["w"] = float(w.detach().mean())
        if kl is not None:
            stats["kl"] = float(kl.detach())
            mod_loss = mod_loss + self.cfg.kl_weight * kl
        if literal:
            stats["modulated"] = mod_stats["loss"]
            return loss, mod_loss, stats
        return mod_loss, None, {**mod_stats, **stats}

    def _adapted_loss(self, task: str, theta: Params, fs: list[torch.Tensor], sy: torch.Tensor,
                      fq: list[torch.Tensor], qy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Query loss of the adapted head (task adaptation) or pooled loss of θ (domain adaptation)."""
        head = self.model.heads[task]
        xs, xq = self._head_input(task, fs), self._head_input(task, fq)
        if not self.task_adapts(task):
            pred = functional_call(head, theta, (torch.cat([xs, xq], 1).flatten(0, 1),))
            labels = torch.cat([sy, qy], 1).flatten(0, 1)
            loss = task_loss(task, pred, labels)
            stats = {"loss": float(loss.detach())}
            if task == "class":
                stats["acc"] = float((pred.detach().argmax(-1) == labels).float().mean())
            return loss, stats
        adapted = adapt_head_batched(head, theta, xs, sy, task, self.cfg.inner_steps, self.cfg.lr_for(task),
                                     self.cfg.first_order)
        pred = vmap(lambda p, x: functional_call(head, p, (x,)))(adapted, xq)
        loss = vmap(lambda p, y: task_loss(task, p, y))(pred, qy).mean()
        acc = (pred.detach().argmax(-1) == qy).float().mean()
        return loss, {"loss": float(loss.detach()), "acc": float(acc)}


def build_learner(model: MultiTaskModel, cfg: MetaConfig) -> MetaLearner:
    """The learner for ``cfg.method``: :class:`MetaLearner`, or its subclass :class:`mtml_core.maml.MAMLLearner`."""
    if cfg.method == "maml":
        from mtml_core.maml import MAMLLearner  # maml builds on this module

        return MAMLLearner(model, cfg)
    return MetaLearner(model, cfg)
