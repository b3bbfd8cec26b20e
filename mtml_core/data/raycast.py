"""Vectorised ray casting against a container (axis-aligned box seen from inside) and solid boxes.

Rays are r(t) = o + t d with d = R [(u - cx)/fx, (v - cy)/fy, 1], so the ray parameter t of a hit
IS the z-depth. Face ids: container faces 0..5 (axis*2 + side, side 1 = the upper bound),
box i faces 6 + 6 i + axis*2 + side; -1 = no hit (sky).
"""

from __future__ import annotations

import numpy as np

# the 12 edges of a box as corner-index pairs; corner index bits = (x, y, z) upper/lower.
_EDGES = np.array([(a, a | b) for b in (1, 2, 4) for a in range(8) if not a & b])
_CORNERS = np.array([[(i >> k) & 1 for k in range(3)] for i in range(8)])
NEAR = 1e-3


def ray_dirs(K: np.ndarray, R: np.ndarray, size: tuple[int, int]) -> list[np.ndarray]:
    """World ray directions (3 arrays of shape (H, W), float32) with unit camera z component."""
    h, w = size
    K = np.asarray(K, np.float64)
    xc = ((np.arange(w) - K[0, 2]) / K[0, 0]).astype(np.float32)[None, :]
    yc = ((np.arange(h) - K[1, 2]) / K[1, 1]).astype(np.float32)[:, None]
    R = np.asarray(R, np.float32)
    return [R[k, 0] * xc + (R[k, 1] * yc + R[k, 2]) for k in range(3)]


def _screen_boxes(boxes: np.ndarray, o: np.ndarray, R: np.ndarray, K: np.ndarray,
                  size: tuple[int, int]) -> np.ndarray:
    """Pixel bounding rectangles (n, 4: r0, r1, c0, c1) of boxes clipped to the near plane; empty if r0 >= r1."""
    n = len(boxes)
    corners = boxes[:, 0, None, :] + _CORNERS[None] * (boxes[:, 1, None, :] - boxes[:, 0, None, :])
    cam = (corners - o) @ R  # (n, 8, 3) camera frame
    a, b = cam[:, _EDGES[:, 0]], cam[:, _EDGES[:, 1]]
    za, zb = a[..., 2], b[..., 2]
    cross = (za - NEAR) * (zb - NEAR) < 0
    s = np.where(cross, (NEAR - za) / np.where(cross, zb - za, 1.0), 0.0)
    pts = np.concatenate([cam, a + s[..., None] * (b - a)], 1)  # (n, 20, 3)
    valid = np.concatenate([cam[..., 2] >= NEAR, cross], 1)
    z = np.where(valid, pts[..., 2], 1.0)
    u = K[0, 0] * pts[..., 0] / z + K[0, 2]
    v = K[1, 1] * pts[..., 1] / z + K[1, 2]
    h, w = size
    out = np.zeros((n, 4), np.int64)
    any_valid = valid.any(1)
    big = 1e9
    out[:, 0] = np.clip(np.floor(np.where(valid, v, big).min(1)) - 1, 0, h)
    out[:, 1] = np.clip(np.ceil(np.where(valid, v, -big).max(1)) + 2, 0, h)
    out[:, 2] = np.clip(np.floor(np.where(valid, u, big).min(1)) - 1, 0, w)
    out[:, 3] = np.clip(np.ceil(np.where(valid, u, -big).max(1)) + 2, 0, w)
    out[~any_valid] = 0
    return out


def cast(d: list[np.ndarray], o: np.ndarray, lo: np.ndarray, hi: np.ndarray, boxes: np.ndarray,
         R: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit per pixel: (t float32 (H, W), inf where none; face id int32 (H, W), -1 where none)."""
    size = d[0].shape
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = [np.float32(1.0) / dk for dk in d]
        # container seen from inside: per axis the exit distance is the larger of the two plane
        # distances (d_k == 0 gives +inf); the nearest axis wins. Infinite bounds never hit.
        t = np.full(size, np.inf, np.float32)
        face = np.full(size, -1, np.int32)
        for k in range(3):
            if not (np.isfinite(lo[k]) or np.isfinite(hi[k])):
                continue
            tk = np.maximum(np.float32(hi[k] - o[k]) * inv[k], np.float32(lo[k] - o[k]) * inv[k])
            nearer = tk < t
            np.copyto(face, (d[k] > 0).astype(np.int32) + 2 * k, where=nearer)
            np.minimum(t, tk, out=t)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            face[~np.isfinite(t)] = -1
        rects = _screen_boxes(boxes, o, R, K, size) if len(boxes) else np.zeros((0, 4), np.int64)
        eps = np.float32(1e-5)
        for i, (r0, r1, c0, c1) in enumerate(rects):
            if r0 >= r1 or c0 >= c1:
                continue
            reg = (slice(r0, r1), slice(c0, c1))
            blo, bhi = boxes[i]
            tn, fn = None, None
            for k in range(3):
                if o[k] < blo[k]:
                    plane, sd = blo[k], 0
                elif o[k] > bhi[k]:
                    plane, sd = bhi[k], 1
                else:
                    continue
                tk = np.float32(plane - o[k]) * inv[k][reg]
                fk = 6 + 6 * i + 2 * k + sd
                if tn is None:
                    tn, fn = tk, fk
                else:
                    better = tk > tn
                    fn = np.where(better, fk, fn)
                    tn = np.where(better, tk, tn)
            hit = (tn > 0) & (tn < t[reg])
            for k in range(3):
                pk = np.float32(o[k]) + tn * d[k][reg]
                hit &= (pk >= np.float32(blo[k]) - eps) & (pk <= np.float32(bhi[k]) + eps)
            np.copyto(t[reg], tn, where=hit)
            np.copyto(face[reg], fn, where=hit)
    return t, face


def face_normals(n_boxes: int) -> np.ndarray:
    """World normals (6 + 6 n, 3) of every face id: container faces point inward, box faces outward."""
    base = np.zeros((6, 3))
    for k in range(3):
        base[2 * k, k], base[2 * k + 1, k] = -1.0, 1.0
    return np.concatenate([-base, np.tile(base, (n_boxes, 1))])


def face_axes(n_boxes: int) -> np.ndarray:
    """Axis (0, 1, 2) of every face id."""
    return np.tile(np.repeat(np.arange(3), 2), n_boxes + 1)
