"""What the online engine returns: per-frame predictions, adaptation reports, recognition results."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mtml_core.data.geometry import project


@dataclass(frozen=True)
class Prediction:
    """All four outputs for one frame, at the network's input resolution.

    depth (H, W) metres; normals (H, W, 3) camera-frame unit vectors; vp_dirs (3, 3) unit rows (vertical first);
    class_scores (K,) probabilities over ``class_names``. A task the model lacks gives None.
    """

    depth: np.ndarray | None
    normals: np.ndarray | None
    vp_dirs: np.ndarray | None
    class_scores: np.ndarray | None
    class_names: tuple[str, ...]
    env: str | None  # environment of the serving state that produced it (None: meta-initialisation)
    version: int  # serving-state version (changes on every swap)

    @property
    def class_id(self) -> int | None:
        """Index of the most likely class."""
        return None if self.class_scores is None else int(np.argmax(self.class_scores))

    @property
    def class_name(self) -> str | None:
        """Name of the most likely class."""
        i = self.class_id
        return None if i is None else self.class_names[i]

    @property
    def class_confidence(self) -> float | None:
        """Probability of the most likely class."""
        return None if self.class_scores is None else float(np.max(self.class_scores))

    def vp_pixels(self, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel positions (3, 2) of the vanishing points for a camera with intrinsics K (any resolution), and
        which are at infinity (3,) (their pixels are NaN)."""
        if self.vp_dirs is None:
            raise ValueError("this model has no vp head")
        uv, inf = project(np.asarray(K, np.float64), self.vp_dirs, eps=1e-6)
        return uv.astype(np.float32), inf


@dataclass(frozen=True)
class TaskStats:
    """Support losses of one task (always finite numbers; never inf).

    ``loss_before``: the serving model's loss on the support frames (``baseline`` "serving"); for the class task
    when the serving class head does not know the support's class names no such loss exists, and it is the
    meta-initialisation's loss on them instead (``baseline`` "initial", equal to ``loss_initial``): any adaptation
    then counts as an improvement. ``loss_after``: the adapted model's. ``loss_initial``: the meta-initialisation's
    with the new attention multiplier, before the inner loop. ``depth_log_scale`` (depth, when the engine's
    closed-form scale term ran): the log-depth shift it folded into the head, before and after the inner loop
    together (e^s is the factor; None for other tasks)."""

    shots: int
    loss_before: float
    loss_after: float
    loss_initial: float
    baseline: str = "serving"
    depth_log_scale: float | None = None


@dataclass(frozen=True)
class AdaptResult:
    """Outcome of :meth:`AdaptationEngine.adapt`: swapped in or not (and why), per-task stats, time."""

    env: str
    accepted: bool
    reason: str
    tasks: dict[str, TaskStats]
    skipped: dict[str, str]
    steps: int
    seconds: float
    version: int


@dataclass(frozen=True)
class Recognition:
    """Open-set recognition of the current frames among the saved profiles (see :mod:`mtml_core.adapt.recognition`).

    ``scores``: per profile, the calibrated similarity of the frames to its support frames. ``nearest``: the
    best-scoring profile (None when none is saved). ``best``: the recognised profile, None for "none of these"
    (``similarity`` below the calibrated ``threshold``). ``confidence``: the probability of ``best`` (of "none of
    these" when ``best`` is None) under a softmax over the profiles' scores plus one "none of these" entry scored at
    the threshold, so one profile scored at the threshold gets 0.5, never 1.0 by default. ``switched``: the engine
    loaded ``best``."""

    best: str | None
    confidence: float
    similarity: float
    scores: dict[str, float] = field(default_factory=dict)
    switched: bool = False
    nearest: str | None = None
    threshold: float = float("nan")
