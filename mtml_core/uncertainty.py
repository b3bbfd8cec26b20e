"""Uncertainty from P-AM (DESIGN.md "Model": probabilistic attention): per-pixel depth spread and per-task
confidence from samples of the attention prior's distribution over the channel multipliers.

A P-AM attention module maps a task's support set to a diagonal Gaussian over the pre-activations z of the channel
weights, ``w = sigmoid(z)``; the served multiplier is its mean's ``m = (1 - sigmoid(mu)) * mask`` (mask: the task's
Medusa mask, if any). :func:`support_distribution` keeps that Gaussian (no rclpy, numpy out) when a task adapts;
:func:`estimate` draws S multipliers from it and runs the deployed backbone and head S times (one stacked backbone
call per task: the runtime graphs take the multiplier as an input, so nothing is re-exported), giving

- ``depth_std`` (N, H, W): the standard deviation of the S depth maps (population std: 0 for S = 1 and for
  sigma -> 0), metres, at the network's input size;
- ``confidence[task]`` in [0, 1]: how much the S predictions agree (1: all equal). depth: 1 / (1 + mean over
  pixels of std / mean depth); normals and vp: the mean resultant length of the S unit vectors (vp rows
  sign-aligned to the first sample's, since a Manhattan direction's sign is arbitrary); class: 1 - the mean total
  variation distance between each sample's class probabilities and their mean.

AM and ANIL models have no distribution (:func:`unsupported` says why). Cost: S backbone passes per sampled task
and S head passes, measured by ``bench/inference.py`` (``uncertainty`` rows) against plain inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from mtml_core.model import compose_multiplier

if TYPE_CHECKING:
    from mtml_core.adapt.engine import AdaptationEngine
    from mtml_core.backends.base import Backend

MAX_SAMPLES = 16  # the node's uncertainty_samples upper bound (cost grows linearly)


def unsupported(model: torch.nn.Module) -> str | None:
    """Why ``model`` (a MultiTaskModel) gives no multiplier distribution, or None for a P-AM model."""
    cfg = model.cfg
    if cfg.use_attention and cfg.probabilistic:
        return None
    method = "anil" if not cfg.use_attention else "am"
    return (f"the served model is not P-AM (meta.method {method}: probabilistic={cfg.probabilistic}, "
            f"use_attention={cfg.use_attention}); only P-AM's attention gives a distribution over the multipliers")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


@dataclass(frozen=True)
class MultiplierDistribution:
    """One task's P-AM prior: z ~ N(mu, exp(log_sigma)^2) elementwise (M,), multiplier ``(1 - sigmoid(z)) * mask``."""

    mu: np.ndarray
    log_sigma: np.ndarray
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        mu, ls = (np.asarray(v, np.float32).reshape(-1) for v in (self.mu, self.log_sigma))
        if mu.shape != ls.shape or (self.mask is not None and np.shape(self.mask) != mu.shape):
            raise ValueError(f"distribution: mu {mu.shape}, log_sigma {ls.shape}, mask "
                             f"{None if self.mask is None else np.shape(self.mask)} must have one shape")
        if not (np.isfinite(mu).all() and np.isfinite(ls).all()):
            raise ValueError("distribution: mu and log_sigma must be finite")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "log_sigma", ls)
        if self.mask is not None:
            object.__setattr__(self, "mask", np.asarray(self.mask, np.float32).reshape(-1))

    def multiplier(self, z: np.ndarray) -> np.ndarray:
        """Multipliers of pre-activations z (..., M), float32 (composed as every runtime multiplier is)."""
        w = torch.from_numpy(_sigmoid(np.asarray(z, np.float64)))
        mask = None if self.mask is None else torch.from_numpy(self.mask.astype(np.float64))
        return compose_multiplier(w, mask).numpy().astype(np.float32)

    def mean_multiplier(self) -> np.ndarray:
        """The multiplier served for this distribution (its mean's): (M,)."""
        return self.multiplier(self.mu)

    def sample(self, samples: int, rng: np.random.Generator) -> np.ndarray:
        """``samples`` multipliers (S, M) drawn from the distribution."""
        eps = rng.standard_normal((samples, self.mu.size))
        return self.multiplier(self.mu + np.exp(self.log_sigma.astype(np.float64)) * eps)

    def widened(self, factor: float) -> MultiplierDistribution:
        """The same mean with every sigma times ``factor`` (> 0)."""
        if not factor > 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        return MultiplierDistribution(self.mu, self.log_sigma + math.log(factor), self.mask)


