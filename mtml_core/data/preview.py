"""Preview images of synthetic frames: RGB | depth | normals | vanishing-point overlay."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from mtml_core.data.sample import Frame

VP_COLORS = ((230, 40, 40), (40, 200, 40), (60, 90, 255))  # vertical, horizontal 1, horizontal 2 (RGB)


def depth_image(depth: np.ndarray) -> np.ndarray:
    """Depth as an RGB colour map (log scale, invalid = black)."""
    valid = np.isfinite(depth)
    out = np.zeros((*depth.shape, 3), np.uint8)
    if valid.any():
        log = np.log(depth[valid])
        lo, hi = np.percentile(log, [1, 99])
        scaled = np.clip((log - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
        out[valid] = cv2.applyColorMap(scaled[:, None], cv2.COLORMAP_TURBO)[:, 0, ::-1]
    return out


def normals_image(normals: np.ndarray) -> np.ndarray:
    """Normals as RGB (n * 0.5 + 0.5), invalid = black."""
    return (np.nan_to_num((normals + 1) * 127.5, nan=0.0)).clip(0, 255).astype(np.uint8)


def vp_overlay(frame: Frame, lines: int = 7) -> np.ndarray:
    """RGB with line bundles converging on each vanishing point (parallel where at infinity)."""
    img = np.ascontiguousarray(frame.rgb.copy())
    h, w = frame.size
    if frame.vp_dirs is None:
        return img
    for j in range(3):
        d = frame.vp_dirs[j]
        if not np.all(np.isfinite(d)):
            continue
        for k in range(lines):
            seed = np.array([(k + 0.5) * w / lines, (h - 1) * (0.2 + 0.6 * (k % 2))])
            if frame.vp_at_infinity[j]:
                far = seed + d[:2] / max(np.linalg.norm(d[:2]), 1e-9) * 4 * (w + h)
            else:
                far = frame.vp_pixels[j].astype(np.float64)
            direction = far - seed
            n = np.linalg.norm(direction)
            if n < 1e-6:
                continue
            a, b = seed - direction / n * 4 * (w + h), seed + direction / n * 4 * (w + h)
            ok, p, q = cv2.clipLine((0, 0, w, h), tuple(int(v) for v in a), tuple(int(v) for v in b))
            if ok:
                cv2.line(img, p, q, VP_COLORS[j], 1, cv2.LINE_AA)
    return img


def preview_grid(frames: Sequence[Frame], labels: Sequence[str] | None = None) -> np.ndarray:
    """One row per frame: RGB | depth | normals | VP overlay (uint8 RGB)."""
    rows = []
    for i, f in enumerate(frames):
        rgb = f.rgb.copy()
        if labels:
            cv2.putText(rgb, labels[i], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        cols = [rgb, depth_image(f.depth), normals_image(f.normals), vp_overlay(f)]
        rows.append(np.concatenate([np.pad(c, ((1, 1), (1, 1), (0, 0))) for c in cols], 1))
    return np.concatenate(rows, 0)


def save_rgb(path: str, rgb: np.ndarray) -> None:
    """Write an RGB image (PNG/JPG by extension); ValueError naming the path on failure."""
    if not cv2.imwrite(str(path), rgb[..., ::-1]):
        raise ValueError(f"cannot write image {path}")
