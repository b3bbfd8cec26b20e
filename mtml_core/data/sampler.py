"""Environments as a distribution: a seeded sampler of environment specs over everything `spec.py` varies.

`sample_spec(seed, split)` draws a geometry family and its sizes, materials (texture, two colours and a scale per
surface slot), lighting, fog, sky, sensor noise, blur and the camera (height, pitch, roll, yaw range, field of
view). Each draw is one *environment*: its own narrow [lo, hi] ranges, inside which every frame draws again, as a
robot's camera moves through one place. The same seed and split always give the same spec.

Held out (the fair test): colours are drawn in HSV, and hue bands are reserved per split. Training never sees a
surface whose hue lies in the validation band (100°–130°, greens) or the test band (160°–220°, cyans and sky blues);
validation and test environments draw every slot's hue from their own band. Geometry, lighting and camera follow
one distribution for all splits, so a test environment is a new *style* of a known kind of place. The hand-written
test environments (`mtml_core/data/environments`, styles neon and sandstone) come on top and are never sampled.
"""

from __future__ import annotations

import colorsys

import numpy as np

from mtml_core.data.categories import FAMILIES, SLOTS, STYLES, TEXTURES
from mtml_core.data.spec import FAMILY_GEOMETRY, EnvSpec

HUE_BANDS: dict[str, tuple[tuple[float, float], ...]] = {
    "train": ((0.0, 100.0), (130.0, 160.0), (220.0, 360.0)),
    "val": ((100.0, 130.0),),
    "test": ((160.0, 220.0),),
}
SAMPLER_SPLITS = tuple(HUE_BANDS)


def _hue(rng: np.random.Generator, split: str) -> float:
    bands = HUE_BANDS[split]
    widths = np.array([hi - lo for lo, hi in bands])
    lo, hi = bands[int(rng.choice(len(bands), p=widths / widths.sum()))]
    return float(rng.uniform(lo, hi)) / 360.0


def _rgb(h: float, s: float, v: float) -> list[float]:
    return [round(255.0 * c, 1) for c in colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))]


def _material(rng: np.random.Generator, split: str) -> dict:
    """Texture, two colours (one hue, a contrast in value and saturation), scale."""
    h, s, v = _hue(rng, split), rng.uniform(0.0, 0.9), rng.uniform(0.2, 0.95)
    contrast = rng.uniform(0.05, 0.6)
    second = _rgb(h + rng.uniform(-0.03, 0.03), s * rng.uniform(0.6, 1.2), v - contrast if v > 0.55 else v + contrast)
    return {"texture": str(rng.choice(TEXTURES)), "colors": [_rgb(h, s, v), second],
            "scale": round(float(np.exp(rng.uniform(np.log(0.1), np.log(1.5)))), 3)}


def _around(rng: np.random.Generator, lo: float, hi: float, spread: float, bounds: tuple[float, float]) -> list:
    """An environment's own range: a centre drawn in [lo, hi], ± ``spread``, clipped to ``bounds``."""
    c = float(np.clip(rng.uniform(lo, hi), *bounds))
    a = round(max(bounds[0], c - spread), 3)
    return [a, max(a, round(min(bounds[1], c + spread), 3))]


def _geometry(rng: np.random.Generator, family: str) -> dict:
    base, scale = FAMILY_GEOMETRY[family], float(np.exp(rng.uniform(np.log(0.75), np.log(1.35))))
    out = {}
    for key, bounds in (("width", (0.8, 80.0)), ("length", (3.0, 300.0)), ("height", (2.0, 100.0))):
        lo, hi = base[key]
        out[key] = _around(rng, lo * scale, hi * scale, 0.1 * (hi - lo) * scale, bounds)
    lo, hi = base.get("obstacles", (2, 6))
    n = int(rng.integers(0, hi + 3))
    out["obstacles"] = [max(0, n - 2), n + 2]
    size = base.get("obstacle_size", (0.4, 1.2))
    out["obstacle_size"] = _around(rng, size[0], size[1], 0.2 * (size[1] - size[0]), (0.1, 20.0))
    return out


def sample_spec(seed: int, split: str = "train") -> EnvSpec:
    """Environment ``seed`` of the ``split`` distribution (deterministic)."""
    if split not in SAMPLER_SPLITS:
        raise ValueError(f"split: {split!r} is not one of {list(SAMPLER_SPLITS)}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng([0x5EED, SAMPLER_SPLITS.index(split), int(seed)])
    family = str(rng.choice(FAMILIES))
    styles = [name for name, style in STYLES.items() if style["split"] == split]
    yaw = rng.uniform(15.0, 90.0)
    fog = rng.uniform(0.0, 0.05) if rng.random() < 0.4 else 0.0
    grey = rng.uniform(120, 230)
    data = {
        "name": f"random-{split}-{seed}", "split": split, "family": family, "style": str(rng.choice(styles)),
        "materials": {slot: _material(rng, split) for slot in SLOTS},
        "geometry": _geometry(rng, family),
        "camera": {"height": _around(rng, 0.3, 2.0, 0.1, (0.1, 20.0)),
                   "pitch_deg": _around(rng, -12.0, 12.0, rng.uniform(2.0, 8.0), (-45.0, 45.0)),
                   "roll_deg": _around(rng, -5.0, 5.0, rng.uniform(1.0, 6.0), (-30.0, 30.0)),
                   "yaw_deg": [round(-yaw, 2), round(yaw, 2)],
                   "hfov_deg": _around(rng, 50.0, 110.0, 0.0, (20.0, 140.0))},
        "lighting": {"ambient": _around(rng, 0.15, 0.6, 0.05, (0.0, 1.0)),
                     "intensity": _around(rng, 0.3, 1.2, 0.1, (0.0, 2.0)),
                     "elevation_deg": _around(rng, 15.0, 75.0, 10.0, (0.0, 90.0)),
                     "azimuth_deg": [0.0, 360.0],
                     "exposure": _around(rng, 0.75, 1.25, 0.1, (0.2, 3.0))},
        "fog": {"density": [round(fog, 4), round(fog * 1.5, 4)],
                "color": [round(grey + rng.uniform(-15, 15), 1) for _ in range(3)]},
        "noise": _around(rng, 0.5, 5.0, 1.0, (0.0, 50.0)),
        "blur": _around(rng, 0.0, 1.0, 0.2, (0.0, 5.0)),
        "sky": {"top": _rgb(rng.uniform(0.55, 0.65), rng.uniform(0.2, 0.6), rng.uniform(0.6, 0.95)),
                "horizon": _rgb(rng.uniform(0.55, 0.65), rng.uniform(0.0, 0.2), rng.uniform(0.75, 1.0))},
    }
    return EnvSpec.from_dict(data)
