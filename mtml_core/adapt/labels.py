"""Validation of labelled frames handed to the online engine, and the one depth → normals derivation.

Every check raises ValueError naming the field and the problem, so a bad frame is rejected on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mtml_core import preprocess
from mtml_core.data.geometry import backproject, canonical_vps
from mtml_core.data.pseudo_normals import pseudo_normals, pseudo_windows
from mtml_core.data.sample import Frame

UNIT_TOLERANCE = 1e-2  # |‖n‖ - 1| allowed for given unit vectors (normals, VP directions)
MAX_CLASS_NAME = 64
MIN_DEPTH = 0.01  # metres: a depth pixel nearer than this is invalid (no sensor measures it; 1e-42 is garbage)
ORTHO_TOLERANCE_DEG = 10.0  # VP directions: each pair within this many degrees of perpendicular
NORMALS_METHODS = ("pseudo", "difference")  # how normals are derived from a depth label (make_support_frame)
def label_normals(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pseudo ground-truth normals (H, W, 3) of a sensor depth label (H, W) at its own resolution, K for that
    resolution: :func:`mtml_core.data.pseudo_normals.pseudo_normals` (windowed plane fits, robust to sensor noise
    and quantisation) with its windows scaled to the label's width (:func:`pseudo_windows`); NaN where no plane
    fits. Pixels where the fit fails but the per-pixel difference of :func:`normals_from_depth` is defined stay
    NaN: an unsure label is better absent."""
    return pseudo_normals(depth, K, windows=pseudo_windows(depth.shape[1]))


