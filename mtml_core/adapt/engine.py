"""The online adaptation engine: serve a deployed model, collect labelled frames per environment, adapt
(attention → multipliers, k inner steps per head in torch, on the deployed backbone's features) and swap the
result in atomically; save/load environment profiles and recognise known environments.

Thread model: :meth:`AdaptationEngine.infer` reads the serving state once (a single reference) and runs with it,
so it never blocks on adaptation and never sees a mix of two states; :meth:`adapt`, :meth:`load_profile` and
:meth:`reset` build a complete new state and publish it with one assignment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import numbers
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtml_core.adapt.buffer import DEFAULT_MAX_BYTES, SupportBuffer
from mtml_core.adapt.labels import MIN_DEPTH, SupportFrame, make_support_frame
from mtml_core.adapt.profiles import Profile, ProfileStore, check_name
from mtml_core.adapt.recognition import Calibration, calibrate, set_score
from mtml_core.adapt.results import AdaptResult, Prediction, Recognition, TaskStats
from mtml_core.adapt.scale import DEFAULT_MAX_SCALE, apply_scale
from mtml_core.adaptation import TaskAdaptation, adapt_task
from mtml_core.backends import Backend, load_backend
from mtml_core.backends.manifest import MODEL_DIR
from mtml_core.checkpoint import load_config
from mtml_core.config import DENSE_TASKS
from mtml_core.inner_loop import OPTIMIZERS
from mtml_core.losses import task_loss
from mtml_core.model import MultiTaskModel
from mtml_core.uncertainty import MultiplierDistribution, keep_for, support_distribution
from mtml_core.vp_lines import DEFAULT_WIDTH, refined_vps, segment_planes, width_problem

log = logging.getLogger(__name__)
DEFAULT_LR = 0.1  # MetaConfig's default inner_lr
ADAM_LR = 3e-3  # depth head with depth_optimizer "adam" (chosen on 7-Scenes frames the real-data bench never scores)
MAX_STEPS = 1000  # inner-loop steps one adaptation may ask for (adapt() refuses more)
MAX_RECOGNIZE_FRAMES = 64  # frames one recognition may compare


@dataclass
class EngineConfig:
    """Engine settings (the ROS node maps its parameters onto these).

    ``lr``: inner-loop rate α, one value or per task; None: the rates the model was meta-trained with (the
    checkpoint's ``meta`` section: ``inner_lr``, ``task_inner_lr``), else 0.1. ``steps``: default inner-loop steps,
    0..:data:`MAX_STEPS`. ``adapt_timeout``: seconds one adaptation may take; past it the adaptation stops between
    inner steps and is rejected (None: no deadline; :meth:`AdaptationEngine.cancel` stops one at any time).
    ``tolerance``: a task's adaptation is swapped in when its support loss is <= (1 + tolerance) × the serving
    model's. Depth labels: pixels outside [``min_depth``, ``max_depth``] metres are invalid; ``min_valid``: smallest
    fraction of valid pixels in a dense label. ``buffer_size`` frames per environment, ``buffer_bytes`` over all.
    Recognition is an open-set decision calibrated per model (:mod:`mtml_core.adapt.recognition`): ``auto_switch``
    loads the recognised profile when its confidence >= ``switch_confidence``. ``adapt_threads``: torch threads
    while adapting (process-wide in torch, restored afterwards). One is the default: inference keeps running beside
    adaptation, and torch's thread pool on an oversubscribed CPU is many times slower than one thread (measured
    2.0-6.9 s vs 0.2 s).
    ``depth_scale``: fold the closed-form depth-scale term (:mod:`mtml_core.adapt.scale`: median log-ratio of the
    support labels to the predictions, at most ``max_depth_scale`` either way) into the depth head, before its inner
    loop and again after it. ``normals_from``: how a frame with depth and K but no normals gets its normals label
    (:func:`mtml_core.adapt.labels.make_support_frame`: "pseudo" plane fits for sensor depth, "difference" for
    exact depth). ``vp_lines_width``: refine the VP head's directions on the frame's line segments
    (:mod:`mtml_core.vp_lines`, the frame resized to this width; 0: off) when :meth:`infer` is given intrinsics.
    ``depth_optimizer``: the depth head's inner loop, "sgd" (the paper's, at the meta-learnt rate) or "adam" (at
    :data:`ADAM_LR` unless ``lr`` says otherwise: for real frames, far from the meta-training world, where a few
    SGD steps barely move the head); the other heads always take SGD steps (Adam made real normals worse).
    """

    steps: int = 10
    lr: float | Mapping[str, float] | None = None
    buffer_size: int = 50
    buffer_bytes: int = DEFAULT_MAX_BYTES
    tolerance: float = 0.0
    use_attention: bool = True
    min_depth: float = MIN_DEPTH
    max_depth: float = 100.0
    min_valid: float = 0.01
    auto_switch: bool = False
    switch_confidence: float = 0.8
    adapt_timeout: float | None = 300.0
    adapt_threads: int | None = 1
    adapt_workers: int = 2
    depth_scale: bool = True
    max_depth_scale: float = DEFAULT_MAX_SCALE
    normals_from: str = "pseudo"
    vp_lines_width: int = DEFAULT_WIDTH
    depth_optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if self.depth_optimizer not in OPTIMIZERS:
            raise ValueError(f"depth_optimizer must be one of {OPTIMIZERS}, got {self.depth_optimizer!r}")
        why = width_problem(self.vp_lines_width)
        if why is not None:
            raise ValueError(f"vp_lines_width {why}")

    def rate(self, task: str, trained: Mapping[str, Any] | None = None) -> float:
        """Inner-loop rate of ``task`` (``trained``: the checkpoint's meta section, used when ``lr`` is None)."""
        if self.lr is None:
            if self.optimizer_of(task) == "adam":
                return ADAM_LR
            meta = trained or {}
            return float(dict(meta.get("task_inner_lr") or {}).get(task, meta.get("inner_lr", DEFAULT_LR)))
        return float(self.lr[task] if isinstance(self.lr, Mapping) else self.lr)

    def optimizer_of(self, task: str) -> str:
        """The inner loop's optimizer for ``task`` (``depth_optimizer`` for depth, SGD for the others)."""
        return self.depth_optimizer if task == "depth" else "sgd"


@dataclass(frozen=True)
class ServingState:
    """One complete, immutable model state: per-task multipliers (None = identity) and head parameters
    (None = exported weights), class names of the class head, and the support embeddings (for profiles).
    ``distributions``: per adapted task of a P-AM model, the attention prior over its multipliers
    (:mod:`mtml_core.uncertainty`; empty for other models and the meta-initialisation; saved in profiles)."""

    env: str | None
    multipliers: Mapping[str, np.ndarray | None]
    heads: Mapping[str, Mapping[str, np.ndarray] | None]
    class_names: tuple[str, ...]
    version: int = 0
    signature: np.ndarray | None = None
    stats: Mapping[str, Any] = field(default_factory=dict)
    distributions: Mapping[str, MultiplierDistribution] = field(default_factory=dict)


class AdaptationEngine:
    """Serves ``backend`` and adapts it with ``model`` (the torch copy of the same weights)."""

    def __init__(self, backend: Backend, model: MultiTaskModel | None = None, profiles_dir: str | Path | None = None,
                 config: EngineConfig | None = None) -> None:
        self.backend = backend
        self.model = (model or backend.manifest.load_model()).eval()
        self.config = config or EngineConfig()
        self.tasks = tuple(backend.tasks)
        self.buffer = SupportBuffer(self.config.buffer_size, self.config.buffer_bytes)
        man = backend.manifest
        meta = load_config(man.file(MODEL_DIR)).get("meta")
        self._trained = meta if isinstance(meta, dict) else {}
        heads_spec = {t: {k: v["shape"] for k, v in man.head(t)["params"].items()} for t in self.tasks}
        self.profiles = None if profiles_dir is None else ProfileStore(
            profiles_dir, man.model_sha256, heads_spec, man.multiplier_size, self.model.embedding_size)
        n_way = self.model.cfg.n_way
        self.base_class_names = man.class_names or tuple(f"class_{i}" for i in range(n_way))
        with torch.no_grad():
            self._base_multipliers = {t: self._np(self.model.prior_multiplier(t)) for t in self.tasks}
        self._state = self._base_state(0)
        self._adapt_lock = threading.Lock()
        self._cancel = threading.Event()
        self._signatures: dict[str, tuple[str, np.ndarray | None]] = {}
        self._calibration: Calibration | None = None
        self._lines = ThreadPoolExecutor(1, "mtml-vp-lines")  # line segments beside the backend's inference

    @classmethod
    def from_export(cls, export: str | Path, backend: str = "onnxruntime", profiles_dir: str | Path | None = None,
                    config: EngineConfig | None = None, **backend_opts: Any) -> AdaptationEngine:
        """Engine over an export directory (or manifest path) with the named backend."""
        return cls(load_backend(backend, export, **backend_opts), profiles_dir=profiles_dir, config=config)

    @staticmethod
    def _np(t: torch.Tensor | None) -> np.ndarray | None:
        return None if t is None else np.ascontiguousarray(t.detach().cpu().numpy(), np.float32).reshape(-1)

    def _base_state(self, version: int) -> ServingState:
        return ServingState(None, dict(self._base_multipliers), {t: None for t in self.tasks},
                            self.base_class_names, version)

    # -- serving --------------------------------------------------------------------------------------------------
    @property
    def state(self) -> ServingState:
        """The serving state (immutable; replaced as a whole on every swap)."""
        return self._state

    def infer(self, rgb: np.ndarray, K: np.ndarray | None = None) -> Prediction:
        """Predict all outputs for one uint8 RGB frame (H, W, 3), any resolution (resized by preprocess); with the
        frame's intrinsics ``K``, VP directions refined on its line segments (see :meth:`infer_batch`)."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3:
            raise ValueError(f"infer: expected one uint8 (H, W, 3) frame, got shape {rgb.shape} (see infer_batch)")
        return self.infer_batch(rgb[None], K)[0]

    def infer_batch(self, rgb: np.ndarray, K: np.ndarray | None = None) -> list[Prediction]:
        """Predict for a batch of uint8 RGB frames (N, H, W, 3); all from the same serving state. ``K``: the
        frames' intrinsics (3, 3): VP directions refined on each frame's line segments
        (:mod:`mtml_core.vp_lines`; ``config.vp_lines_width``), found in a thread beside the backend's inference."""
        state = self._state
        x = self.backend.preprocess(rgb)
        width = self.config.vp_lines_width
        lines = None
        if K is not None and width > 0 and "vp" in self.tasks:
            lines = [self._lines.submit(segment_planes, im, K, width) for im in np.asarray(rgb)]
        out = self.backend.predict(x, state.multipliers, state.heads)
        preds = [self._prediction(out, i, state) for i in range(len(x))]
        if lines is not None:
            preds = [dataclasses.replace(p, vp_dirs=refined_vps(f.result(), p.vp_dirs))
                     for p, f in zip(preds, lines, strict=True)]
        return preds

    def _prediction(self, out: dict[str, np.ndarray], i: int, state: ServingState) -> Prediction:
        scores = None
        if "class" in out:
            logits = out["class"][i, :len(state.class_names)].astype(np.float64)
            e = np.exp(logits - logits.max())
            scores = (e / e.sum()).astype(np.float32)
        return Prediction(
            depth=out["depth"][i, 0] if "depth" in out else None,
            normals=np.ascontiguousarray(out["normals"][i].transpose(1, 2, 0)) if "normals" in out else None,
            vp_dirs=out["vp"][i] if "vp" in out else None,
            class_scores=scores, class_names=state.class_names, env=state.env, version=state.version)

    # -- support frames ---------------------------------------------------------------------------------------------
    def add_frame(self, env: str, rgb: np.ndarray, depth: np.ndarray | None = None,
                  normals: np.ndarray | None = None, K: np.ndarray | None = None, class_name: str | None = None,
                  vp_dirs: np.ndarray | None = None) -> int:
        """Validate a labelled frame and add it to ``env``'s support buffer; returns the buffer's size.

        ValueError names the problem (the frame is dropped, the buffer untouched). Normals may be omitted when
        depth and K are given (derived from depth). Depth in float metres, NaN/0 invalid.
        """
        env = check_name(env)
        frame = make_support_frame(rgb, self.backend.input_hw, self.backend.manifest.mean,
                                   self.backend.manifest.std, depth=depth, normals=normals, K=K,
                                   class_name=class_name, vp_dirs=vp_dirs, max_depth=self.config.max_depth,
                                   min_valid=self.config.min_valid, min_depth=self.config.min_depth,
                                   normals_from=self.config.normals_from)
        return self.buffer.add(env, frame)

    # -- adaptation -------------------------------------------------------------------------------------------------
    def adapt(self, env: str, steps: int | None = None, tasks: Sequence[str] | None = None) -> AdaptResult:
        """Adapt every task (of ``tasks``, default all) that has labelled frames in ``env``'s buffer and swap the
        result in; in the new state, tasks not adapted serve the attention prior and meta-learnt heads.

        ``steps``: inner-loop steps, 0..:data:`MAX_STEPS` (default ``config.steps``; ValueError outside). Rejected
        (previous state keeps serving, ``reason`` says why) on any error, when cancelled (:meth:`cancel`) or past
        ``config.adapt_timeout`` seconds, or if every task's support loss after adaptation is worse than the serving
        model's on the same frames. A task that got worse while others improved keeps serving its previous
        multipliers and head (listed in ``skipped`` and ``reason``).
        """
        env = check_name(env)
        steps = self.config.steps if steps is None else steps
        if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or not 0 <= steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer in [0, {MAX_STEPS}], got {steps!r}")
        steps = int(steps)
        tasks = list(self.tasks if tasks is None else tasks)
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"tasks {unknown} not served; tasks: {list(self.tasks)}")
        with self._adapt_lock:
            self._cancel.clear()
            t0 = time.perf_counter()
            timeout = self.config.adapt_timeout
            deadline = None if timeout is None else t0 + timeout
            old = self._state
            stats: dict[str, TaskStats] = {}
            skipped: dict[str, str] = {}

            def stop() -> bool:
                return self._cancel.is_set() or (deadline is not None and time.perf_counter() > deadline)

            def result(accepted: bool, reason: str) -> AdaptResult:
                version = self._state.version
                return AdaptResult(env, accepted, reason, stats, skipped, steps, time.perf_counter() - t0, version)

            frames = self.buffer.frames(env)
            if not frames:
                return result(False, f"no frames collected for environment {env!r}")
            try:
                with self._torch_threads():
                    new = self._adapt(env, frames, steps, tasks, old, stats, skipped, stop)
            except Exception as exc:  # serving must go on whatever went wrong; the reason goes back to the caller
                if not stop():
                    log.exception("adaptation of %s failed", env)
                    return result(False, f"adaptation failed: {type(exc).__name__}: {exc}")
            if self._cancel.is_set():
                return result(False, "adaptation cancelled; the previous model keeps serving")
            if stop():
                return result(False, f"adaptation took longer than adapt_timeout {timeout:g} s and was stopped; "
                                     f"the previous model keeps serving (ask for fewer steps or frames)")
            if not stats:
                return result(False, "no task has labelled frames: " + "; ".join(f"{t}: {r}" for t, r in
                                                                                 skipped.items()))
            worse = {t: f"{t}: support loss {s.loss_after:.4g} after adaptation vs {s.loss_before:.4g} serving"
                     for t, s in stats.items() if s.baseline == "serving"
                     and not s.loss_after <= s.loss_before * (1.0 + self.config.tolerance)}
            if len(worse) == len(stats):
                return result(False, "worse than the serving model, kept it (" + "; ".join(worse.values()) + ")")
            if worse:  # those tasks keep serving what they served: only improvements are swapped in
                new = dataclasses.replace(
                    new, multipliers={**new.multipliers, **{t: old.multipliers[t] for t in worse}},
                    heads={**new.heads, **{t: old.heads[t] for t in worse}},
                    class_names=old.class_names if "class" in worse else new.class_names,
                    distributions=keep_for(new.distributions, old.distributions, list(worse)))
                skipped.update({t: "kept the serving state, " + why for t, why in worse.items()})
            self._state = new
            return result(True, "" if not worse else "kept the serving state for " + "; ".join(worse.values()))

    def cancel(self) -> bool:
        """Stop the adaptation running now, if any, at its next inner step (it is then rejected and the previous
        model keeps serving). Returns whether one was running."""
        running = self._adapt_lock.locked()
        if running:
            self._cancel.set()
        return running

    @contextlib.contextmanager
    def _torch_threads(self) -> Iterator[None]:
        threads = torch.get_num_threads()
        if self.config.adapt_threads:
            torch.set_num_threads(self.config.adapt_threads)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def warmup(self) -> None:
        """Run inference and a one-step adaptation of every task once on a dummy frame (nothing is swapped), so
        that the first real calls do not pay torch's and the runtime's one-time start-up costs (~1 s). The
        recognition calibration is not part of it (see :meth:`recognition_calibration`)."""
        h, w = self.backend.input_hw
        self.infer(np.full((h, w, 3), 128, np.uint8))
        normals = torch.zeros(3, h, w)
        normals[2] = -1.0
        frame = SupportFrame(torch.zeros(3, h, w), "warmup", torch.full((1, h, w), 2.0), normals, torch.eye(3))
        with self._adapt_lock, self._torch_threads():
            self._adapt("warmup", [frame], 1, list(self.tasks), self._state, {}, {}, lambda: False)

    def _adapt(self, env: str, frames: list[SupportFrame], steps: int, tasks: list[str], old: ServingState,
               stats: dict[str, TaskStats], skipped: dict[str, str], stop: Callable[[], bool]) -> ServingState:
        images = torch.stack([f.image for f in frames])
        subsets: dict[tuple[int, ...], torch.Tensor] = {tuple(range(len(frames))): images}
        cache: dict[tuple[int, bytes | None], list[np.ndarray]] = {}
        cache_lock = threading.Lock()
        distributions: dict[str, MultiplierDistribution] = {}

        def feats_np(x: torch.Tensor, m: np.ndarray | torch.Tensor | None) -> list[np.ndarray]:
            m = self._np(m) if isinstance(m, torch.Tensor) else m
            key = (id(x), None if m is None else m.tobytes())
            with cache_lock:
                if key not in cache:
                    cache[key] = self.backend.features(x.numpy(), m)
                return cache[key]

        def features_fn(x: torch.Tensor, m: torch.Tensor | None) -> list[torch.Tensor]:
            # channels-last inputs make the heads' convolution backward ~1.5-3x faster on CPU (measured)
            return [torch.from_numpy(f).contiguous(memory_format=torch.channels_last) for f in feats_np(x, m)]

        def run(task: str, idx: tuple[int, ...], x: torch.Tensor) -> tuple[TaskStats, TaskAdaptation, tuple | None]:
            if self.config.adapt_threads:
                torch.set_num_threads(self.config.adapt_threads)  # per worker thread
            labels, names, old_labels = self._labels(task, [frames[i] for i in idx], old)
            if stop():
                raise TimeoutError("stopped before the task started")
            scales: list[float] = []

            def scale(head: torch.nn.Module, params: dict, hx: torch.Tensor, y: torch.Tensor) -> dict:
                params, s, _ = apply_scale(head, params, hx, y, self.config.max_depth_scale, sum(scales))
                scales.append(s)
                return params

            closed_form = scale if task == "depth" and self.config.depth_scale else None
            result = adapt_task(self.model, task, x, labels, steps, self.config.rate(task, self._trained),
                                features_fn=features_fn, use_attention=self.config.use_attention, stop=stop,
                                closed_form=closed_form, optimizer=self.config.optimizer_of(task))
            log_scale = float(sum(scales))  # the depth head's total log-depth shift (0 when not applied)
            if self.config.use_attention:  # P-AM: keep the prior the multiplier is the mean of (plain feats cached)
                dist = support_distribution(self.model, task, x, labels, features_fn)
                if dist is not None:
                    distributions[task] = dist
            after, initial = result.support_loss_after, result.support_loss_before
            extra = {"depth_log_scale": log_scale} if closed_form is not None else {}
            if old_labels is None:  # the serving class head does not know these classes: compare with the initial
                return TaskStats(len(idx), initial, after, initial, "initial", **extra), result, names
            pred = self.backend.head(task, feats_np(x, old.multipliers[task]), old.heads[task])
            before = float(task_loss(task, torch.from_numpy(pred), old_labels))
            return TaskStats(len(idx), before, after, initial, **extra), result, names

        jobs = []
        for task in sorted(tasks, key=lambda t: t not in DENSE_TASKS):  # the costly dense heads first
            idx = tuple(i for i, f in enumerate(frames) if f.label(task) is not None)
            if idx:
                jobs.append((task, idx, subsets.setdefault(idx, images[list(idx)])))
            else:
                skipped[task] = "no labelled frames"
        workers = min(self.config.adapt_workers, len(jobs))
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                done = list(pool.map(lambda job: run(*job), jobs))
        else:
            done = [run(*job) for job in jobs]
        multipliers = dict(self._base_multipliers)
        heads: dict[str, Mapping[str, np.ndarray] | None] = {t: None for t in self.tasks}
        class_names = self.base_class_names
        for (task, _, _), (task_stats, result, names) in zip(jobs, done):
            stats[task] = task_stats
            multipliers[task] = self._np(result.multiplier)
            heads[task] = {k: np.asarray(v.numpy(), np.float32, order="C") for k, v in result.params.items()}
            class_names = names or class_names
        plain = self.backend.embed(images.numpy(), None)  # what recognize() compares with
        signature = plain / np.maximum(np.linalg.norm(plain, axis=1, keepdims=True), 1e-12)
        return ServingState(env, multipliers, heads, class_names, old.version + 1, signature,
                            {t: vars(s) for t, s in stats.items()}, distributions)

    def _labels(self, task: str, frames: list[SupportFrame],
                old: ServingState) -> tuple[torch.Tensor, tuple[str, ...] | None, torch.Tensor | None]:
        """Label tensor for the inner loop, class names (class task), and the labels in the serving state's class
        indices (None if the serving class head does not cover them)."""
        if task != "class":
            labels = torch.stack([f.label(task) for f in frames])  # type: ignore[misc]
            return labels, None, labels
        names = [f.class_name for f in frames]
        if self.model.cfg.arch == "unet":  # named categories keep their rows; new ones take the free rows after them
            base = self.base_class_names
            classes = base + tuple(sorted(set(names) - set(base)))
        else:
            classes = tuple(sorted(set(names)))
        if len(classes) > self.model.cfg.n_way:
            raise ValueError(f"class: {len(classes)} class names {list(classes)} but the head has "
                             f"{self.model.cfg.n_way} outputs")
        labels = torch.tensor([classes.index(n) for n in names])
        known = all(n in old.class_names for n in names)
        old_labels = torch.tensor([old.class_names.index(n) for n in names]) if known else None
        return labels, classes, old_labels

    def reset(self) -> None:
        """Serve the unadapted model again (attention-prior multipliers, exported heads)."""
        with self._adapt_lock:
            self._state = self._base_state(self._state.version + 1)

    # -- profiles ---------------------------------------------------------------------------------------------------
    def _store(self) -> ProfileStore:
        if self.profiles is None:
            raise ValueError("no profiles directory configured (profiles_dir=None)")
        return self.profiles

    def save_profile(self, name: str | None = None) -> Path:
        """Save the serving (adapted) state as a profile named ``name`` (default: its environment)."""
        state = self._state
        if state.env is None:
            raise ValueError("nothing to save: the serving state is the meta-initialisation (adapt first)")
        dists = {t: {"mu": d.mu, "log_sigma": d.log_sigma, **({} if d.mask is None else {"mask": d.mask})}
                 for t, d in state.distributions.items()}
        profile = Profile(check_name(name or state.env), dict(state.multipliers), dict(state.heads),
                          state.class_names, state.signature, dict(state.stats), distributions=dists)
        return self._store().save(profile)

    def load_profile(self, name: str) -> None:
        """Verify and serve a saved profile (instant switch); the serving state is untouched on any error."""
        profile = self._store().load(name)
        if len(profile.class_names) > self.model.cfg.n_way:
            raise ValueError(f"profile {name!r}: {len(profile.class_names)} class names for a "
                             f"{self.model.cfg.n_way}-way head")
        with self._adapt_lock:
            multipliers = {t: profile.multipliers.get(t, self._base_multipliers[t]) for t in self.tasks}
            heads = {t: profile.heads.get(t) for t in self.tasks}
            names = profile.class_names if profile.heads.get("class") else self.base_class_names
            dists = {t: MultiplierDistribution(d["mu"], d["log_sigma"], d.get("mask"))
                     for t, d in profile.distributions.items() if t in self.tasks}
            self._state = ServingState(name, multipliers, heads, names, self._state.version + 1,
                                       profile.signature, profile.stats, dists)

    def list_profiles(self) -> list[dict[str, Any]]:
        """Summaries of the saved profiles (name, created, tasks, class names, stats; 'error' if unusable)."""
        return self._store().summaries()

    def delete_profile(self, name: str) -> None:
        """Delete a saved profile (FileNotFoundError if absent)."""
        self._store().delete(name)
        self._signatures.pop(name, None)

    # -- recognition ------------------------------------------------------------------------------------------------
    def _signature(self, name: str) -> np.ndarray | None:
        store = self._store()
        digest = store.read_meta(name).get("tensors_sha256", "")
        cached = self._signatures.get(name)
        if cached is None or cached[0] != digest:
            cached = (digest, store.load(name).signature)
            self._signatures[name] = cached
        return cached[1]

    def recognition_calibration(self) -> Calibration:
        """The model's recognition calibration: cached, else read from the profiles directory, else computed on
        renders of the built-in environments (~1.5 s once per model and directory on the dev CPU,
        :func:`mtml_core.adapt.recognition.calibrate`) and stored there. The first :meth:`recognize` calls it; a
        caller that must not stall then can call it beforehand in a worker thread."""
        if self._calibration is None:
            store = self._store()
            try:
                cal = Calibration.from_json(store.load_calibration(), store.model_sha256, self.model.embedding_size)
            except ValueError:
                log.info("calibrating recognition for this model on rendered environments")
                cal = calibrate(lambda rgb: self.backend.embed(self.backend.preprocess(rgb), None),
                                self.backend.input_hw, store.model_sha256)
                try:
                    store.save_calibration(cal.to_json())
                except OSError as exc:  # a read-only profiles directory: keep it in memory
                    log.warning("cannot store the recognition calibration: %s", exc)
            self._calibration = cal
        return self._calibration

    def recognize(self, frames: Sequence[np.ndarray], switch: bool | None = None) -> Recognition:
        """Open-set recognition of 1..:data:`MAX_RECOGNIZE_FRAMES` current uint8 RGB frames among the saved
        profiles (see :class:`Recognition` and :mod:`mtml_core.adapt.recognition`): "none of these" (``best``
        None) when no profile scores at least the calibrated threshold. ``switch`` (default ``config.auto_switch``)
        loads the recognised profile when its confidence >= ``config.switch_confidence``."""
        if not 1 <= len(frames) <= MAX_RECOGNIZE_FRAMES:
            raise ValueError(f"recognize: need 1..{MAX_RECOGNIZE_FRAMES} frames, got {len(frames)}")
        cal = self.recognition_calibration()
        x = np.concatenate([self.backend.preprocess(f) for f in frames])
        q = cal.standardised(self.backend.embed(x, None))
        scores = {}
        for name in self._store().names():
            try:
                sig = self._signature(name)
            except (ValueError, OSError) as exc:
                log.warning("recognize: skipping profile %s: %s", name, exc)
                continue
            if sig is not None and len(sig):
                scores[name] = set_score(q, cal.standardised(sig))
        if not scores:
            return Recognition(None, 0.0, float("nan"), {}, False, None, cal.threshold)
        names = sorted(scores, key=lambda n: -scores[n])
        logits = np.array([scores[n] for n in names] + [cal.threshold]) / cal.temperature
        p = np.exp(logits - logits.max())
        p /= p.sum()
        nearest = names[0]
        best = nearest if scores[nearest] >= cal.threshold else None
        confidence = float(p[0] if best is not None else p[-1])
        result = Recognition(best, confidence, scores[nearest], scores, False, nearest, cal.threshold)
        do_switch = self.config.auto_switch if switch is None else switch
        if (do_switch and best is not None and confidence >= self.config.switch_confidence
                and self._state.env != best):
            self.load_profile(best)
            result = dataclasses.replace(result, switched=True)
        return result
