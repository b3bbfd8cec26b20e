"""Per-task meta-objectives of ANIL, AM and P-AM (paper §4; MAML: :mod:`mtml_core.maml`).

Each objective turns one task's T episodes into a :class:`TaskObjective`: the loss that trains Φ and θ (the learner
sums it over tasks, eq. (3)), an extra loss that trains only Ψ_j (AM/P-AM literal mode, eq. (5)), and figures.

- Task adaptation (``class`` in the ``paper`` preset): the head meta-init θ_j is adapted on each episode's support
  set by the functional inner loop (eq. (2), vmapped over the T episodes); the adapted heads' query losses are
  averaged over episodes.
- Domain adaptation (``depth``, ``normals``, ``vp``, and the ``unet`` preset's named classes): pooled pre-training,
  no inner loop: θ_j itself is applied to the support and query frames of every episode.

AM/P-AM modes. *literal* (default, eq. (4)/(5)): Φ and θ get the gradient of the plain path f_Φ(I); Ψ_j (and the
label encoder feeding its tokens) gets the gradient of the modulated path f_Φ(I, 1 − w) only — Φ, θ and the Medusa
mask are detached there. *joint*: one modulated path whose loss updates Φ, θ and Ψ together (about one ANIL step).
w comes from the support tokens ``[x_i ; enc(y_i)]`` with x the plain embeddings.

Served term (ours, joint mode, pooled tasks, ``served_weight`` λ_s > 0), eq. (S): L_j + λ_s · L_j(g_θ(f_Φ(I_q, 1 − w̄)))
with w̄ the attention prior, the multiplier the node serves before any adaptation. Without it θ only ever sees
support-set multipliers, which carry the environment's labels (its depth scale, say), and the unadapted output is
left untrained. w̄ follows the batch mean of w during training (:func:`track_prior`); training ends by refitting it.

BatchNorm: backbone calls go through :func:`mtml_core.episodic.episode_features`, so in train mode each episode's
support set and query set are normalised with their own batch statistics (the same for every method, MAML
included). Running statistics are updated by the plain (unmodulated) passes only (mean over the episodes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.func import functional_call, vmap

from mtml_core.attention import AttentionOutput
from mtml_core.config import TASK_ADAPTATION
from mtml_core.episodic import episode_features
from mtml_core.inner_loop import Params, adapt_head_batched, head_params
from mtml_core.losses import task_loss
from mtml_core.meta_config import MetaConfig
from mtml_core.model import MultiTaskModel

Features = list[torch.Tensor]


class TaskObjective(NamedTuple):
    """One task's share of the meta-objective: ``loss`` trains Φ and θ (and Ψ in joint mode), ``psi_loss`` only Ψ
    (literal mode; None otherwise), ``stats`` the task's figures."""

    loss: torch.Tensor
    psi_loss: torch.Tensor | None
    stats: dict[str, float]


# -- shared pieces -----------------------------------------------------------------------------------------------

def task_adapts(model: MultiTaskModel, task: str) -> bool:
    """Whether ``task`` is meta-trained with the head inner loop (task adaptation: the paper's N-way class task);
    the ``unet`` preset's class head names fixed categories, so it is trained pooled like the domain tasks."""
    return task in TASK_ADAPTATION and model.cfg.arch == "paper"


def features(model: MultiTaskModel, images: torch.Tensor, multiplier: torch.Tensor | None, frozen: bool = False,
             update_stats: bool = True) -> Features:
    """Backbone features (T, N, C, h, w) per block of (T, N, 3, H, W) images; ``frozen`` detaches Φ (gradients reach
    only the multiplier)."""
    params = {k: v.detach() for k, v in model.backbone.named_parameters()} if frozen else None
    return episode_features(model.backbone, images, multiplier, params, update_stats=update_stats)


def tokens(model: MultiTaskModel, task: str, feats: Features, y: torch.Tensor, detach: bool = False) -> torch.Tensor:
    """Per-episode attention tokens [x_i ; enc(y_i)]: per-block features (T, N, C, h, w) and labels (T, N, ...) →
    (T, N, D); ``detach`` keeps Φ out of the attention's gradient."""
    t, n = y.shape[:2]
    x = model.token_features([f.flatten(0, 1) for f in feats])
    x = x.detach() if detach else x
    return model.attention_tokens(task, x, y.flatten(0, 1)).unflatten(0, (t, n))