def normals_from_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame unit normals (H, W, 3) of a z-depth map (H, W) with intrinsics K; NaN where undefined.

    Points are back-projected; at each pixel the tangent along u and along v is the one-sided difference
    (forward or backward) with the smaller depth change, which keeps depth edges from mixing two surfaces. The
    normal is their cross product, oriented towards the camera (n · p < 0).
    """
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float64)
    p = backproject(depth, K)
    pad = np.full_like(p, np.nan)

    def tangent(axis: int) -> np.ndarray:
        fwd, bwd = pad.copy(), pad.copy()
        if axis == 1:
            fwd[:, :-1], bwd[:, 1:] = p[:, 1:] - p[:, :-1], p[:, 1:] - p[:, :-1]
        else:
            fwd[:-1], bwd[1:] = p[1:] - p[:-1], p[1:] - p[:-1]
        dz_f = np.where(np.isfinite(fwd[..., 2]), np.abs(fwd[..., 2]), np.inf)
        dz_b = np.where(np.isfinite(bwd[..., 2]), np.abs(bwd[..., 2]), np.inf)
        return np.where((dz_f <= dz_b)[..., None], fwd, bwd)

    n = np.cross(tangent(1), tangent(0))
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = n / norm
    n = np.where((np.sum(n * p, axis=-1, keepdims=True) > 0), -n, n)
    n[~(np.isfinite(n).all(-1) & (norm[..., 0] > 0))] = np.nan
    return n.astype(np.float32)


def _float_map(name: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(value).__name__}")
    if not np.issubdtype(value.dtype, np.floating):
        hint = " (convert millimetres to float metres first)" if name == "depth" else ""
        raise ValueError(f"{name}: expected float values, got dtype {value.dtype}{hint}")
    if value.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} (matching the image), got {value.shape}")
    with np.errstate(over="ignore"):
        v = value.astype(np.float32)
    if np.isinf(v).any():
        raise ValueError(f"{name}: contains inf or values beyond float32's range (mark invalid pixels with NaN)")
    return v


def check_depth(depth: np.ndarray, hw: tuple[int, int], max_depth: float, min_valid: float,
                min_depth: float = MIN_DEPTH) -> np.ndarray:
    """Depth in metres (H, W): no inf, no negatives; NaN, 0 and values outside [min_depth, max_depth] become invalid
    (NaN). Rejected when fewer than ``min_valid`` of the pixels stay valid (the reason says how many were too near or
    too far)."""
    d = _float_map("depth", depth, hw)
    if (d < 0).any():
        raise ValueError(f"depth: {int((d < 0).sum())} negative values (min {float(np.nanmin(d)):.3g} m)")
    measured = np.isfinite(d) & (d > 0)
    near, far = measured & (d < min_depth), measured & (d > max_depth)
    valid = measured & ~near & ~far
    if valid.mean() < min_valid:
        why = []
        if near.any():
            why.append(f"{100 * near.mean():.1f}% nearer than min_depth {min_depth:g} m (max "
                       f"{float(d[near].max()):.3g} m: metres expected)")
        if far.any():
            why.append(f"{100 * far.mean():.1f}% beyond max_depth {max_depth:g} m (min {float(d[far].min()):.4g} m: "
                       f"millimetres?)")
        raise ValueError(f"depth: no plausible depth, only {100 * valid.mean():.1f}% valid pixels in "
                         f"[{min_depth:g}, {max_depth:g}] m (need {100 * min_valid:.1f}%)"
                         + (": " + "; ".join(why) if why else ""))
    return np.where(valid, d, np.float32(np.nan))


def check_normals(normals: np.ndarray, hw: tuple[int, int], min_valid: float) -> np.ndarray:
    """Normals (H, W, 3): unit vectors (NaN invalid), no inf."""
    n = _float_map("normals", normals, (*hw, 3))
    valid = np.isfinite(n).all(-1)
    if valid.mean() < min_valid:
        raise ValueError(f"normals: only {100 * valid.mean():.1f}% valid pixels (need {100 * min_valid:.1f}%)")
    err = np.abs(np.linalg.norm(n[valid], axis=-1) - 1.0)
    if err.max() > UNIT_TOLERANCE:
        raise ValueError(f"normals: {int((err > UNIT_TOLERANCE).sum())} valid pixels are not unit vectors "
                         f"(worst | |n| - 1 | = {err.max():.3g})")
    n[~valid] = np.nan
    return n


def check_intrinsics(K: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """K (3, 3): finite, positive focal lengths, principal point inside the image, last row (0, 0, 1)."""
    k = _float_map("K", np.asarray(K) if isinstance(K, list) else K, (3, 3))
    if not np.isfinite(k).all():
        raise ValueError("K: contains NaN")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError(f"K: focal lengths must be > 0, got fx={k[0, 0]:g}, fy={k[1, 1]:g}")
    if not np.allclose(k[2], [0, 0, 1]) or k[1, 0] != 0:
        raise ValueError(f"K: expected an upper-triangular pinhole matrix with last row (0, 0, 1), got {k.tolist()}")
    h, w = hw
    if not (-0.5 <= k[0, 2] <= w - 0.5 and -0.5 <= k[1, 2] <= h - 0.5):
        raise ValueError(f"K: principal point ({k[0, 2]:g}, {k[1, 2]:g}) lies outside the {w}x{h} image "
                         f"(K of another resolution?)")
    return k


def check_vp(vp_dirs: np.ndarray) -> np.ndarray:
    """VP directions (3, 3), row 0 vertical: unit rows, pairwise within :data:`ORTHO_TOLERANCE_DEG` of
    perpendicular, returned in canonical form. Rows 1-2 may both be NaN (only the vertical known, as in York Urban);
    the vertical is always required."""
    v = _float_map("vp_dirs", vp_dirs, (3, 3))
    rows = np.isfinite(v).all(-1)
    if np.isnan(v).any() and (not rows[0] or rows[1] != rows[2] or np.isfinite(v[~rows]).any()):
        raise ValueError("vp_dirs: contain NaN; give all three directions, or the vertical (row 0) alone with rows "
                         "1 and 2 all NaN")
    known = v[rows]
    err = np.abs(np.linalg.norm(known, axis=-1) - 1.0)
    if err.max() > UNIT_TOLERANCE:
        raise ValueError(f"vp_dirs: rows must be unit vectors (worst | |d| - 1 | = {err.max():.3g})")
    if len(known) > 1:
        cos = np.abs(known @ known.T)[np.triu_indices(len(known), 1)].max()
        if cos > np.sin(np.radians(ORTHO_TOLERANCE_DEG)):
            angle = float(np.degrees(np.arccos(min(cos, 1.0))))
            raise ValueError(f"vp_dirs: Manhattan directions must be near-orthogonal (within "
                             f"{ORTHO_TOLERANCE_DEG:g} deg of 90 deg), two are {angle:.1f} deg apart")
    return canonical_vps(v).astype(np.float32)


def check_class_name(name: object) -> str:
    """A class name, stripped: a str of 1-64 printable characters (no control characters, no lone surrogates)."""
    if not isinstance(name, str):
        raise ValueError(f"class_name: expected a string, got {type(name).__name__}")
    name = name.strip()
    if not name or len(name) > MAX_CLASS_NAME or not name.isprintable():
        raise ValueError(f"class_name: {name!r} must be 1..{MAX_CLASS_NAME} printable characters")
    return name


@dataclass(frozen=True)
class SupportFrame:
    """A validated frame at the network's input size: normalised image and whatever labels it has."""

    image: torch.Tensor  # (3, H, W)
    class_name: str | None = None
    depth: torch.Tensor | None = None  # (1, H, W) metres, NaN invalid
    normals: torch.Tensor | None = None  # (3, H, W), NaN invalid
    vp: torch.Tensor | None = None  # (3, 3) canonical

    def label(self, task: str) -> torch.Tensor | str | None:
        """This frame's label for ``task`` (None if it has none)."""
        return {"class": self.class_name, "depth": self.depth, "normals": self.normals, "vp": self.vp}[task]


