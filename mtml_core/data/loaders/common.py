"""Shared loader pieces: checked file reading, invalid-depth masking, lazy frame lists, class sets."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from mtml_core.data.sample import Frame

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".JPEG", ".JPG", ".PNG")


def require(path: str | Path, what: str = "file") -> Path:
    """The path, or FileNotFoundError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def decode(data: bytes, origin: str, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """Decode image bytes; ValueError naming `origin` if they are not an image."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if img is None:
        raise ValueError(f"cannot decode image (corrupt or unsupported): {origin}")
    return img


def as_rgb(img: np.ndarray, origin: str) -> np.ndarray:
    """uint8 RGB (H, W, 3) from a decoded grey / BGR / BGRA image."""
    if img.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit image, got {img.dtype}: {origin}")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[..., :3]
    return np.ascontiguousarray(img[..., ::-1])


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3)."""
    path = require(path, "image")
    return as_rgb(decode(path.read_bytes(), str(path), cv2.IMREAD_COLOR), str(path))


def read_png16(path: str | Path) -> np.ndarray:
    """A 16-bit PNG as uint16 (H, W)."""
    path = require(path, "depth image")
    img = decode(path.read_bytes(), str(path))
    if img.dtype != np.uint16 or img.ndim != 2:
        raise ValueError(f"expected a single-channel 16-bit PNG, got {img.dtype} {img.shape}: {path}")
    return img


def mask_depth(depth: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """float32 depth with NaN wherever it is 0, negative, not finite, or not `valid`."""
    depth = np.asarray(depth, np.float32)
    ok = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        ok &= valid.astype(bool)
    return np.where(ok, depth, np.float32(np.nan))


def pinhole(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float32)


class FrameList(Sequence):
    """A lazy list of Frames: item i is `load(items[i])`."""

    def __init__(self, items: Sequence, load: Callable[[object], Frame]) -> None:
        self.items, self.load = list(items), load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Frame:  # type: ignore[override]
        if isinstance(i, slice):
            return [self.load(it) for it in self.items[i]]
        return self.load(self.items[i])


class ZipReader:
    """Reads members of a zip file; reopens the archive after a fork (safe with DataLoader workers)."""

    def __init__(self, path: str | Path) -> None:
        self.path = require(path, "zip archive")
        self._zip, self._pid = None, None
        try:
            self.names = self._archive().namelist()
        except zipfile.BadZipFile:
            raise ValueError(f"not a valid zip archive: {self.path}") from None

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            self._zip, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zip

    def read(self, name: str) -> bytes:
        try:
            return self._archive().read(name)
        except (KeyError, zipfile.BadZipFile) as err:
            raise ValueError(f"cannot read {name} from {self.path}: {err}") from None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None, "_pid": None}


class ImageClassSet:
    """A ClassSource over image items grouped by class; `read(item)` gives uint8 RGB.

    `cache=True` keeps decoded images in memory (small sets such as Omniglot).
    """

    def __init__(self, items: dict[str, list], read: Callable[[object], np.ndarray], split: str = "all",
                 cache: bool = False) -> None:
        if not items:
            raise ValueError("an image class set needs at least one class")
        self.items, self.read, self.split, self.cache = items, read, split, cache
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def class_names(self) -> list[str]:
        return sorted(self.items)

    def num_items(self, name: str) -> int:
        return len(self.items[name])

    def rgb(self, name: str, index: int) -> np.ndarray:
        key = (name, index)
        if key in self._cache:
            return self._cache[key]
        img = self.read(self.items[name][index])
        if self.cache:
            self._cache[key] = img
        return img

    def subset(self, names: Sequence[str], split: str) -> ImageClassSet:
        """The same images restricted to some classes, labelled as one split."""
        missing = [n for n in names if n not in self.items]
        if missing:
            raise ValueError(f"unknown classes {missing[:5]}")
        return ImageClassSet({n: self.items[n] for n in names}, self.read, split, self.cache)


def split_classes(names: Sequence[str], fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
                  group: Callable[[str], str] = lambda n: n) -> dict[str, list[str]]:
    """Disjoint train/val/test class lists; classes of one group (e.g. an alphabet) stay together."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    groups = sorted({group(n) for n in names})
    n = len(groups)
    # group counts per split: rounded, at least one for a positive fraction while groups allow it
    sizes = [max(int(f > 0), round(f * n)) for f in fractions] if n >= 3 else [n, 0, 0]
    while sum(sizes) != n:
        i = int(np.argmax(sizes)) if sum(sizes) > n else 0
        sizes[i] += 1 if sum(sizes) < n else -1
    order = np.random.default_rng(seed).permutation(n)
    split_of = {}
    for rank, gi in enumerate(order):
        split_of[groups[gi]] = "train" if rank < sizes[0] else "val" if rank < sizes[0] + sizes[1] else "test"
    return {s: sorted(n for n in names if split_of[group(n)] == s) for s in ("train", "val", "test")}
