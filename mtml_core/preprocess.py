"""The one place for resize / normalise / layout, shared by training and every runtime backend.

Images: uint8 RGB (H, W, 3) or (N, H, W, 3) -> float32 (N, 3, H, W), `(rgb / 255 - mean) / std`.
Labels follow docs/architecture.md: class (N,) int64, depth (N, 1, H, W) metres with NaN where
invalid, normals (N, 3, H, W) with NaN where invalid, vp (N, 3, 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from mtml_core.data.geometry import scale_intrinsics
from mtml_core.data.sample import Frame

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) with positive entries, got {size!r}")
    return int(size[0]), int(size[1])


def resize_rgb(rgb: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize a uint8 (H, W, 3) image to (H, W) `size` with area interpolation."""
    h, w = _check_size(size)
    if rgb.shape[:2] == (h, w):
        return rgb
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def _nearest(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)


def resize_frame(frame: Frame, size: Sequence[int]) -> Frame:
    """Resize a Frame: rgb by area, depth / normals by nearest neighbour, K and VP pixels scaled."""
    size = _check_size(size)
    old = frame.size
    if old == size:
        return frame
    sy, sx = size[0] / old[0], size[1] / old[1]
    vp_pixels = None
    if frame.vp_pixels is not None:
        vp_pixels = ((frame.vp_pixels + 0.5) * np.array([sx, sy], np.float32) - 0.5).astype(np.float32)
    return frame.with_(
        rgb=resize_rgb(frame.rgb, size),
        depth=None if frame.depth is None else _nearest(frame.depth, size),
        normals=None if frame.normals is None else _nearest(frame.normals, size),
        K=None if frame.K is None else scale_intrinsics(frame.K, old, size),
        vp_pixels=vp_pixels,
    )


def to_array(rgb: np.ndarray, size: Sequence[int] | None = None, mean: Sequence[float] = MEAN,
             std: Sequence[float] = STD) -> np.ndarray:
    """uint8 RGB (H, W, 3) or (N, H, W, 3) -> normalised float32 (N, 3, H, W), resized if `size`. numpy only: on
    the serving path a torch elementwise op on a 96x128 frame wakes torch's thread pool, which costs ~20 ms
    whenever the other core is busy (0.1 ms here)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim not in (3, 4) or rgb.shape[-1] != 3:
        raise ValueError(f"to_tensor expects uint8 (H, W, 3) or (N, H, W, 3), got {rgb.dtype} {rgb.shape}")
    if rgb.ndim == 3:
        rgb = rgb[None]
    if size is not None:
        size = _check_size(size)
        if rgb.shape[1:3] != size:
            rgb = np.stack([resize_rgb(im, size) for im in rgb])
    x = rgb.transpose(0, 3, 1, 2).astype(np.float32)
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1) * np.float32(255.0)
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1) * np.float32(255.0)
    return np.ascontiguousarray((x - m) / s)


def to_tensor(rgb: np.ndarray, size: Sequence[int] | None = None, mean: Sequence[float] = MEAN,
              std: Sequence[float] = STD) -> torch.Tensor:
    """:func:`to_array` as a torch tensor."""
    return torch.from_numpy(to_array(rgb, size, mean, std))


def depth_to_tensor(depth: np.ndarray) -> torch.Tensor:
    """Depth (H, W) or (N, H, W) metres -> (N, 1, H, W) float32, NaN where not finite or <= 0."""
    depth = np.asarray(depth, np.float32)
    if depth.ndim == 2:
        depth = depth[None]
    if depth.ndim != 3:
        raise ValueError(f"depth must be (H, W) or (N, H, W), got {depth.shape}")
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(np.nan))
    return torch.from_numpy(depth[:, None])


def depth_within(depth: torch.Tensor, max_depth: float) -> torch.Tensor:
    """A depth label tensor with every pixel beyond ``max_depth`` metres made invalid (NaN): the training range."""
    return torch.where(depth > max_depth, torch.full_like(depth, float("nan")), depth)


def normals_to_tensor(normals: np.ndarray) -> torch.Tensor:
    """Normals (H, W, 3) or (N, H, W, 3) -> (N, 3, H, W) float32 (NaN kept as the invalid mark)."""
    normals = np.asarray(normals, np.float32)
    if normals.ndim == 3:
        normals = normals[None]
    if normals.ndim != 4 or normals.shape[-1] != 3:
        raise ValueError(f"normals must be (H, W, 3) or (N, H, W, 3), got {normals.shape}")
    return torch.from_numpy(np.ascontiguousarray(normals.transpose(0, 3, 1, 2)))


def vp_to_tensor(vp_dirs: np.ndarray) -> torch.Tensor:
    """VP directions (3, 3) or (N, 3, 3) -> (N, 3, 3) float32."""
    vp = np.asarray(vp_dirs, np.float32)
    if vp.ndim == 2:
        vp = vp[None]
    if vp.shape[1:] != (3, 3):
        raise ValueError(f"vp_dirs must be (3, 3) or (N, 3, 3), got {vp.shape}")
    return torch.from_numpy(vp.copy())


def class_to_tensor(labels: Sequence[int]) -> torch.Tensor:
    """Episode class labels (already in [0, n_way)) -> (N,) int64."""
    return torch.as_tensor(np.asarray(labels, np.int64))


def frame_labels(task: str, frames: Sequence[Frame], size: Sequence[int] | None = None) -> torch.Tensor:
    """The label tensor of `task` (depth / normals / vp) for frames, resized to `size` if given."""
    if size is not None:
        frames = [resize_frame(f, size) for f in frames]
    field = {"depth": "depth", "normals": "normals", "vp": "vp_dirs"}.get(task)
    if field is None:
        raise ValueError(f"frame_labels: task must be depth, normals or vp, got {task!r}")
    missing = [i for i, f in enumerate(frames) if getattr(f, field) is None]
    if missing:
        raise ValueError(f"frames {missing[:5]} have no {field} label for task {task!r}")
    values = np.stack([getattr(f, field) for f in frames])
    return {"depth": depth_to_tensor, "normals": normals_to_tensor, "vp": vp_to_tensor}[task](values)


def frames_to_tensor(frames: Sequence[Frame], size: Sequence[int] | None = None, mean: Sequence[float] = MEAN,
                     std: Sequence[float] = STD) -> torch.Tensor:
    """Images of several frames -> normalised (N, 3, H, W)."""
    if size is not None:
        return to_tensor(np.stack([resize_rgb(f.rgb, size) for f in frames]), None, mean, std)
    return to_tensor(np.stack([f.rgb for f in frames]), None, mean, std)
