"""DIODE in its published layout: `<split>/<indoors|outdoor>/scene_*/scan_*/<stem>.png` with
`<stem>_depth.npy` (float32 (H, W, 1) metres) and `<stem>_depth_mask.npy` (H, W, 1 = valid).
Intrinsics of the 1024x768 images as published: fx = 886.81, fy = 927.06, cx = 512, cy = 384.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtml_core.data.loaders.common import FrameList, mask_depth, pinhole, read_rgb, require
from mtml_core.data.sample import Frame

DIODE_K = pinhole(886.81, 927.06, 512.0, 384.0)


def _npy(path: Path) -> np.ndarray:
    require(path, "DIODE array")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"corrupt .npy file {path}: {err}") from None


def _load(depth_path: Path) -> Frame:
    stem = depth_path.name[: -len("_depth.npy")]
    rgb = read_rgb(depth_path.with_name(stem + ".png"))
    depth = _npy(depth_path)
    depth = depth[..., 0] if depth.ndim == 3 else depth
    mask_path = depth_path.with_name(stem + "_depth_mask.npy")
    mask = _npy(mask_path) if mask_path.exists() else None
    if depth.shape != rgb.shape[:2] or (mask is not None and mask.shape != depth.shape):
        raise ValueError(f"DIODE image / depth / mask sizes differ: {depth_path}")
    h, w = depth.shape
    K = DIODE_K.copy()
    K[0] *= w / 1024
    K[1] *= h / 768
    return Frame(rgb=rgb, depth=mask_depth(depth, mask), K=K, env="diode-" + depth_path.parents[2].name)


def diode_frames(root: str | Path) -> FrameList:
    """All DIODE frames (`*_depth.npy`) under `root`."""
    root = require(root, "DIODE folder")
    items = sorted(root.rglob("*_depth.npy"))
    if not items:
        raise ValueError(f"no *_depth.npy files under {root}")
    return FrameList(items, _load)