def head_input(model: MultiTaskModel, task: str, feats: Features) -> torch.Tensor:
    """What head g^task reads, per episode: (T, N, ...)."""
    t, n = feats[-1].shape[:2]
    return model.head_input(task, [f.flatten(0, 1) for f in feats]).unflatten(0, (t, n))


def adapted_loss(model: MultiTaskModel, cfg: MetaConfig, task: str, theta: Params, fs: Features, sy: torch.Tensor,
                 fq: Features, qy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Query loss of the head adapted on the support set (eq. (2): θ' = θ − α∇_θ L̂, k steps, per episode), or the
    pooled loss of θ itself on support and query (domain adaptation by pre-training)."""
    head = model.heads[task]
    xs, xq = head_input(model, task, fs), head_input(model, task, fq)
    if not task_adapts(model, task):
        pred = functional_call(head, theta, (torch.cat([xs, xq], 1).flatten(0, 1),))
        labels = torch.cat([sy, qy], 1).flatten(0, 1)
        loss = task_loss(task, pred, labels)
        stats = {"loss": float(loss.detach())}
        if task == "class":
            stats["acc"] = float((pred.detach().argmax(-1) == labels).float().mean())
        return loss, stats
    adapted = adapt_head_batched(head, theta, xs, sy, task, cfg.inner_steps, cfg.lr_for(task), cfg.first_order)
    pred = vmap(lambda p, x: functional_call(head, p, (x,)))(adapted, xq)
    loss = vmap(lambda p, y: task_loss(task, p, y))(pred, qy).mean()
    acc = (pred.detach().argmax(-1) == qy).float().mean()
    return loss, {"loss": float(loss.detach()), "acc": float(acc)}


PRIOR_MOMENTUM = 0.02  # w̄ ← (1 − m) w̄ + m · mean(w) per step (about the last 50 steps)


def track_prior(module: torch.nn.Module, w: torch.Tensor) -> None:
    """Move the attention prior w̄ (buffer ``prior``) towards the episodes' mean weights ``w`` (T, M); an unset
    (all-zero) prior takes the mean at once."""
    with torch.no_grad():
        mean = w.detach().reshape(-1, w.shape[-1]).mean(0).to(module.prior.dtype)
        if bool(module.prior.any()):
            module.prior.lerp_(mean, PRIOR_MOMENTUM)
        else:
            module.prior.copy_(mean)


def served_loss(model: MultiTaskModel, task: str, theta: Params, qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
    """Eq. (S): the query loss of θ on features modulated by the attention prior's multiplier (1 − w̄), no support
    labels involved: what the node publishes before adapting."""
    fq = features(model, qx, model.prior_multiplier(task), update_stats=False)
    pred = functional_call(model.heads[task], theta, (head_input(model, task, fq).flatten(0, 1),))
    return task_loss(task, pred, qy.flatten(0, 1))


# -- ANIL multi-head -----------------------------------------------------------------------------------------------

def anil_objective(model: MultiTaskModel, cfg: MetaConfig, task: str, sx: torch.Tensor, sy: torch.Tensor,
                   qx: torch.Tensor, qy: torch.Tensor) -> TaskObjective:
    """ANIL (no attention): the task's term of eq. (3), the query loss of the head adapted by eq. (2) on the plain
    path f_Φ(I); it trains Φ and θ."""
    plain = model.task_multiplier(task)
    loss, stats = adapted_loss(model, cfg, task, head_params(model.heads[task]), features(model, sx, plain), sy,
                               features(model, qx, plain), qy)
    return TaskObjective(loss, None, stats)


# -- AM and P-AM ---------------------------------------------------------------------------------------------------

# (model, task, prior = h_j(support tokens), plain query features on demand, query labels) → (w, KL term or None)
WeightsFn = Callable[[MultiTaskModel, str, AttentionOutput, Callable[[], Features], torch.Tensor],
                     tuple[torch.Tensor, torch.Tensor | None]]


def am_weights(model: MultiTaskModel, task: str, prior: AttentionOutput, query_feats: Callable[[], Features],
               qy: torch.Tensor) -> tuple[torch.Tensor, None]:
    """AM: w = sigmoid(h_j([x_tr ; enc(y_tr)])) (§4.2), deterministic."""
    return prior.weights, None


def pam_weights(model: MultiTaskModel, task: str, prior: AttentionOutput, query_feats: Callable[[], Features],
                qy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """P-AM (ELBO of §4.2): w = sigmoid(z), z ~ q(z | x_te, y_te) reparameterised, the posterior from the labelled
    query tokens (plain embeddings, detached); the KL term KL(q ‖ p) against the support prior p, mean over episodes."""
    posterior = model.attention[task](tokens(model, task, query_feats(), qy, detach=True))
    return posterior.sample(), posterior.kl(prior).mean()


def attention_objective(model: MultiTaskModel, cfg: MetaConfig, task: str, sx: torch.Tensor, sy: torch.Tensor,
                        qx: torch.Tensor, qy: torch.Tensor, weights: WeightsFn) -> TaskObjective:
    """The AM/P-AM objective with w from ``weights``: literal mode eq. (4) (Φ, θ from the plain path) plus eq. (5)
    (Ψ_j from the modulated path f_Φ(I, 1 − w)); joint mode one modulated path for all of them."""
    literal = cfg.mode == "literal"
    plain, theta = model.task_multiplier(task), head_params(model.heads[task])
    fs = features(model, sx, plain)
    stats: dict[str, float] = {}
    fq: Features | None = None
    if literal:  # eq. (4): Φ and θ from the plain path; the modulated path below sees them detached
        fq = features(model, qx, plain)
        loss, stats = adapted_loss(model, cfg, task, theta, fs, sy, fq, qy)
        theta = {k: v.detach() for k, v in theta.items()}

    def query_feats() -> Features:  # plain query embeddings for a posterior (no gradient needed there)
        if fq is not None:
            return fq
        with torch.no_grad():
            return features(model, qx, plain)

    prior = model.attention[task](tokens(model, task, fs, sy, detach=literal))
    w, kl = weights(model, task, prior, query_feats, qy)
    m = model.task_multiplier(task, w, detach_mask=literal)  # 1 − w (§4.2), times the Medusa mask
    ms = features(model, sx, m, frozen=literal, update_stats=False)
    mq = features(model, qx, m, frozen=literal, update_stats=False)
    mod_loss, mod_stats = adapted_loss(model, cfg, task, theta, ms, sy, mq, qy)  # eq. (5)'s loss
    stats["w"] = float(w.detach().mean())
    if cfg.served_weight and not literal and not task_adapts(model, task):  # eq. (S)
        track_prior(model.attention[task], w)
        served = served_loss(model, task, theta, qx, qy)
        stats["served"] = float(served.detach())
        mod_loss = mod_loss + cfg.served_weight * served
    if kl is not None:
        stats["kl"] = float(kl.detach())
        mod_loss = mod_loss + cfg.kl_weight * kl
    if literal:
        stats["modulated"] = mod_stats["loss"]
        return TaskObjective(loss, mod_loss, stats)
    return TaskObjective(mod_loss, None, {**mod_stats, **stats})


def am_objective(model: MultiTaskModel, cfg: MetaConfig, task: str, sx: torch.Tensor, sy: torch.Tensor,
                 qx: torch.Tensor, qy: torch.Tensor) -> TaskObjective:
    """AM: eq. (4) and (5) with w from the support set (:func:`am_weights`)."""
    return attention_objective(model, cfg, task, sx, sy, qx, qy, am_weights)


def pam_objective(model: MultiTaskModel, cfg: MetaConfig, task: str, sx: torch.Tensor, sy: torch.Tensor,
                  qx: torch.Tensor, qy: torch.Tensor) -> TaskObjective:
    """P-AM: eq. (4), and eq. (5) with the ELBO: w sampled from the posterior, plus ``kl_weight`` · KL(q ‖ p)
    (:func:`pam_weights`)."""
    return attention_objective(model, cfg, task, sx, sy, qx, qy, pam_weights)


Objective = Callable[[MultiTaskModel, MetaConfig, str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                     TaskObjective]
OBJECTIVES: dict[str, Objective] = {"anil": anil_objective, "am": am_objective, "pam": pam_objective}