def support_distribution(model: torch.nn.Module, task: str, images: torch.Tensor, labels: torch.Tensor,
                         features_fn: Callable[..., list[torch.Tensor]] | None = None) -> MultiplierDistribution | None:
    """The P-AM prior of ``task`` for a support set (images normalised (S, 3, H, W), labels per the task's
    convention), read on plain features exactly as :func:`mtml_core.adaptation.support_weights` does (so its
    :meth:`~MultiplierDistribution.mean_multiplier` is the multiplier adaptation serves). None for a model without
    one (:func:`unsupported`) or a task without attention. ``features_fn(images, multiplier)``: the deployed
    backbone (default the model's own)."""
    if unsupported(model) is not None or task not in model.attention:
        return None
    with torch.no_grad():
        plain = (features_fn or model.features)(images, model.task_multiplier(task))
        tokens = model.attention_tokens(task, model.token_features(plain), labels)
        out = model.attention[task](tokens)
        mu, log_sigma = out.mu, out.log_sigma
        mask = model.masks[task]().detach().cpu().numpy() if task in model.masks else None
    return MultiplierDistribution(mu.detach().cpu().numpy(), log_sigma.detach().cpu().numpy(), mask)


def keep_for(new: Mapping[str, MultiplierDistribution], old: Mapping[str, MultiplierDistribution],
             kept: Sequence[str]) -> dict[str, MultiplierDistribution]:
    """Distributions of a state in which the tasks ``kept`` serve the old state's multipliers: theirs from ``old``."""
    out = {t: d for t, d in new.items() if t not in kept}
    out.update({t: old[t] for t in kept if t in old})
    return out


@dataclass(frozen=True)
class Uncertainty:
    """What :func:`estimate` measured for a batch of N frames from S samples of the multipliers."""

    samples: int
    depth_std: np.ndarray | None  # (N, H, W) metres, or None when depth was not sampled
    confidence: dict[str, float] = field(default_factory=dict)  # per sampled task, in [0, 1], mean over the batch
    seconds: float = 0.0


def _resultant(v: np.ndarray, axis: int) -> np.ndarray:
    """Mean resultant length over the sample axis 0 of unit vectors along ``axis`` (1: all samples agree)."""
    return np.linalg.norm(v.mean(axis=0), axis=axis)


def task_confidence(task: str, out: np.ndarray, n_classes: int | None = None) -> float:
    """Agreement in [0, 1] of S sampled outputs of ``task`` (S, N, ...), as the module docstring defines it."""
    out = np.asarray(out, np.float64)
    if task == "depth":
        std, mean = out.std(axis=0), out.mean(axis=0)
        valid = np.isfinite(std) & np.isfinite(mean) & (mean > 0)
        cv = float((std[valid] / mean[valid]).mean()) if valid.any() else float("inf")
        return 1.0 / (1.0 + cv)
    if task == "normals":  # (S, N, 3, H, W)
        return float(np.clip(_resultant(out, axis=2).mean(), 0.0, 1.0))
    if task == "vp":  # (S, N, 3, 3): rows are directions, each up to sign
        sign = np.sign((out * out[:1]).sum(-1, keepdims=True))
        return float(np.clip(_resultant(out * np.where(sign == 0, 1.0, sign), axis=-1).mean(), 0.0, 1.0))
    if task == "class":  # logits (S, N, rows)
        logits = out[..., :n_classes] if n_classes else out
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        tv = 0.5 * np.abs(p - p.mean(0, keepdims=True)).sum(-1)
        return float(np.clip(1.0 - tv.mean(), 0.0, 1.0))
    raise ValueError(f"task {task!r}: no confidence defined")


