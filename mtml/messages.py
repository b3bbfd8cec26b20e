"""Engine outputs -> ROS messages (depth, normals, vanishing points, scene, diagnostics), camera_info <-> K, and the
overlay picture (RGB | depth | normals | VP | class) used by ~/overlay and the demo's PNG panels.

Image payloads go through mtml.image_conv; geometry (VP pixels, K scaling) through mtml_core.data.geometry; the
normals and VP drawings are mtml_core.data.preview's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Vector3
from mtml_interfaces.msg import SceneClass, VanishingPoints
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from mtml.image_conv import depth_to_msg, normals_to_msg
from mtml_core.data.geometry import project, scale_intrinsics
from mtml_core.data.preview import normals_image, vp_overlay
from mtml_core.data.sample import Frame

PANEL_TITLES = ("RGB", "depth", "normals", "VP", "class")


# -- camera_info ------------------------------------------------------------------------------------------------------
K_LIMIT = 1e6  # pixels: no camera has a focal length or principal point beyond this


def k_from_camera_info(msg: CameraInfo) -> tuple[np.ndarray, tuple[int, int]]:
    """(K float32 (3, 3), (H, W)) of a CameraInfo; ValueError when it holds no usable pinhole K. Checked in float32,
    the type it is used in: every entry finite and within ``K_LIMIT`` pixels, fx, fy > 0, last row (0, 0, 1)."""
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise ValueError(f"camera_info: zero-size image ({w}x{h})")
    with np.errstate(over="ignore", invalid="ignore"):
        k = np.asarray(msg.k, np.float64).astype(np.float32).reshape(3, 3)
    if (not np.isfinite(k).all() or np.abs(k).max() > K_LIMIT or k[0, 0] <= 0 or k[1, 1] <= 0
            or not np.array_equal(k[2], np.array([0, 0, 1], np.float32))):
        shown = np.asarray(msg.k, np.float64).ravel().tolist()
        raise ValueError(f"camera_info: K {shown} is not a pinhole matrix with 0 < fx, fy and every entry finite "
                         f"and within {K_LIMIT:g} pixels")
    return k, (h, w)


def camera_info_msg(K: np.ndarray, size: tuple[int, int], header: Header) -> CameraInfo:
    """A distortion-free CameraInfo for intrinsics K and image (H, W)."""
    k = np.asarray(K, np.float64)
    p = np.zeros((3, 4))
    p[:, :3] = k
    return CameraInfo(header=header, height=int(size[0]), width=int(size[1]), distortion_model="plumb_bob",
                      d=[0.0] * 5, k=k.ravel().tolist(), r=np.eye(3).ravel().tolist(), p=p.ravel().tolist())


def output_camera_info(K: np.ndarray, image_hw: tuple[int, int], out_hw: tuple[int, int],
                       header: Header) -> CameraInfo:
    """CameraInfo of an output image of size ``out_hw`` computed from a camera image of ``image_hw`` with
    intrinsics ``K`` (the network resizes the whole image, so K scales with it; REP 118 / depth_image_proc)."""
    k = K if tuple(image_hw) == tuple(out_hw) else scale_intrinsics(K, tuple(image_hw), tuple(out_hw))
    return camera_info_msg(k, out_hw, header)


# -- outputs ----------------------------------------------------------------------------------------------------------
def resize_nearest(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """A per-pixel map (depth, normals) resized to (H, W) by nearest neighbour (no mixing across edges)."""
    if size is None or img.shape[:2] == tuple(size):
        return img
    return cv2.resize(img, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)


def depth_msg(depth: np.ndarray, header: Header, size: tuple[int, int] | None = None) -> Image:
    """32FC1 metres (NaN invalid), optionally resized to the camera's (H, W)."""
    return depth_to_msg(resize_nearest(depth, size), header)


def normals_msg(normals: np.ndarray, header: Header, size: tuple[int, int] | None = None) -> Image:
    """32FC3 camera-frame unit normals, optionally resized to the camera's (H, W)."""
    return normals_to_msg(resize_nearest(normals, size), header)


def vp_confidence(dirs: np.ndarray) -> float:
    """How close the three predicted directions are to a Manhattan frame: 1 - the largest |cos| between two of
    them (1: mutually orthogonal, 0: two coincide). The heads predict each direction separately."""
    d = np.asarray(dirs, np.float64)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    cos = np.abs(d @ d.T)[np.triu_indices(3, 1)]
    return float(np.clip(1.0 - cos.max(), 0.0, 1.0)) if np.isfinite(cos).all() else 0.0


