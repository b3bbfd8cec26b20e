"""Environment specs: a domain of the synthetic world as validated data (YAML/JSON).

A spec names a geometry family and an appearance style (together: the scene category of its
frames), optional material overrides, and [lo, hi] ranges from which every frame draws its
geometry, camera, lighting, fog, sensor noise and blur. Unknown keys and out-of-range values
raise ValueError naming the key.
"""

from __future__ import annotations

import copy
import functools
import json
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from mtml_core.data.categories import FAMILIES, SLOTS, SPLITS, STYLES, TEXTURES

# key -> (allowed lower bound, allowed upper bound, integer?) for every [lo, hi] range.
RANGES: dict[str, tuple[float, float, bool]] = {
    "geometry.width": (0.8, 80.0, False),
    "geometry.length": (3.0, 300.0, False),
    "geometry.height": (2.0, 100.0, False),
    "geometry.obstacles": (0, 60, True),
    "geometry.obstacle_size": (0.1, 20.0, False),
    "camera.height": (0.1, 20.0, False),
    "camera.pitch_deg": (-45.0, 45.0, False),
    "camera.roll_deg": (-30.0, 30.0, False),
    "camera.yaw_deg": (-180.0, 180.0, False),
    "camera.hfov_deg": (20.0, 140.0, False),
    "lighting.ambient": (0.0, 1.0, False),
    "lighting.intensity": (0.0, 2.0, False),
    "lighting.elevation_deg": (0.0, 90.0, False),
    "lighting.azimuth_deg": (-360.0, 360.0, False),
    "lighting.exposure": (0.2, 3.0, False),
    "fog.density": (0.0, 1.0, False),
    "noise": (0.0, 50.0, False),
    "blur": (0.0, 5.0, False),
}
COLORS = ("fog.color", "sky.top", "sky.horizon")

DEFAULTS: dict = {
    "geometry": {"width": [3.0, 5.0], "length": [15.0, 30.0], "height": [2.6, 3.5], "obstacles": [2, 6],
                 "obstacle_size": [0.4, 1.2]},
    "camera": {"height": [1.2, 1.7], "pitch_deg": [-8.0, 8.0], "roll_deg": [-4.0, 4.0],
               "yaw_deg": [-20.0, 20.0], "hfov_deg": [60.0, 80.0]},
    "lighting": {"ambient": [0.35, 0.5], "intensity": [0.5, 0.8], "elevation_deg": [30.0, 70.0],
                 "azimuth_deg": [0.0, 360.0], "exposure": [0.9, 1.1]},
    "fog": {"density": [0.0, 0.02], "color": [200, 200, 205]},
    "noise": [1.0, 3.0],
    "blur": [0.0, 0.6],
    "sky": {"top": [90, 140, 210], "horizon": [200, 215, 230]},
}
TOP_KEYS = ("name", "split", "family", "style", "materials", *DEFAULTS)
MATERIAL_KEYS = ("texture", "colors", "scale")


@dataclass(frozen=True)
class EnvSpec:
    """A validated environment spec; `params` holds the full nested dict (defaults filled in)."""

    params: dict
    _materials: dict = field(init=False, repr=False, compare=False)
    _digest: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mats = copy.deepcopy(STYLES[self.params["style"]]["materials"])
        for slot, over in self.params.get("materials", {}).items():
            mats[slot].update(over)
        object.__setattr__(self, "_materials", mats)
        object.__setattr__(self, "_digest", zlib.crc32(json.dumps(self.params, sort_keys=True).encode()))

    @property
    def name(self) -> str:
        return self.params["name"]

    @property
    def split(self) -> str:
        return self.params["split"]

    @property
    def family(self) -> str:
        return self.params["family"]

    @property
    def style(self) -> str:
        return self.params["style"]

    @property
    def category_name(self) -> str:
        return f"{self.family}/{self.style}"

    def get(self, key: str) -> object:
        """A value by dotted key, e.g. `camera.hfov_deg`."""
        node = self.params
        for part in key.split("."):
            node = node[part]
        return node

    def materials(self) -> dict[str, dict]:
        """Materials per slot: the style's, with this spec's overrides applied (do not modify)."""
        return self._materials

    def digest(self) -> int:
        """A stable 32-bit hash of the spec (seeds the renderer together with the frame seed)."""
        return self._digest

    def to_dict(self) -> dict:
        return copy.deepcopy(self.params)

    @classmethod
    def from_dict(cls, data: dict) -> EnvSpec:
        """Validate a spec dict (unknown keys, types, ranges) and fill defaults."""
        return cls(_validate(data))


def _fail(key: str, why: str) -> None:
    raise ValueError(f"environment spec key {key!r}: {why}")


def _check_keys(node: object, allowed: tuple, prefix: str) -> None:
    if not isinstance(node, dict):
        _fail(prefix.rstrip(".") or "<root>", f"expected a mapping, got {type(node).__name__}")
    for key in node:
        if key not in allowed:
            _fail(prefix + str(key), f"unknown key (allowed: {', '.join(allowed)})")


def _check_range(key: str, value: object, lo: float, hi: float, integer: bool) -> list:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        _fail(key, f"expected a number or [lo, hi], got {value!r}")
    a, b = value
    if integer and (a != int(a) or b != int(b)):
        _fail(key, f"expected integers, got {value!r}")
    if not (lo <= a <= b <= hi):
        _fail(key, f"range {list(value)} outside [{lo}, {hi}] or lo > hi")
    return [int(a), int(b)] if integer else [float(a), float(b)]


