"""Pseudo ground-truth surface normals of real depth maps (RGB-D sensors, stereo, LiDAR).

No real dataset here has measured normals: for real frames they are *derived* from the depth and the intrinsics,
and every report must call them pseudo ground truth. Sensor depth is noisy and quantised (Kinect v1: about 1 cm at
1 m, several cm at 3 m), so a per-pixel finite difference gives normals dominated by noise. Instead, each pixel's
normal is the least-squares plane of the back-projected points in a square neighbourhood (the eigenvector of the
smallest eigenvalue of their covariance), computed for all pixels at once from box-filtered point moments.
A neighbourhood counts only if at least `min_valid` of its pixels have depth, it holds no depth edge (two
neighbouring pixels whose depths differ by more than `max_jump` of the nearer one: an occlusion boundary, where a
plane fit would invent a surface bridging foreground and background) and it is planar: its smallest eigenvalue
holds at most `max_curvature` of the total (surface variation; a neighbourhood dominated by noise fails).
Each pixel takes the smallest of `windows` that counts, so fine structure keeps small windows and distant, noisier
surfaces get larger ones. NaN where the pixel has no depth or no window counts. Cost: about 1 s for 640×480 on
one CPU core; `mtml_core.adapt.labels.normals_from_depth` is the per-pixel version for exact (synthetic) depth.
"""

from __future__ import annotations

import cv2
import numpy as np

from mtml_core.data.geometry import backproject

PSEUDO_WINDOWS_VGA = (7, 15, 31)  # the plane-fit windows at 640 px wide; scaled to a label's width


def pseudo_normals(depth: np.ndarray, K: np.ndarray, windows: tuple[int, ...] = (7, 15, 31), min_valid: float = 0.5,
                   max_curvature: float = 0.05, max_jump: float = 0.05) -> np.ndarray:
    """Camera-frame unit normals (H, W, 3) float32 from a metric z-depth map (H, W); NaN where not computable."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if np.asarray(K).shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got shape {np.asarray(K).shape}")
    if not windows or any(w < 3 or w % 2 == 0 for w in windows):
        raise ValueError(f"windows must be odd sizes >= 3, got {windows}")
    valid = np.isfinite(depth) & (depth > 0)
    p = backproject(np.where(valid, depth, 0.0), K)
    p[~valid] = 0.0
    z = np.where(valid, depth, np.nan).astype(np.float64)
    edge = np.zeros(depth.shape, bool)  # both pixels of every jump
    with np.errstate(invalid="ignore"):
        across = np.abs(np.diff(z, axis=1)) > max_jump * np.fmin(z[:, 1:], z[:, :-1])
        down = np.abs(np.diff(z, axis=0)) > max_jump * np.fmin(z[1:], z[:-1])
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    edge[1:] |= down
    edge[:-1] |= down
    products = np.stack([p[..., i] * p[..., j] for i in range(3) for j in range(3)], -1)
    out = np.full((*depth.shape, 3), np.nan)
    todo = valid.copy()
    for w in sorted(windows):
        box = {"ddepth": -1, "ksize": (w, w), "normalize": False, "borderType": cv2.BORDER_CONSTANT}
        n = cv2.boxFilter(valid.astype(np.float64), **box)
        at = todo & (n >= min_valid * w * w) & (cv2.boxFilter(edge.astype(np.float64), **box) == 0)
        if not at.any():
            continue
        count = n[at][:, None]
        mean = np.stack([cv2.boxFilter(p[..., i], **box)[at] for i in range(3)], -1) / count
        second = np.stack([cv2.boxFilter(products[..., k], **box)[at] for k in range(9)], -1) / count
        cov = second.reshape(-1, 3, 3) - mean[:, :, None] * mean[:, None, :]
        evals, evecs = np.linalg.eigh(cov)  # ascending eigenvalues
        curvature = np.maximum(evals[:, 0], 0.0) / np.maximum(evals.sum(-1), 1e-30)
        ok = (curvature <= max_curvature) & (evals[:, 1] > 0)
        normal = evecs[:, :, 0]
        normal[np.sum(normal * p[at], -1) > 0] *= -1.0  # face the camera: n · p < 0
        idx = np.flatnonzero(at)[ok]
        out.reshape(-1, 3)[idx] = normal[ok]
        todo.reshape(-1)[idx] = False
    return out.astype(np.float32)


def pseudo_windows(width: int) -> tuple[int, ...]:
    """:data:`PSEUDO_WINDOWS_VGA` scaled from 640 px to ``width``: odd sizes >= 3, at least three of them."""
    r = width / 640.0
    ws = {max(3, int(round(w * r)) | 1) for w in PSEUDO_WINDOWS_VGA}
    odd = 3
    while len(ws) < 3:
        ws.add(odd)
        odd += 2
    return tuple(sorted(ws))