def finite_pixels(K: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 pixels (3, 2) of directions (NaN at infinity) and the at-infinity mask; a pixel too far out for
    float32 counts as at infinity (NaN, never ±inf)."""
    with np.errstate(over="ignore", invalid="ignore"):
        uv, inf = project(K, np.asarray(dirs, np.float64), eps=1e-6)
        uv = uv.astype(np.float32)
    far = ~np.isfinite(uv).all(axis=1)
    uv[far] = np.nan
    return uv, inf | far


def vp_msg(dirs: np.ndarray, header: Header, K: np.ndarray | None = None,
           confidence: float | None = None) -> VanishingPoints:
    """VanishingPoints of canonical directions (3, 3); pixels from K of the published image (NaN without K, or
    at infinity). ``confidence`` defaults to :func:`vp_confidence`."""
    d = np.asarray(dirs, np.float64)
    if d.shape != (3, 3):
        raise ValueError(f"vanishing directions must be (3, 3), got {d.shape}")
    msg = VanishingPoints(header=header)
    msg.directions = [Vector3(x=float(x), y=float(y), z=float(z)) for x, y, z in d]
    if K is None:
        msg.pixels = [float("nan")] * 6
        msg.at_infinity = [False] * 3
    else:
        uv, inf = finite_pixels(K, d)
        msg.pixels = uv.ravel().tolist()
        msg.at_infinity = [bool(v) for v in inf]
    msg.confidence = float(vp_confidence(d) if confidence is None else confidence)
    return msg


def scene_msg(scores: np.ndarray | None, names: Sequence[str], header: Header) -> SceneClass:
    """SceneClass from class probabilities over ``names`` (class_id -1 and empty label when there are none)."""
    msg = SceneClass(header=header, labels=[str(n) for n in names])
    if scores is None or len(scores) == 0:
        msg.class_id, msg.label, msg.score = -1, "", 0.0
        return msg
    s = np.asarray(scores, np.float32)
    if len(s) != len(names):
        raise ValueError(f"{len(s)} class scores for {len(names)} class names")
    i = int(np.argmax(s))
    msg.class_id, msg.label, msg.score = i, str(names[i]), float(s[i])
    msg.scores = s.tolist()
    return msg


def diagnostics_msg(stamp: object, name: str, hardware_id: str, level: int, message: str,
                    values: Mapping[str, object]) -> DiagnosticArray:
    """A one-status DiagnosticArray (level: 0 OK, 1 WARN, 2 ERROR) with ``values`` as strings."""
    status = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=str(k), value=f"{v:.4g}" if isinstance(v, float) else str(v))
                     for k, v in values.items()]
    out = DiagnosticArray(status=[status])
    out.header.stamp = stamp
    return out


# -- overlay ----------------------------------------------------------------------------------------------------------
def depth_colors(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """uint8 RGB picture of a depth map: turbo colours, near red to ``max_depth`` and beyond blue, black where
    invalid. A fixed metric scale (mtml_core.data.preview scales each image), so predictions and ground truth
    compare."""
    d = np.asarray(depth, np.float32)
    valid = np.isfinite(d) & (d > 0)
    level = np.where(valid, 255.0 * (1.0 - np.clip(d / max_depth, 0.0, 1.0)), 0).astype(np.uint8)
    rgb = cv2.applyColorMap(level, cv2.COLORMAP_TURBO)[..., ::-1]
    rgb[~valid] = 0
    return np.ascontiguousarray(rgb)


def vp_picture(rgb: np.ndarray, dirs: np.ndarray | None, K: np.ndarray | None) -> np.ndarray:
    """The image with line bundles converging on each vanishing point (K: intrinsics of ``rgb``'s resolution);
    the plain image without directions or K."""
    if dirs is None or K is None:
        return rgb.copy()
    uv, inf = finite_pixels(K, dirs)
    return vp_overlay(Frame(rgb=rgb, vp_dirs=np.asarray(dirs, np.float32), vp_pixels=uv, vp_at_infinity=inf))


def class_panel(size: tuple[int, int], scores: np.ndarray | None, names: Sequence[str], top: int = 3) -> np.ndarray:
    """Black panel listing the ``top`` classes with their probability as bars."""
    h, w = size
    out = np.zeros((h, w, 3), np.uint8)
    if scores is None or len(scores) == 0:
        return out
    scale = h / 240.0
    order = np.argsort(-np.asarray(scores))[:top]
    row = h / (top + 1)
    for r, i in enumerate(order):
        y = int((r + 0.7) * row)
        bar = int(w * 0.9 * float(scores[i]))
        cv2.rectangle(out, (int(w * 0.05), y + 4), (int(w * 0.05) + bar, y + int(row * 0.35)),
                      (90, 200, 90) if r == 0 else (90, 90, 200), -1)
        cv2.putText(out, f"{names[i]} {float(scores[i]):.2f}", (int(w * 0.05), y), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * scale, (255, 255, 255), max(1, round(scale)), cv2.LINE_AA)
    return out


def panel(rgb: np.ndarray, depth: np.ndarray | None, normals: np.ndarray | None, vp_dirs: np.ndarray | None,
          K: np.ndarray | None, scores: np.ndarray | None, names: Sequence[str], max_depth: float = 10.0,
          height: int = 240) -> np.ndarray:
    """uint8 RGB strip RGB | depth | normals | VP | class, each ``height`` rows at the image's aspect ratio.
    ``K`` belongs to ``rgb``'s resolution; missing outputs are black panels."""
    h0, w0 = rgb.shape[:2]
    size = (int(height), max(1, round(w0 * height / h0)))
    cells = [cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_AREA)]
    black = np.zeros((*size, 3), np.uint8)
    cells.append(black if depth is None else resize_nearest(depth_colors(depth, max_depth), size))
    cells.append(black if normals is None else resize_nearest(normals_image(normals), size))
    k = None if K is None else scale_intrinsics(K, (h0, w0), size)
    cells.append(vp_picture(cells[0], vp_dirs, k))
    cells.append(class_panel(size, scores, names))
    scale = height / 240.0
    for cell, title in zip(cells, PANEL_TITLES):
        cv2.putText(cell, title, (4, int(16 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (255, 255, 255),
                    max(1, round(scale)), cv2.LINE_AA)
    return np.concatenate(cells, axis=1)