def estimate(backend: Backend, images: np.ndarray, distributions: Mapping[str, MultiplierDistribution],
             heads: Mapping[str, object] | None, samples: int, rng: np.random.Generator,
             tasks: Sequence[str] | None = None, n_classes: int | None = None) -> Uncertainty:
    """Sample ``samples`` (1..:data:`MAX_SAMPLES`) multipliers of every task in ``tasks`` (default: all with a
    distribution) and run ``backend`` (:class:`mtml_core.backends.Backend`) on ``images`` (N, 3, H, W), normalised,
    with each; ``heads[task]``: the serving head parameters (None = exported). ``n_classes``: class rows in use."""
    import time

    if not isinstance(samples, int) or isinstance(samples, bool) or not 1 <= samples <= MAX_SAMPLES:
        raise ValueError(f"samples must be an integer in [1, {MAX_SAMPLES}], got {samples!r}")
    t0 = time.perf_counter()
    x = backend.check_images(images)
    n = x.shape[0]
    heads = heads or {}
    tasks = [t for t in (distributions if tasks is None else tasks) if t in distributions]
    depth_std, confidence = None, {}
    for task in tasks:
        m = distributions[task].sample(samples, rng)  # (S, M): image i of sample s gets row s
        rows = np.ascontiguousarray(np.repeat(m, n, axis=0))
        feats = backend.features(np.concatenate([x] * samples), rows)
        out = backend.head(task, feats, heads.get(task))
        out = out.reshape(samples, n, *out.shape[1:])
        if task == "depth":
            depth_std = out[:, :, 0].astype(np.float64).std(axis=0).astype(np.float32)
        confidence[task] = task_confidence(task, out, n_classes)
    return Uncertainty(samples, depth_std, confidence, time.perf_counter() - t0)


def serving_uncertainty(engine: AdaptationEngine, rgb: np.ndarray, samples: int, rng: np.random.Generator,
                        version: int | None = None) -> Uncertainty | None:
    """:func:`estimate` for one uint8 RGB frame (H, W, 3) with an :class:`~mtml_core.adapt.AdaptationEngine`'s
    serving state (read once); None when that state has no distribution (not P-AM, not adapted in this process) or
    is no longer the state ``version`` (the one the frame's prediction came from)."""
    state = engine.state
    if not state.distributions or (version is not None and state.version != version):
        return None
    return estimate(engine.backend, engine.backend.preprocess(rgb), state.distributions, state.heads, samples, rng,
                    n_classes=len(state.class_names))


class UncertaintyMonitor:
    """What a serving loop (the ROS node) needs around :func:`serving_uncertainty`: when to sample (every
    ``period``-th frame, only while someone wants the result), the latest result of the serving state, and its
    state and figures as diagnostics values. ``reason``: why the served model has no distribution (None: P-AM)."""

    def __init__(self, reason: str | None, seed: int | None = None) -> None:
        self.reason = reason
        self.rng = np.random.default_rng(seed)
        self.frames = 0
        self.last: tuple[int, Uncertainty] | None = None  # (serving version, result)
        self.note = "off" if reason is None else f"unavailable: {reason}"

    def check_samples(self, samples: int) -> str | None:
        """Why ``samples`` cannot be used with the served model (None when it can)."""
        if samples > 0 and self.reason is not None:
            return f"{self.reason}; uncertainty_samples must stay 0 for it"
        return None

    def step(self, engine: AdaptationEngine, rgb: np.ndarray, version: int, samples: int, period: int,
             wanted: bool) -> Uncertainty | None:
        """Called once per served frame (``version``: its prediction's serving version): the estimate when one is
        due (``samples`` > 0, the ``period``-th frame, ``wanted``) and the serving state has a distribution."""
        if self.reason is not None:
            return None
        if samples <= 0:
            self.note = "off (uncertainty_samples 0)"
            return None
        if not wanted:
            self.note = "idle: nobody subscribes to ~/depth/std"
            return None
        self.frames += 1  # frames while wanted: the first one after a subscriber appears is estimated
        if (self.frames - 1) % period:
            return None
        u = serving_uncertainty(engine, rgb, samples, self.rng, version)
        if u is None:
            self.note = ("no distribution: the serving state was not adapted in this process (the meta-"
                         "initialisation and loaded profiles have none); adapt to publish uncertainty")
            return None
        self.last = (version, u)
        self.note = f"on: {samples} samples every {period} frame(s)"
        return u

    def values(self, version: int) -> dict[str, object]:
        """Diagnostics values: state, cost and per-task confidence of the latest estimate of serving ``version``."""
        out: dict[str, object] = {"uncertainty": self.note}
        if self.last is not None and self.last[0] == version:
            u = self.last[1]
            out["uncertainty_samples_used"] = u.samples
            out["uncertainty_ms"] = u.seconds * 1e3
            out.update({f"confidence_{t}": c for t, c in sorted(u.confidence.items())})
            if u.depth_std is not None:
                out["depth_std_mean_m"] = float(u.depth_std.mean())
        return out
