"""York Urban DB vanishing-point ground truth in the `gt_data.yml` form (OpenCV YAML):
`horizon_lines` (N, 3): a, b, c with a x + b y + c = 0 in pixels, and `zeniths` (N, 2): the
vertical vanishing point in pixels. Row k belongs to image `kkk.jpg` (000.jpg is row 0).

The vertical direction is K^-1 [zenith, 1] (or, without a zenith, the horizon line's normal
K^T l: the horizon is the image of the plane orthogonal to the vertical). The two horizontal
Manhattan directions are not determined by a horizon line alone, so rows 1 and 2 of `vp_dirs`
are NaN (unknown) and `vp_pixels` is NaN there.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mtml_core.data.geometry import canonical_vps, project
from mtml_core.data.loaders.common import FrameList, pinhole, read_rgb, require
from mtml_core.data.sample import Frame

# York Urban camera (published calibration, 640x480).
YORK_URBAN_K = pinhole(674.918, 674.918, 307.551, 251.454)


def read_yorkurban_gt(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(horizon_lines (N, 3), zeniths (N, 2)) from gt_data.yml."""
    path = require(path, "York Urban gt_data.yml")
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        ok = fs.isOpened()
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot parse OpenCV YAML: {path}")
    horizons, zeniths = fs.getNode("horizon_lines").mat(), fs.getNode("zeniths").mat()
    fs.release()
    if horizons is None or zeniths is None or horizons.ndim != 2 or horizons.shape[1] != 3 \
            or zeniths.shape != (len(horizons), 2):
        raise ValueError(f"gt_data.yml needs horizon_lines (N, 3) and zeniths (N, 2) matrices: {path}")
    return horizons.astype(np.float64), zeniths.astype(np.float64)


def vertical_direction(zenith: np.ndarray, horizon: np.ndarray, K: np.ndarray) -> np.ndarray | None:
    """Unit camera-frame vertical (pointing up, y <= 0) from the zenith pixel, else from the horizon."""
    K = np.asarray(K, np.float64)
    if np.all(np.isfinite(zenith)):
        d = np.linalg.solve(K, np.r_[zenith, 1.0])
    elif np.all(np.isfinite(horizon)) and np.linalg.norm(horizon[:2]) > 0:
        d = K.T @ horizon
    else:
        return None
    d /= np.linalg.norm(d)
    return -d if d[1] > 0 else d


def yorkurban_frames(root: str | Path, K: np.ndarray = YORK_URBAN_K) -> FrameList:
    """Frames (rgb, K, vertical VP) of a York Urban folder with gt_data.yml and NNN.jpg images."""
    root = require(root, "York Urban folder")
    horizons, zeniths = read_yorkurban_gt(root / "gt_data.yml")

    def load(k: int) -> Frame:
        rgb = read_rgb(root / f"{k:03d}.jpg")
        vertical = vertical_direction(zeniths[k], horizons[k], K)
        if vertical is None:
            return Frame(rgb=rgb, K=K.copy(), env="yorkurban")
        dirs = np.full((3, 3), np.nan)
        dirs[0] = vertical
        dirs = canonical_vps(dirs)
        uv, inf = project(K, dirs[:1], eps=1e-6)
        pixels = np.full((3, 2), np.nan, np.float32)
        pixels[0] = uv[0]
        return Frame(rgb=rgb, vp_dirs=dirs.astype(np.float32), vp_pixels=pixels,
                     vp_at_infinity=np.array([inf[0], False, False]), K=K.copy(), env="yorkurban")

    return FrameList(range(len(horizons)), load)
