"""Scene categories of the synthetic world: geometry family x appearance style, with fixed splits.

A style is a set of materials (texture + two colours + scale per surface slot). Styles, not
families, are split: train / val / test categories are disjoint (family, style) pairs, and the
test styles' appearance is never seen in training.
"""

from __future__ import annotations

FAMILIES = ("corridor", "room", "hall", "street", "warehouse", "plaza")
SLOTS = ("floor", "wall", "ceiling", "obstacle")
TEXTURES = ("plain", "checker", "stripes", "bricks", "tiles", "noise", "planks")
SPLITS = ("train", "val", "test")


def _m(texture: str, a: tuple, b: tuple, scale: float) -> dict:
    return {"texture": texture, "colors": [list(a), list(b)], "scale": scale}


STYLES: dict[str, dict] = {
    "brick": {"split": "train", "materials": {
        "floor": _m("planks", (120, 80, 50), (150, 105, 70), 0.2),
        "wall": _m("bricks", (170, 70, 50), (215, 205, 190), 0.25),
        "ceiling": _m("plain", (225, 222, 215), (205, 200, 195), 1.0),
        "obstacle": _m("plain", (90, 100, 125), (70, 80, 100), 1.0)}},
    "concrete": {"split": "train", "materials": {
        "floor": _m("tiles", (130, 130, 128), (95, 95, 95), 0.6),
        "wall": _m("noise", (160, 158, 150), (120, 118, 112), 0.4),
        "ceiling": _m("noise", (150, 150, 150), (120, 120, 120), 0.8),
        "obstacle": _m("stripes", (220, 190, 30), (30, 30, 30), 0.15)}},
    "wood": {"split": "train", "materials": {
        "floor": _m("planks", (170, 120, 70), (140, 95, 55), 0.15),
        "wall": _m("planks", (190, 150, 100), (160, 120, 80), 0.3),
        "ceiling": _m("plain", (235, 225, 200), (215, 205, 185), 1.0),
        "obstacle": _m("checker", (100, 60, 40), (180, 140, 90), 0.3)}},
    "office": {"split": "train", "materials": {
        "floor": _m("checker", (90, 100, 120), (150, 160, 175), 0.5),
        "wall": _m("plain", (215, 215, 200), (200, 200, 185), 1.0),
        "ceiling": _m("tiles", (240, 240, 240), (170, 170, 170), 0.6),
        "obstacle": _m("plain", (50, 55, 60), (80, 85, 90), 1.0)}},
    "industrial": {"split": "train", "materials": {
        "floor": _m("noise", (80, 80, 75), (55, 55, 50), 0.5),
        "wall": _m("stripes", (140, 150, 160), (110, 120, 130), 0.1),
        "ceiling": _m("tiles", (120, 120, 125), (70, 70, 75), 1.0),
        "obstacle": _m("stripes", (230, 110, 30), (60, 60, 60), 0.25)}},
    "pastel": {"split": "val", "materials": {
        "floor": _m("checker", (240, 200, 210), (200, 230, 220), 0.4),
        "wall": _m("plain", (245, 205, 215), (230, 190, 200), 1.0),
        "ceiling": _m("plain", (235, 240, 250), (220, 225, 235), 1.0),
        "obstacle": _m("noise", (160, 225, 200), (120, 190, 170), 0.3)}},
    "neon": {"split": "test", "materials": {
        "floor": _m("checker", (15, 15, 20), (40, 220, 90), 0.7),
        "wall": _m("stripes", (30, 20, 45), (230, 40, 200), 0.35),
        "ceiling": _m("tiles", (20, 20, 30), (40, 200, 230), 0.9),
        "obstacle": _m("plain", (250, 240, 40), (230, 220, 30), 1.0)}},
    "sandstone": {"split": "test", "materials": {
        "floor": _m("noise", (200, 160, 100), (160, 120, 70), 0.25),
        "wall": _m("bricks", (215, 175, 120), (175, 135, 90), 0.6),
        "ceiling": _m("noise", (210, 180, 140), (180, 150, 110), 0.5),
        "obstacle": _m("tiles", (180, 80, 50), (120, 50, 30), 0.3)}},
}

CATEGORIES: tuple[str, ...] = tuple(f"{f}/{s}" for f in FAMILIES for s in STYLES)


def category_id(name: str) -> int:
    """Global id of a category name `family/style`."""
    if name not in CATEGORIES:
        raise ValueError(f"unknown scene category {name!r}")
    return CATEGORIES.index(name)


def category_split(name: str) -> str:
    """Split (train/val/test) of a category, given by its style."""
    category_id(name)
    return STYLES[name.split("/")[1]]["split"]


def categories(split: str) -> list[str]:
    """Category names of one split, in global-id order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return [c for c in CATEGORIES if category_split(c) == split]
