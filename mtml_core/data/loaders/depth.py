"""Depth frames from 16-bit PNGs: KITTI depth maps and the annotation-JSON layout of the Metric3D
demo sets (NYU / KITTI samples: `{"files": [{"rgb", "depth", "depth_scale", "cam_in": [fx, fy, cx, cy]}]}`).

KITTI depth PNG: uint16, metres = value / 256, value 0 = no measurement (-> NaN).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtml_core.data.loaders.common import FrameList, mask_depth, pinhole, read_png16, read_rgb, require
from mtml_core.data.sample import Frame

KITTI_DEPTH_SCALE = 256.0


def read_kitti_depth(path: str | Path) -> np.ndarray:
    """A KITTI depth PNG as float32 metres, NaN where there is no measurement."""
    return mask_depth(read_png16(path).astype(np.float32) / KITTI_DEPTH_SCALE)


def depth_frame(rgb_path: Path, depth_path: Path, scale: float, K: np.ndarray | None, env: str | None) -> Frame:
    """One RGB + 16-bit depth PNG pair (metres = value / scale; 0 invalid)."""
    rgb = read_rgb(rgb_path)
    depth = mask_depth(read_png16(depth_path).astype(np.float32) / np.float32(scale))
    if depth.shape != rgb.shape[:2]:
        raise ValueError(f"depth {depth.shape} and image {rgb.shape[:2]} sizes differ: {depth_path}")
    return Frame(rgb=rgb, depth=depth, K=K, env=env)


def _resolve(base: Path, rel: str) -> Path:
    """`rel` from an annotation file, found relative to its folder (leading components may be extra)."""
    parts = Path(rel).parts
    for i in range(len(parts)):
        cand = base.joinpath(*parts[i:])
        if cand.exists():
            return cand
    raise FileNotFoundError(f"file listed in annotations not found: {rel} (looked under {base})")


def annotated_depth_frames(json_path: str | Path, env: str | None = None) -> FrameList:
    """Frames listed in a Metric3D-style annotation JSON (NYU / KITTI demo layout)."""
    json_path = require(json_path, "annotation file")
    try:
        entries = json.loads(json_path.read_text())["files"]
        items = [(_resolve(json_path.parent, e["rgb"]), _resolve(json_path.parent, e["depth"]),
                  float(e["depth_scale"]), pinhole(*[float(v) for v in e["cam_in"]])) for e in entries]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"malformed annotation file {json_path}: {err!r}") from None
    env = env or json_path.parent.name
    return FrameList(items, lambda it: depth_frame(*it, env))


def kitti_depth_frames(depth_dir: str | Path, rgb_dir: str | Path, K: np.ndarray | None = None) -> FrameList:
    """KITTI depth PNGs paired with the same-named RGB images."""
    depth_dir, rgb_dir = require(depth_dir, "KITTI depth folder"), require(rgb_dir, "KITTI image folder")
    names = sorted(p.name for p in depth_dir.glob("*.png"))
    if not names:
        raise ValueError(f"no depth PNGs in {depth_dir}")
    return FrameList(names, lambda n: depth_frame(rgb_dir / n, depth_dir / n, KITTI_DEPTH_SCALE, K, "kitti"))
