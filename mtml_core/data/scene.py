"""Scene layouts per geometry family: a container (room interior or open ground) plus boxes.

World frame: z up, metres; the camera starts near the origin looking along +y (before yaw).
Every layout keeps the camera outside all boxes and inside the container.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtml_core.data.categories import SLOTS

FLOOR, WALL, CEILING, OBSTACLE = (SLOTS.index(s) for s in ("floor", "wall", "ceiling", "obstacle"))
INF = np.inf


@dataclass
class Layout:
    """Container bounds (may be infinite), boxes (n, 2, 3) lo/hi with a material slot each, camera xy."""

    lo: np.ndarray
    hi: np.ndarray
    boxes: np.ndarray
    box_slots: np.ndarray
    camera_xy: np.ndarray
    ceiling: float


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


class _Boxes:
    """Accumulates boxes, refusing those that would contain the camera (with a margin)."""

    def __init__(self, cam: tuple[float, float], margin: float = 0.4) -> None:
        self.cam, self.margin, self.items, self.slots = cam, margin, [], []

    def add(self, lo: tuple, hi: tuple, slot: int) -> bool:
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        cx, cy = self.cam
        m = self.margin
        if lo[0] - m < cx < hi[0] + m and lo[1] - m < cy < hi[1] + m:
            return False
        if np.any(hi - lo < 1e-3):
            return False
        self.items.append(np.stack([lo, hi]))
        self.slots.append(slot)
        return True

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.items:
            return np.zeros((0, 2, 3)), np.zeros((0,), np.int64)
        return np.stack(self.items).astype(np.float64), np.array(self.slots, np.int64)


def _corridor(rng: np.random.Generator, g: dict, n: int, s: float) -> Layout:
    w, length, h = g["width"], g["length"], g["height"]
    cam = (_u(rng, -0.25, 0.25) * w, 0.0)
    boxes = _Boxes(cam)
    for _ in range(n):
        side = rng.choice([-1.0, 1.0])
        dx = min(s, 0.3 * w) * _u(rng, 0.4, 1.0)
        dy = s * _u(rng, 0.8, 2.5)
        dz = min(h - 0.2, s * _u(rng, 1.0, 2.5))
        y0 = _u(rng, 1.5, max(1.6, length - dy))
        x_wall = side * w / 2
        boxes.add((x_wall, y0, 0.0), (x_wall - side * dx, y0 + dy, dz), OBSTACLE)
    return Layout(np.array([-w / 2, -2.0, 0.0]), np.array([w / 2, length, h]), *boxes.arrays(),
                  np.array(cam), h)


def _room(rng: np.random.Generator, g: dict, n: int, s: float) -> Layout:
    w, length, h = g["width"], g["length"], g["height"]
    cam = (_u(rng, -0.3, 0.3) * w, _u(rng, 0.3, max(0.35, 0.25 * length)))
    boxes = _Boxes(cam, margin=0.5)
    for _ in range(4 * n):
        if len(boxes.items) >= n:
            break
        dx, dy = min(s * _u(rng, 0.6, 2.0), 0.45 * w), min(s * _u(rng, 0.6, 2.0), 0.45 * length)
        dz = min(h - 0.3, s * _u(rng, 0.5, 1.5))
        x0, y0 = _u(rng, -w / 2, w / 2 - dx), _u(rng, 0.0, length - dy)
        boxes.add((x0, y0, 0.0), (x0 + dx, y0 + dy, dz), OBSTACLE)
    return Layout(np.array([-w / 2, 0.0, 0.0]), np.array([w / 2, length, h]), *boxes.arrays(),
                  np.array(cam), h)


def _hall(rng: np.random.Generator, g: dict, n: int, s: float) -> Layout:
    w, length, h = g["width"], g["length"], g["height"]
    cam = (_u(rng, -0.1, 0.1) * w, 0.0)
    boxes = _Boxes(cam)
    per_row = max(1, n // 2)
    step = length / (per_row + 1)
    for i in range(per_row):
        for x in (-w / 4, w / 4):
            y = (i + 1) * step + _u(rng, -0.1, 0.1) * step
            boxes.add((x - s / 2, y - s / 2, 0.0), (x + s / 2, y + s / 2, h), WALL)
    if n % 2:
        size = _u(rng, 0.8, 1.5)
        y = _u(rng, 4.0, max(4.5, 0.5 * length))
        boxes.add((-size / 2, y, 0.0), (size / 2, y + size, size), OBSTACLE)
    return Layout(np.array([-w / 2, -2.0, 0.0]), np.array([w / 2, length, h]), *boxes.arrays(),
                  np.array(cam), h)


def _street(rng: np.random.Generator, g: dict, n: int, s: float) -> Layout:
    w, length, h = g["width"], g["length"], g["height"]
    cam = (_u(rng, -0.25, 0.25) * w, 0.0)
    boxes = _Boxes(cam)
    for side in (-1.0, 1.0):
        boxes.add((side * w / 2, -20.0, 0.0), (side * (w / 2 - 2.0), length, 0.15), FLOOR)  # kerb
        y = -20.0
        while y < length:
            dy = _u(rng, 6.0, 20.0)
            x0 = side * (w / 2 + _u(rng, 0.0, 2.0))
            boxes.add((x0, y, 0.0), (x0 + side * _u(rng, 8.0, 15.0), min(y + dy, length), h * _u(rng, 0.5, 1.5)),
                      WALL)
            y += dy + _u(rng, 0.0, 3.0)
    for _ in range(n):
        side = rng.choice([-1.0, 1.0])
        x0 = side * (w / 2 - _u(rng, 0.3, 2.5))
        y0 = _u(rng, 3.0, max(3.5, 0.5 * length))
        boxes.add((x0, y0, 0.0), (x0 - side * s * _u(rng, 0.5, 1.0), y0 + s * _u(rng, 1.0, 3.0),
                                  s * _u(rng, 0.5, 1.5)), OBSTACLE)
    return Layout(np.array([-INF, -INF, 0.0]), np.array([INF, INF, INF]), *boxes.arrays(),
                  np.array(cam), INF)


def _warehouse(rng: np.random.Generator, g: dict, n: int, s: float) -> Layout:
    w, length, h = g["width"], g["length"], g["height"]
    cam = (_u(rng, -0.2, 0.2) * w, 0.0)
    boxes = _Boxes(cam)
    depth = 1.0
    for side in (-1.0, 1.0):
        for row in range(2):
            x0 = side * (w / 2 + row * (w + depth))
            y = _u(rng, 0.5, 3.0)
            while y < length - 1.0:
                dy = _u(rng, 6.0, 12.0)
                boxes.add((x0, y, 0.0), (x0 + side * depth, min(y + dy, length - 0.5), h * _u(rng, 0.5, 0.8)),
                          WALL)
                y += dy + 2.0
    for _ in range(n):
        side = rng.choice([-1.0, 1.0])
        d = min(s, 0.35 * w) * _u(rng, 0.6, 1.0)
        y0 = _u(rng, 2.0, max(2.5, length - 3.0))
        boxes.add((side * w / 2, y0, 0.0), (side * (w / 2 - d), y0 + d, d * _u(rng, 0.6, 1.5)), OBSTACLE)
    half = 1.5 * w + 2 * depth + 0.5
    return Layout(np.array([-half, -2.0, 0.0]), np.array([half, length, h]), *boxes.arrays(),
                  np.array(cam), h)


def _plaza(rng: np.random.Generator, g: dict, n: int, s: float) -> Layout:
    w, length, h = g["width"], g["length"], g["height"]
    cam = (0.0, 0.0)
    boxes = _Boxes(cam, margin=2.0)
    for axis in (0, 1):
        for side in (-1.0, 1.0):
            extent = w if axis == 1 else length
            t = -extent
            while t < extent:
                dt = _u(rng, 8.0, 20.0)
                near = side * (w if axis == 0 else length) * _u(rng, 0.9, 1.1)
                far = near + side * _u(rng, 8.0, 15.0)
                hh = h * _u(rng, 0.5, 1.5)
                lo, hi = ((near, t, 0.0), (far, t + dt, hh)) if axis == 0 else ((t, near, 0.0), (t + dt, far, hh))
                boxes.add(lo, hi, WALL)
                t += dt + _u(rng, 1.0, 6.0)
    placed = 0
    for _ in range(3 * n):
        if placed >= n:
            break
        r, a = _u(rng, 3.0, 0.7 * min(w, length)), _u(rng, 0, 2 * np.pi)
        x0, y0 = r * np.sin(a), r * np.cos(a)
        size = [s * _u(rng, 0.5, 1.5) for _ in range(3)]
        placed += boxes.add((x0, y0, 0.0), (x0 + size[0], y0 + size[1], size[2]), OBSTACLE)
    return Layout(np.array([-INF, -INF, 0.0]), np.array([INF, INF, INF]), *boxes.arrays(),
                  np.array(cam), INF)


BUILDERS = {"corridor": _corridor, "room": _room, "hall": _hall, "street": _street,
            "warehouse": _warehouse, "plaza": _plaza}


def build_layout(family: str, rng: np.random.Generator, geometry: dict) -> Layout:
    """Sample a layout of `family` from drawn geometry values (width, length, height, obstacles, size)."""
    if family not in BUILDERS:
        raise ValueError(f"unknown geometry family {family!r}; expected one of {tuple(BUILDERS)}")
    return BUILDERS[family](rng, geometry, int(geometry["obstacles"]), geometry["obstacle_size"])