def make_support_frame(rgb: np.ndarray, size: Sequence[int], mean: Sequence[float], std: Sequence[float], *,
                       depth: np.ndarray | None = None, normals: np.ndarray | None = None,
                       K: np.ndarray | None = None, class_name: str | None = None,
                       vp_dirs: np.ndarray | None = None, max_depth: float = 100.0,
                       min_valid: float = 0.01, min_depth: float = MIN_DEPTH,
                       normals_from: str = "pseudo") -> SupportFrame:
    """Validate a raw frame (any resolution) and convert it; ValueError names the first problem.

    Normals missing but depth and K given: derived from the depth, per ``normals_from``: ``"pseudo"`` (default,
    for sensor depth) fits planes with :func:`label_normals` to the depth label resized to the network's input
    ``size`` (nearest neighbour, K scaled with it: ~0.05 s instead of ~1 s at 640x480); ``"difference"`` uses
    :func:`normals_from_depth` at the frame's resolution (exact for noise-free, e.g. rendered, depth).
    """
    if normals_from not in NORMALS_METHODS:
        raise ValueError(f"normals_from must be one of {NORMALS_METHODS}, got {normals_from!r}")
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb: expected uint8 (H, W, 3), got "
                         f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}")
    hw = rgb.shape[:2]
    if min(hw) < 8:
        raise ValueError(f"rgb: image {hw} is too small")
    d = None if depth is None else check_depth(depth, hw, max_depth, min_valid, min_depth)
    n = None if normals is None else check_normals(normals, hw, min_valid)
    k = None if K is None else check_intrinsics(K, hw)
    derive = n is None and d is not None and k is not None
    if derive and normals_from == "difference":
        n = normals_from_depth(d, k)
    v = None if vp_dirs is None else check_vp(vp_dirs)
    c = None if class_name is None else check_class_name(class_name)
    frame = preprocess.resize_frame(Frame(rgb=rgb, depth=d, normals=n, vp_dirs=v, K=k), size)
    if derive and normals_from == "pseudo":
        n = label_normals(frame.depth, frame.K)
        if not np.isfinite(n).all(-1).any():
            n = None  # no plane fits anywhere (e.g. a tiny label): the frame keeps its depth, without normals
        frame = frame.with_(normals=n)
    image = preprocess.frames_to_tensor([frame], None, mean, std)[0]
    return SupportFrame(
        image=image, class_name=c,
        depth=None if d is None else preprocess.frame_labels("depth", [frame])[0],
        normals=None if n is None else preprocess.frame_labels("normals", [frame])[0],
        vp=None if v is None else preprocess.frame_labels("vp", [frame])[0])
