"""NYU Depth v2: the labelled set `nyu_depth_v2_labeled.mat` (MATLAB v7.3 = HDF5, read with h5py)
and `sync` folders of `rgb_NNNNN.jpg` + `sync_depth_NNNNN.png` (16-bit, millimetres; the BTS /
Metric3D layout, RGB either beside the depth or in a sibling `rgb/` folder).

In the .mat, h5py sees MATLAB's column-major arrays transposed: `images` is (N, 3, W, H) and
`depths` is (N, W, H) in metres; frame i is `images[i].transpose(2, 1, 0)`, `depths[i].T`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mtml_core.data.loaders.common import FrameList, mask_depth, pinhole, require
from mtml_core.data.loaders.depth import depth_frame
from mtml_core.data.sample import Frame

# Kinect colour intrinsics published with the NYU Depth v2 toolbox (640x480).
NYU_K = pinhole(518.857901, 519.469611, 325.582449, 253.736166)
NYU_DEPTH_SCALE = 1000.0


def nyu_labeled_mat(path: str | Path) -> FrameList:
    """Frames (rgb, depth, K) of the labelled NYU v2 .mat file."""
    import h5py

    path = require(path, "NYU labelled .mat")
    try:
        with h5py.File(path, "r") as f:
            n, shapes = len(f["images"]), (f["images"].shape, f["depths"].shape)
    except (OSError, KeyError) as err:
        raise ValueError(f"not a NYU v2 labelled .mat (HDF5 with 'images' and 'depths'): {path}: {err}") from None
    if len(shapes[0]) != 4 or shapes[0][1] != 3 or shapes[1] != (shapes[0][0], *shapes[0][2:]):
        raise ValueError(f"unexpected NYU .mat shapes images={shapes[0]} depths={shapes[1]}: {path}")

    def load(i: int) -> Frame:
        with h5py.File(path, "r") as f:
            rgb = np.ascontiguousarray(f["images"][i].transpose(2, 1, 0)).astype(np.uint8)
            depth = mask_depth(f["depths"][i].T)
        return Frame(rgb=rgb, depth=depth, K=NYU_K.copy(), env="nyu")

    return FrameList(range(n), load)


def nyu_sync_frames(root: str | Path, K: np.ndarray | None = NYU_K) -> FrameList:
    """All `sync_depth_NNNNN.png` under `root` with their `rgb_NNNNN.jpg`."""
    root = require(root, "NYU sync folder")
    items = []
    for depth in sorted(root.rglob("sync_depth_*.png")):
        num = re.fullmatch(r"sync_depth_(\d+)\.png", depth.name)
        if num is None:
            continue
        name = f"rgb_{num.group(1)}.jpg"
        for rgb in (depth.with_name(name), depth.parent.parent / "rgb" / name):
            if rgb.exists():
                items.append((rgb, depth))
                break
        else:
            raise FileNotFoundError(f"no {name} for {depth}")
    if not items:
        raise ValueError(f"no sync_depth_*.png files under {root}")
    return FrameList(items, lambda it: depth_frame(it[0], it[1], NYU_DEPTH_SCALE,
                                                   None if K is None else K.copy(), "nyu"))
