"""sensor_msgs/Image <-> numpy: the one place that decodes and encodes image messages.

In: rgb8 / bgr8 / mono8 camera frames -> uint8 (H, W, 3) RGB; 32FC1 or 16UC1 (REP 118 millimetres)
depth -> float32 (H, W) metres with NaN where invalid; 32FC3 -> float32 (H, W, 3).
Out: float32 (H, W) -> 32FC1, float32 (H, W, 3) -> 32FC3, uint8 (H, W, 3) RGB -> rgb8.
Compressed camera frames (sensor_msgs/CompressedImage, JPEG or PNG) -> uint8 (H, W, 3) RGB through OpenCV.
Malformed messages raise ValueError naming the problem (untrusted strings in it quoted and length-capped); a
``max_pixels`` bound rejects oversized frames before anything is allocated for them (for JPEG/PNG the size is read
from the header before decoding). Row padding (step > width * pixel size) is honoured without Python loops.
cv_bridge is used for the raw decode when it is importable.
"""

from __future__ import annotations

import array

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from mtml.throttle import safe

try:  # ROS 2 installs from apt have it; it is not installable from PyPI.
    from cv_bridge import CvBridge

    _BRIDGE = CvBridge()
except ImportError:
    _BRIDGE = None

# encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "mono8": (np.dtype(np.uint8), 1),
    "16UC1": (np.dtype("<u2"), 1),
    "32FC1": (np.dtype("<f4"), 1),
    "32FC3": (np.dtype("<f4"), 3),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "mono8")
DEPTH_ENCODINGS = ("32FC1", "16UC1")
MAX_ROW_PADDING = 1024  # bytes a row may carry beyond its pixels (alignment); more is refused, so data stays bounded


def check_size(h: int, w: int, max_pixels: int | None) -> None:
    """ValueError for an empty image or one of more than ``max_pixels`` pixels (None: no bound)."""
    if h <= 0 or w <= 0:
        raise ValueError(f"zero-size image ({w}x{h})")
    if max_pixels is not None and h * w > max_pixels:
        raise ValueError(f"image of {w}x{h} = {h * w} pixels, more than max_image_pixels = {max_pixels}")


def _check(msg: Image, allowed: tuple[str, ...], max_pixels: int | None = None) -> tuple[np.dtype, int]:
    """Validate the message's layout; returns (dtype, channels)."""
    enc = msg.encoding
    if enc not in allowed:
        raise ValueError(f"unsupported image encoding {safe(enc, 32)} here (expected one of {', '.join(allowed)})")
    dtype, ch = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    check_size(h, w, max_pixels)
    if msg.is_bigendian and dtype.itemsize > 1:
        raise ValueError(f"big-endian {enc} images are not supported")
    row = w * ch * dtype.itemsize
    if step < row:
        raise ValueError(f"wrong step {step}: a {enc} row of width {w} needs at least {row} bytes")
    if step > row + MAX_ROW_PADDING:
        raise ValueError(f"wrong step {step}: a {enc} row of width {w} takes {row} bytes (padding beyond "
                         f"{MAX_ROW_PADDING} refused)")
    if step % dtype.itemsize:
        raise ValueError(f"wrong step {step}: not a multiple of the {enc} element size {dtype.itemsize}")
    if len(msg.data) != step * h:
        raise ValueError(f"image data has {len(msg.data)} bytes, expected step*height = {step}*{h} = {step * h}"
                         + (" (truncated)" if len(msg.data) < step * h else ""))
    return dtype, ch


def check_depth_msg(msg: Image, max_pixels: int | None = None) -> None:
    """ValueError unless ``msg`` is a well-formed depth image (encoding, size, step, data length) of at most
    ``max_pixels`` pixels: a cheap check (nothing decoded) before a label is kept for time matching."""
    _check(msg, DEPTH_ENCODINGS, max_pixels)


def _raw(msg: Image, allowed: tuple[str, ...], max_pixels: int | None = None) -> np.ndarray:
    """(H, W, C) array in the message's own encoding; may share memory with msg.data."""
    dtype, ch = _check(msg, allowed, max_pixels)
    if _BRIDGE is not None:
        return np.asarray(_BRIDGE.imgmsg_to_cv2(msg, "passthrough")).reshape(msg.height, msg.width, ch)
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    rows = rows[:, : msg.width * ch * dtype.itemsize]
    return rows.view(dtype).reshape(msg.height, msg.width, ch)


