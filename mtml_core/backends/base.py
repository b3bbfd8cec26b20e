"""The one interface every runtime backend implements (torch, onnxruntime, tensorrt).

Arrays in and out are numpy float32 on the host: images (N, 3, H, W) normalised by :mod:`mtml_core.preprocess`,
multipliers (B·C,), (1, B·C) or (N, B·C) block-major (None = identity), adapted head parameters as
name → array (torch tensors are accepted too). Backends hold no adapted state of their own: the caller passes
the multipliers and head parameters with every call, so one call always sees one consistent model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch

from mtml_core.backends.manifest import Manifest
from mtml_core.model import token_features
from mtml_core.preprocess import to_array

ArrayLike = np.ndarray | torch.Tensor
HeadParams = Mapping[str, ArrayLike]


def as_array(x: ArrayLike) -> np.ndarray:
    """Host float32 C-contiguous numpy view/copy of an array or tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32, order="C")  # (ascontiguousarray would turn a 0-d scale into 1-d)


class Backend(ABC):
    """Runs an exported model: backbone (with runtime multipliers, or a folded copy) and one graph per head."""

    name: ClassVar[str] = ""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.tasks = manifest.tasks
        self.input_hw = manifest.input_hw
        self.multiplier_size = manifest.multiplier_size
        vectors = manifest.folded_multipliers()
        self.folded = [(entry["file"], as_array(vectors[entry["key"]])) for entry in manifest.folded]
        self._param_cache: dict[str, tuple[HeadParams, dict[str, np.ndarray]]] = {}

    # -- what each backend implements ---------------------------------------------------------------------------
    @abstractmethod
    def _backbone(self, images: np.ndarray, multipliers: np.ndarray) -> list[np.ndarray]:
        """Backbone graph outputs for images (N, 3, H, W) and multipliers (M, B·C), M in {1, N}."""

    @abstractmethod
    def _folded_backbone(self, index: int, images: np.ndarray) -> list[np.ndarray]:
        """Outputs of the ``index``-th folded backbone."""

    @abstractmethod
    def _head(self, task: str, feats: list[np.ndarray], params: dict[str, np.ndarray] | None) -> np.ndarray:
        """Head output; ``params`` None means the exported (meta-initial) weights."""

    # -- shared logic ---------------------------------------------------------------------------------------------
    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB (H, W, 3) or (N, H, W, 3) → normalised (N, 3, H, W) at the model's input size."""
        return to_array(rgb, self.input_hw, self.manifest.mean, self.manifest.std)

    def check_images(self, images: ArrayLike) -> np.ndarray:
        """Images as float32 (N, 3, H, W) at the model's size, or ValueError naming what is wrong."""
        if isinstance(images, np.ndarray) and images.dtype == np.uint8:
            raise ValueError("images: got uint8; pass normalised float32 (N, 3, H, W) (see Backend.preprocess)")
        arr = as_array(images)
        if arr.ndim != 4 or arr.shape[1] != 3 or tuple(arr.shape[2:]) != self.input_hw or arr.shape[0] < 1:
            raise ValueError(f"images: expected (N>=1, 3, {self.input_hw[0]}, {self.input_hw[1]}), "
                             f"got {tuple(arr.shape)}")
        return arr

    def check_multipliers(self, multipliers: ArrayLike | None, n: int) -> np.ndarray:
        """Multipliers as (1, B·C) or (N, B·C) float32 (None → ones), or ValueError."""
        if multipliers is None:
            return np.ones((1, self.multiplier_size), np.float32)
        m = as_array(multipliers)
        if m.ndim == 1:
            m = m[None]
        if m.ndim != 2 or m.shape[1] != self.multiplier_size or m.shape[0] not in (1, n):
            raise ValueError(f"multipliers: expected ({self.multiplier_size},), (1, {self.multiplier_size}) or "
                             f"({n}, {self.multiplier_size}), got {tuple(m.shape)}")
        if not np.isfinite(m).all():
            raise ValueError("multipliers: contain NaN or inf")
        return m

    def check_head_params(self, task: str, params: HeadParams | None) -> dict[str, np.ndarray] | None:
        """Adapted head parameters as float32 arrays with the exported names and shapes (cached per object)."""
        if params is None:
            return None
        cached = self._param_cache.get(task)
        if cached is not None and cached[0] is params:
            return cached[1]
        spec = self.manifest.head(task)["params"]
        if set(params) != set(spec):
            raise ValueError(f"head {task!r}: parameters {sorted(params)} do not match the exported "
                             f"{sorted(spec)}")
        arrays = {}
        for name, value in params.items():
            arr = as_array(value)
            if list(arr.shape) != spec[name]["shape"]:
                raise ValueError(f"head {task!r}: parameter {name} has shape {list(arr.shape)}, exported "
                                 f"{spec[name]['shape']}")
            arrays[name] = arr
        self._param_cache[task] = (params, arrays)
        return arrays

    def _folded_index(self, m: np.ndarray) -> int | None:
        if m.shape[0] != 1:
            return None
        for i, (_, vec) in enumerate(self.folded):
            if np.array_equal(vec, m[0]):
                return i
        return None

    def features(self, images: ArrayLike, multipliers: ArrayLike | None = None) -> list[np.ndarray]:
        """Backbone outputs (the per-block features the heads read; the last block last). A multiplier equal to a
        folded vector runs the folded backbone."""
        x = self.check_images(images)
        m = self.check_multipliers(multipliers, x.shape[0])
        index = self._folded_index(m)
        return self._backbone(x, m) if index is None else self._folded_backbone(index, x)

    def embed(self, images: ArrayLike, multipliers: ArrayLike | None = None) -> np.ndarray:
        """x (N, D), as :func:`mtml_core.model.token_features` computes it for the exported model's preset."""
        feats = [torch.from_numpy(f) for f in self.features(images, multipliers)]
        return token_features(feats, self.manifest.doc["model"].get("arch", "paper")).numpy()

    def head(self, task: str, feats: Sequence[np.ndarray], params: HeadParams | None = None) -> np.ndarray:
        """One head on backbone features (``params``: adapted weights, None = exported)."""
        if task not in self.tasks:
            raise ValueError(f"task {task!r} not exported; tasks: {list(self.tasks)}")
        return self._head(task, list(feats), self.check_head_params(task, params))

    def predict(self, images: ArrayLike, multipliers: Mapping[str, ArrayLike | None] | None = None,
                heads: Mapping[str, HeadParams | None] | None = None,
                tasks: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Outputs of ``tasks`` (default all): class logits (N, n_way), depth (N, 1, H, W) metres, normals
        (N, 3, H, W), vp (N, 3, 3). ``multipliers[task]`` / ``heads[task]``: that task's runtime multiplier and
        adapted head parameters (missing or None: identity / exported weights).

        Tasks sharing a multiplier share one backbone pass; several distinct multipliers run as one stacked
        batch (images repeated, one multiplier row per image): one call instead of up to four. On the 2-core CPU
        it is on a par with separate calls (bench/inference.py: 2.41 vs 2.44 ms p50); it saves per-call overhead
        where that dominates (GPU engines at batch 1; not measured here).
        """
        x = self.check_images(images)
        n = x.shape[0]
        tasks = list(self.tasks if tasks is None else tasks)
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"tasks {unknown} not exported; tasks: {list(self.tasks)}")
        multipliers, heads = multipliers or {}, heads or {}
        groups: list[tuple[np.ndarray, list[str]]] = []
        for task in tasks:
            m = self.check_multipliers(multipliers.get(task), n)
            for vec, members in groups:
                if vec is m or (vec.shape == m.shape and np.array_equal(vec, m)):
                    members.append(task)
                    break
            else:
                groups.append((m, [task]))
        feats_of: dict[str, list[np.ndarray]] = {}
        stacked = []
        for m, members in groups:
            index = self._folded_index(m)
            if index is not None:
                feats = self._folded_backbone(index, x)
                feats_of.update({t: feats for t in members})
            else:
                stacked.append((m, members))
        if len(stacked) == 1:
            m, members = stacked[0]
            feats = self._backbone(x, m)
            feats_of.update({t: feats for t in members})
        elif stacked:
            rows = np.concatenate([np.broadcast_to(m, (n, self.multiplier_size)) for m, _ in stacked])
            feats = self._backbone(np.concatenate([x] * len(stacked)), np.ascontiguousarray(rows))
            for g, (_, members) in enumerate(stacked):
                part = [f[g * n:(g + 1) * n] for f in feats]
                feats_of.update({t: part for t in members})
        return {t: self._head(t, feats_of[t], self.check_head_params(t, heads.get(t))) for t in tasks}