def _check_color(key: str, value: object) -> list:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, (int, float)) and 0 <= v <= 255 for v in value)):
        _fail(key, f"expected an RGB triple in [0, 255], got {value!r}")
    return [float(v) for v in value]


def _validate(data: dict) -> dict:
    _check_keys(data, TOP_KEYS, "")
    for key in ("name", "split", "family", "style"):
        if key not in data:
            _fail(key, "missing")
    if not isinstance(data["name"], str) or not data["name"]:
        _fail("name", "expected a non-empty string")
    for key, allowed in (("split", SPLITS), ("family", FAMILIES), ("style", tuple(STYLES))):
        if data[key] not in allowed:
            _fail(key, f"{data[key]!r} not one of {allowed}")
    out = copy.deepcopy(DEFAULTS)
    for group, default in DEFAULTS.items():
        if group not in data:
            continue
        if isinstance(default, dict):
            _check_keys(data[group], tuple(default), group + ".")
            out[group].update(copy.deepcopy(data[group]))
        else:
            out[group] = copy.deepcopy(data[group])
    for key, (lo, hi, integer) in RANGES.items():
        group, _, leaf = key.partition(".")
        if leaf:
            out[group][leaf] = _check_range(key, out[group][leaf], lo, hi, integer)
        else:
            out[group] = _check_range(key, out[group], lo, hi, integer)
    for key in COLORS:
        group, leaf = key.split(".")
        out[group][leaf] = _check_color(key, out[group][leaf])
    materials = data.get("materials", {})
    _check_keys(materials, SLOTS, "materials.")
    for slot, mat in materials.items():
        _check_keys(mat, MATERIAL_KEYS, f"materials.{slot}.")
        if "texture" in mat and mat["texture"] not in TEXTURES:
            _fail(f"materials.{slot}.texture", f"{mat['texture']!r} not one of {TEXTURES}")
        if "colors" in mat:
            if not isinstance(mat["colors"], (list, tuple)) or len(mat["colors"]) != 2:
                _fail(f"materials.{slot}.colors", "expected two RGB triples")
            for i, c in enumerate(mat["colors"]):
                _check_color(f"materials.{slot}.colors[{i}]", c)
        if "scale" in mat:
            _check_range(f"materials.{slot}.scale", mat["scale"], 0.02, 20.0, False)
    out.update(name=data["name"], split=data["split"], family=data["family"], style=data["style"],
               materials=copy.deepcopy(materials))
    return out


def load_spec(path: str | Path) -> EnvSpec:
    """Read and validate one spec file (YAML or JSON)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"environment spec not found: {path}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"environment spec {path} is not valid YAML/JSON: {err}") from None
    try:
        return EnvSpec.from_dict(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


@functools.cache
def _builtin() -> tuple[EnvSpec, ...]:
    folder = resources.files("mtml_core.data") / "environments"
    return tuple(load_spec(Path(str(f))) for f in sorted(folder.iterdir(), key=lambda f: f.name)
                 if f.name.endswith(".yaml"))


def builtin_specs() -> dict[str, EnvSpec]:
    """All built-in environments (mtml_core/data/environments/*.yaml), by name."""
    return {s.name: s for s in _builtin()}


def builtin_envs(split: str | None = None) -> list[EnvSpec]:
    """Built-in environments of one split (all if None), sorted by name."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return [s for s in builtin_specs().values() if split is None or s.split == split]


def get_env(name: str) -> EnvSpec:
    """A built-in environment by name, or a spec file path."""
    specs = builtin_specs()
    if name in specs:
        return specs[name]
    if Path(name).is_file():
        return load_spec(name)
    raise ValueError(f"unknown environment {name!r}; built-in: {', '.join(specs)}")


def category_spec(category: str, split: str | None = None) -> EnvSpec:
    """The spec that renders frames of one scene category `family/style` (default ranges)."""
    family, _, style = category.partition("/")
    split = split or STYLES.get(style, {}).get("split", "train")
    return EnvSpec.from_dict({"name": f"category:{category}", "split": split, "family": family,
                              "style": style, "geometry": FAMILY_GEOMETRY.get(family, {})})


# Default geometry per family for category rendering (environment specs set their own).
FAMILY_GEOMETRY: dict[str, dict] = {
    "corridor": {"width": [1.8, 3.0], "length": [15.0, 40.0], "height": [2.5, 3.2], "obstacles": [1, 5]},
    "room": {"width": [3.5, 6.0], "length": [4.0, 7.0], "height": [2.5, 3.2], "obstacles": [2, 6]},
    "hall": {"width": [10.0, 18.0], "length": [15.0, 30.0], "height": [5.0, 9.0], "obstacles": [4, 12],
             "obstacle_size": [0.4, 0.9]},
    "street": {"width": [8.0, 16.0], "length": [60.0, 150.0], "height": [8.0, 25.0], "obstacles": [2, 8]},
    "warehouse": {"width": [2.5, 4.0], "length": [20.0, 40.0], "height": [6.0, 10.0], "obstacles": [2, 6]},
    "plaza": {"width": [20.0, 40.0], "length": [20.0, 40.0], "height": [6.0, 20.0], "obstacles": [3, 10],
              "obstacle_size": [0.8, 3.0]},
}
