"""Vanishing directions refined on the image's line segments: the Manhattan frame's own geometry.

The VP head regresses the frame from pooled features (a few degrees off at best); the image's straight edges say
where the vanishing points are to a fraction of a degree. A segment with end points p, q (pixels) lies on the
interpretation plane through the camera centre with unit normal l ∝ (K⁻¹p) × (K⁻¹q); a segment pointing at
direction d has l·d = 0 (Eq. L1). Starting from the head's frame R (rows: vertical, two horizontals):

- assign every segment to the direction with the smallest |l·d_k|, if below sin(τ) (Eq. L2);
- re-estimate each direction as the unit d minimising Σ wᵢ (lᵢ·d)² + λ‖(I − d_k d_kᵀ) d‖², i.e. the smallest
  eigenvector of Σ wᵢ lᵢlᵢᵀ / Σ wᵢ + λ (I − d_k d_kᵀ) (Eq. L3; w = segment length, λ keeps a direction with
  one or two segments near the head's; an estimate nearer another row than d_k is dropped: the segments of one
  pencil also pass near every other direction in their planes);
- project the three rows onto the nearest orthogonal matrix (Procrustes, Eq. L4);

for a shrinking schedule of thresholds τ. Segments come from OpenCV's LSD detector on the frame resized to
``width`` pixels. A frame with too few segments keeps the head's directions. Only the directions are refined;
their signs and order follow :func:`mtml_core.data.geometry.canonical_vps`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from mtml_core.data.geometry import canonical_vps, scale_intrinsics

THRESHOLDS_DEG = (20.0, 12.0, 8.0, 5.0, 3.0, 2.0)  # τ schedule (chosen on validation environments)
PRIOR = 1e-3  # λ of Eq. L3
MIN_LENGTH = 0.04  # shortest segment used, as a fraction of the image width (chosen on validation)
MIN_WIDTH, MAX_WIDTH = 16, 1280
DEFAULT_WIDTH = 320  # the frame is resized to this width for LSD (~15 ms per frame here; 640: ~60 ms)


def width_problem(width: int) -> str | None:
    """Why ``width`` is not a setting of the refinement (0 = off, else LSD's resize width), or None."""
    if width == 0 or MIN_WIDTH <= width <= MAX_WIDTH:
        return None
    return f"must be 0 (off) or in [{MIN_WIDTH}, {MAX_WIDTH}], got {width}"


def check_intrinsics(K: np.ndarray) -> np.ndarray:
    """K as float64 (3, 3); ValueError unless finite with positive focal lengths."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError("vp lines: K must be a finite 3x3 matrix with positive focal lengths")
    return K


def segment_planes(rgb: np.ndarray, K: np.ndarray, width: int = DEFAULT_WIDTH,
                   min_length: float = MIN_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Unit interpretation-plane normals (S, 3) of the frame's line segments (Eq. L1) and their lengths (S,) in
    pixels of the frame resized to ``width`` (no upscaling)."""
    if not MIN_WIDTH <= width <= MAX_WIDTH:
        raise ValueError(f"vp lines: width must be in [{MIN_WIDTH}, {MAX_WIDTH}], got {width}")
    rgb, K = np.asarray(rgb), check_intrinsics(K)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 8:
        raise ValueError(f"vp lines: expected a uint8 (H, W, 3) image of at least 8x8, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    if w > width:
        size = (max(8, round(h * width / w)), width)
        rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        K = scale_intrinsics(K, (h, w), size)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    found = cv2.createLineSegmentDetector().detect(gray)[0]
    if found is None:
        return np.zeros((0, 3)), np.zeros(0)
    seg = found.reshape(-1, 4).astype(np.float64)
    length = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    keep = length >= min_length * gray.shape[1]
    seg, length = seg[keep], length[keep]
    k_inv = np.linalg.inv(K)
    a = np.c_[seg[:, :2], np.ones(len(seg))] @ k_inv.T
    b = np.c_[seg[:, 2:], np.ones(len(seg))] @ k_inv.T
    planes = np.cross(a, b)
    norm = np.linalg.norm(planes, axis=1)
    ok = norm > 1e-12
    return planes[ok] / norm[ok, None], length[ok]


def refine_frame(planes: np.ndarray, weights: np.ndarray, dirs: np.ndarray,
                 thresholds_deg: Sequence[float] = THRESHOLDS_DEG, prior: float = PRIOR) -> np.ndarray:
    """The frame ``dirs`` (3, 3) refined on segments' plane normals (Eqs. L2-L4); (3, 3) orthonormal rows."""
    R = np.asarray(dirs, dtype=np.float64)
    if R.shape != (3, 3) or not np.isfinite(R).all():
        raise ValueError(f"vp lines: expected finite (3, 3) directions, got shape {R.shape}")
    u, _, vt = np.linalg.svd(R)
    R = u @ vt
    if len(planes) < 2:
        return R
    for tau in thresholds_deg:
        dist = np.abs(planes @ R.T)
        nearest = dist.argmin(1)
        inlier = dist[np.arange(len(planes)), nearest] < np.sin(np.deg2rad(tau))  # Eq. L2
        new = R.copy()
        for k in range(3):
            sel = inlier & (nearest == k)
            if sel.sum() < 2:
                continue
            w = weights[sel] / weights[sel].sum()
            scatter = (planes[sel] * w[:, None]).T @ planes[sel] + prior * (np.eye(3) - np.outer(R[k], R[k]))
            d = np.linalg.eigh(scatter)[1][:, 0]  # Eq. L3
            if np.abs(R @ d).argmax() == k:  # it stays nearest to its own row (not collapsed onto another)
                new[k] = d if d @ R[k] >= 0 else -d
        u, _, vt = np.linalg.svd(new)  # Eq. L4: the nearest orthogonal matrix
        R = u @ vt
    return R


def refined_vps(segments: tuple[np.ndarray, np.ndarray], dirs: np.ndarray) -> np.ndarray:
    """Vanishing directions (3, 3) float32 in canonical form: ``dirs`` refined on ``segments`` (the planes and
    lengths of :func:`segment_planes`)."""
    return canonical_vps(refine_frame(*segments, dirs)).astype(np.float32)


def refine_vps(rgb: np.ndarray, K: np.ndarray, dirs: np.ndarray, width: int = DEFAULT_WIDTH) -> np.ndarray:
    """Vanishing directions (3, 3) float32 of one frame, the head's ``dirs`` refined on the frame's line segments
    (intrinsics ``K`` of ``rgb``'s resolution); canonical form."""
    return refined_vps(segment_planes(rgb, K, width), dirs)