def rgb_from_msg(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """Camera frame (rgb8, bgr8 or mono8) -> contiguous uint8 (H, W, 3) RGB (rgb8 without row padding
    shares msg.data's memory); ValueError beyond ``max_pixels``."""
    img = _raw(msg, COLOR_ENCODINGS, max_pixels)
    if msg.encoding == "bgr8":
        img = img[..., ::-1]
    elif msg.encoding == "mono8":
        img = np.broadcast_to(img, (*img.shape[:2], 3))
    return np.ascontiguousarray(img)


def depth_from_msg(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """Depth image (32FC1 metres or 16UC1 millimetres, REP 118) -> float32 (H, W) metres, NaN invalid.

    16UC1 zeros and non-finite or non-positive 32FC1 values become NaN; ValueError beyond ``max_pixels``."""
    img = _raw(msg, DEPTH_ENCODINGS, max_pixels)[..., 0]
    if msg.encoding == "16UC1":
        depth = img.astype(np.float32) / np.float32(1000)
        depth[img == 0] = np.nan
        return depth
    depth = np.array(img, dtype=np.float32)
    depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(H, W) from a JPEG's start-of-frame marker, without decoding."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= n:
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    raise ValueError("compressed image: JPEG without a readable frame header")


def compressed_size(data: bytes) -> tuple[int, int]:
    """(H, W) of a JPEG or PNG from its header; ValueError for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    raise ValueError(f"compressed image: neither JPEG nor PNG data (starts with {data[:8].hex() or 'nothing'})")


def rgb_from_compressed(msg: CompressedImage, max_pixels: int | None = None) -> np.ndarray:
    """JPEG or PNG CompressedImage -> uint8 (H, W, 3) RGB; its size is checked against ``max_pixels`` from the
    header before decoding, the data length against 3 bytes per pixel of that bound."""
    data = bytes(msg.data)
    if max_pixels is not None and len(data) > 3 * max_pixels + 65536:
        raise ValueError(f"compressed image of {len(data)} bytes, more than a max_image_pixels frame can need")
    h, w = compressed_size(data)
    check_size(h, w, max_pixels)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (h, w):
        raise ValueError(f"compressed image: {safe(msg.format, 32)} data could not be decoded")
    return np.ascontiguousarray(bgr[..., ::-1])


def normals_from_msg(msg: Image) -> np.ndarray:
    """32FC3 image -> contiguous float32 (H, W, 3)."""
    return np.ascontiguousarray(_raw(msg, ("32FC3",)), dtype=np.float32)


def array_to_msg(arr: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """(H, W) or (H, W, C) array -> Image of `encoding` (32FC1, 32FC3, rgb8, mono8, 16UC1), unpadded."""
    if encoding not in ENCODINGS or encoding == "bgr8":
        raise ValueError(f"cannot encode {encoding!r} (supported: 32FC1, 32FC3, rgb8, mono8, 16UC1)")
    dtype, ch = ENCODINGS[encoding]
    a = np.asarray(arr)
    if not ((a.ndim == 2 and ch == 1) or (a.ndim == 3 and a.shape[2] == ch)):
        want = "(H, W)" if ch == 1 else f"(H, W, {ch})"
        raise ValueError(f"{encoding} needs an array of shape {want}, got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"zero-size image {a.shape}")
    if dtype.kind != "f" and a.dtype != dtype.newbyteorder("="):
        raise ValueError(f"{encoding} needs {dtype.name} data, got {a.dtype}")
    a = np.ascontiguousarray(a, dtype=dtype)
    msg = Image(height=a.shape[0], width=a.shape[1], encoding=encoding, is_bigendian=0,
                step=a.shape[1] * ch * dtype.itemsize)
    if header is not None:
        msg.header = header
    data = array.array("B")
    data.frombytes(a.reshape(-1).view(np.uint8))
    msg.data = data
    return msg


def depth_to_msg(depth: np.ndarray, header: Header | None = None) -> Image:
    """float (H, W) metres -> 32FC1 Image (NaN kept for invalid pixels)."""
    return array_to_msg(depth, "32FC1", header)


def normals_to_msg(normals: np.ndarray, header: Header | None = None) -> Image:
    """float (H, W, 3) unit vectors -> 32FC3 Image."""
    return array_to_msg(normals, "32FC3", header)


def rgb_to_msg(rgb: np.ndarray, header: Header | None = None) -> Image:
    """uint8 (H, W, 3) RGB -> rgb8 Image."""
    return array_to_msg(rgb, "rgb8", header)
