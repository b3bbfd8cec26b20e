"""Camera geometry shared by the world, the loaders and the metrics: VP canonical form, K, poses."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

ArrayT = TypeVar("ArrayT")


def canonical_vps(dirs: ArrayT) -> ArrayT:
    """Canonical Manhattan directions, `(..., 3, 3)` numpy array or torch tensor (row 0 vertical).

    Rows are normalised; the vertical gets y <= 0 (points up); each horizontal gets z >= 0
    (z == 0: x >= 0); the horizontals are ordered larger z first. NaN rows stay NaN.
    """
    if isinstance(dirs, np.ndarray) or not hasattr(dirs, "detach"):
        xp, d = np, np.asarray(dirs)
        d = d if np.issubdtype(d.dtype, np.floating) else d.astype(np.float64)
    else:
        import torch as xp

        d = dirs
    if d.shape[-2:] != (3, 3):
        raise ValueError(f"canonical_vps expects (..., 3, 3) directions, got {tuple(d.shape)}")
    norm = (d * d).sum(-1, keepdims=True) ** 0.5
    d = d / xp.where(norm > 0, norm, xp.ones_like(norm))
    vert = d[..., 0:1, :]
    vert = xp.where(vert[..., 1:2] > 0, -vert, vert)
    hor = d[..., 1:3, :]
    z, x = hor[..., 2:3], hor[..., 0:1]
    flip = (z < 0) | ((z == 0) & (x < 0))
    hor = xp.where(flip, -hor, hor)
    swap = (hor[..., 1:2, 2:3] > hor[..., 0:1, 2:3])
    first = xp.where(swap, hor[..., 1:2, :], hor[..., 0:1, :])
    second = xp.where(swap, hor[..., 0:1, :], hor[..., 1:2, :])
    return xp.concatenate([vert, first, second], -2) if xp is np else xp.cat([vert, first, second], -2)


def intrinsics(hfov_deg: float, size: tuple[int, int]) -> np.ndarray:
    """Pinhole K (square pixels, principal point at the image centre) for a horizontal FOV and (H, W)."""
    h, w = size
    f = 0.5 * w / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], np.float32)


def scale_intrinsics(K: np.ndarray, old: tuple[int, int], new: tuple[int, int]) -> np.ndarray:
    """K after resizing an image from (H, W) `old` to `new` (pixel-centre convention)."""
    sy, sx = new[0] / old[0], new[1] / old[1]
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], np.float64)
    return (S @ np.asarray(K, np.float64)).astype(np.float32)


def camera_rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Camera-to-world rotation for a world with z up; yaw about z (0: looking along +y),
    pitch > 0 looks up, roll about the optical axis. Camera axes are OpenCV (x right, y down, z fwd)."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    base = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float64)  # columns: cam x, y, z in world
    rz = np.array([[np.cos(y), np.sin(y), 0], [-np.sin(y), np.cos(y), 0], [0, 0, 1]])
    rp = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])  # about cam x
    rr = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])  # about cam z
    return rz @ base @ rp @ rr


def project(K: np.ndarray, dirs: np.ndarray, eps: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (n, 2) of camera-frame directions/points (n, 3) and an at-infinity mask (|z| <= eps)."""
    dirs = np.asarray(dirs, np.float64)
    inf = np.abs(dirs[:, 2]) <= eps
    z = np.where(inf, 1.0, dirs[:, 2])
    uv = (np.asarray(K, np.float64) @ (dirs / z[:, None]).T).T[:, :2]
    uv[inf] = np.nan
    return uv, inf


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (H, W, 3) from a z-depth map (H, W) and K (NaN depth gives NaN points)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    Ki = np.linalg.inv(np.asarray(K, np.float64))
    rays = np.stack([u, v, np.ones_like(u)], -1) @ Ki.T
    return rays * np.asarray(depth, np.float64)[..., None]


def vps_from_rotation(R_cw: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical VP directions (world z, x, y axes seen from the camera), their pixels and at-infinity mask."""
    R = np.asarray(R_cw, np.float64)
    dirs = canonical_vps(np.stack([R[2], R[0], R[1]]))  # rows of R are world axes in the camera frame
    uv, inf = project(K, dirs, eps=1e-6)
    return dirs.astype(np.float32), uv.astype(np.float32), inf
