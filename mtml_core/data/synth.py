"""The built-in synthetic world: procedural Manhattan scenes with exact ground truth.

`render_frame(spec, seed, size)` draws a scene of the spec's family and a camera from the spec's
ranges (deterministic in (spec, seed)), ray-casts it (`raycast`), and shades it: procedural
textures from hit coordinates, Lambert shading (ambient + directional light), fog, blur and
sensor noise. Depth is metric z-depth, normals are camera-frame unit vectors, the three
Manhattan vanishing directions are the world axes seen from the camera (canonical form).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mtml_core.data import raycast
from mtml_core.data.categories import SLOTS, category_id
from mtml_core.data.geometry import camera_rotation, intrinsics, vps_from_rotation
from mtml_core.data.sample import Frame
from mtml_core.data.scene import CEILING, FLOOR, WALL, Layout, build_layout
from mtml_core.data.spec import EnvSpec
from mtml_core.data.textures import pattern

DEFAULT_SIZE = (96, 128)
SKY_FOG_DISTANCE = 150.0  # metres of fog in front of the sky


@dataclass
class Scene:
    """Everything one frame is rendered from (geometry, camera, appearance draws)."""

    spec: EnvSpec
    layout: Layout
    origin: np.ndarray
    R: np.ndarray
    K: np.ndarray
    size: tuple[int, int]
    light_dir: np.ndarray
    ambient: float
    intensity: float
    exposure: float
    fog: float
    noise: float
    blur: float
    tint: np.ndarray
    noise_offset: float


def _draw(spec: EnvSpec, key: str, rng: np.random.Generator) -> float:
    lo, hi = spec.get(key)
    if isinstance(lo, int) and isinstance(hi, int):
        return int(rng.integers(lo, hi + 1))
    return float(rng.uniform(lo, hi))


def sample_scene(spec: EnvSpec, seed: int, size: tuple[int, int] = DEFAULT_SIZE) -> Scene:
    """Draw the scene and camera of frame `seed` of environment `spec` (deterministic)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng([spec.digest(), int(seed)])
    geometry = {k: _draw(spec, f"geometry.{k}", rng) for k in
                ("width", "length", "height", "obstacles", "obstacle_size")}
    layout = build_layout(spec.family, rng, geometry)
    height = min(_draw(spec, "camera.height", rng), layout.ceiling - 0.3)
    yaw, pitch, roll, hfov = (_draw(spec, f"camera.{k}", rng) for k in ("yaw_deg", "pitch_deg", "roll_deg", "hfov_deg"))
    ambient, intensity, elev, azim, exposure = (_draw(spec, f"lighting.{k}", rng) for k in
                                                ("ambient", "intensity", "elevation_deg", "azimuth_deg", "exposure"))
    fog, noise, blur = _draw(spec, "fog.density", rng), _draw(spec, "noise", rng), _draw(spec, "blur", rng)
    e, a = np.radians(elev), np.radians(azim)
    n_faces = 6 + 6 * len(layout.boxes)
    tint = np.ones((n_faces, 3))
    tint[:6] *= rng.uniform(0.92, 1.08, (6, 1))
    box_tint = rng.uniform(0.8, 1.15, (len(layout.boxes), 1)) * rng.uniform(0.93, 1.07, (len(layout.boxes), 3))
    tint[6:] = np.repeat(box_tint, 6, axis=0)
    return Scene(spec, layout, np.array([*layout.camera_xy, height]), camera_rotation(yaw, pitch, roll),
                 intrinsics(hfov, size), tuple(size),
                 np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)]),
                 ambient, intensity, exposure, fog, noise, blur, tint, float(rng.random()))


def _face_slots(layout: Layout) -> np.ndarray:
    container = np.array([WALL, WALL, WALL, WALL, FLOOR, CEILING])
    return np.concatenate([container, np.repeat(layout.box_slots, 6)]).astype(np.int64)


def _noise_bank() -> np.ndarray:
    """A fixed bank of standard-normal samples; frames read windows of it (much faster than drawing)."""
    global _NOISE
    if _NOISE is None:
        _NOISE = np.random.default_rng(20240607).standard_normal(1 << 20, dtype=np.float32)
    return _NOISE


_NOISE: np.ndarray | None = None


def render_scene(scene: Scene) -> Frame:
    """Ray-cast and shade a sampled scene into a Frame with exact ground truth."""
    lay, R, K, o, spec = scene.layout, scene.R, scene.K, scene.origin, scene.spec
    h, w = scene.size
    d = raycast.ray_dirs(K, R, scene.size)
    t, face = raycast.cast(d, o, lay.lo, lay.hi, lay.boxes, R, K)
    n_boxes = len(lay.boxes)
    nf = 6 + 6 * n_boxes
    # per-face tables, the last row (index -1) is the sky
    normals_w = np.concatenate([raycast.face_normals(n_boxes), np.full((1, 3), np.nan)])
    axes = np.append(raycast.face_axes(n_boxes), 0)
    slots = np.append(_face_slots(lay), -1)
    shade = scene.ambient + scene.intensity * np.maximum(normals_w[:nf] @ scene.light_dir, 0.0)
    light = scene.tint * (shade * scene.exposure)[:, None]
    materials = spec.materials()
    ca = np.array([materials[n]["colors"][0] for n in SLOTS])
    cb = np.array([materials[n]["colors"][1] for n in SLOTS])
    top, horizon = (np.asarray(spec.get(f"sky.{k}"), np.float64) for k in ("top", "horizon"))
    base = np.concatenate([light * ca[slots[:nf]], horizon[None]]).astype(np.float32)
    scale = np.concatenate([light * (cb - ca)[slots[:nf]], (top - horizon)[None]]).astype(np.float32)

    with np.errstate(invalid="ignore"):
        p = [np.float32(o[k]) + t * d[k] for k in range(3)]
    ax = np.take(axes, face)
    u = np.where(ax == 0, p[1], p[0]).ravel()
    v = np.where(ax == 2, p[1], p[2]).ravel()
    value = np.empty(h * w, np.float32)
    slot_px = np.take(slots, face).ravel()
    for s, name in enumerate(SLOTS):
        idx = np.flatnonzero(slot_px == s)
        if idx.size:
            mat = materials[name]
            value[idx] = pattern(mat["texture"], u[idx], v[idx], mat["scale"])
    sky = np.flatnonzero(slot_px < 0)
    if sky.size:
        dn = [dk.ravel()[sky] for dk in d]
        value[sky] = np.sqrt(np.clip(dn[2] / np.sqrt(dn[0] ** 2 + dn[1] ** 2 + dn[2] ** 2), 0.0, 1.0))
    rgb = np.take(base, face, axis=0) + np.take(scale, face, axis=0) * value.reshape(h, w, 1)
    if scene.fog > 0:
        keep = np.exp(np.float32(-scene.fog) * np.minimum(t, np.float32(SKY_FOG_DISTANCE)))[..., None]
        fog_color = np.asarray(spec.get("fog.color"), np.float32)
        rgb = (rgb - fog_color) * keep + fog_color
    if scene.blur > 0.05:
        rgb = cv2.GaussianBlur(rgb, (0, 0), scene.blur)
    if scene.noise > 0:
        bank, n = _noise_bank(), rgb.size
        start = int(scene.noise_offset * max(1, bank.size - n))
        window = bank[start:start + n] if n <= bank.size else np.resize(np.roll(bank, -start), n)
        rgb = rgb + window.reshape(rgb.shape) * np.float32(scene.noise)
    rgb = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)

    normals_c = (normals_w @ R).astype(np.float32)  # R^T n for every face
    vp_dirs, vp_px, vp_inf = vps_from_rotation(R, K)
    pose = np.eye(4, dtype=np.float32)
    pose[:3, :3], pose[:3, 3] = R, o
    depth = t.copy()
    depth[face < 0] = np.nan
    return Frame(rgb=rgb, depth=depth, normals=np.take(normals_c, face, axis=0),
                 vp_dirs=vp_dirs, vp_pixels=vp_px, vp_at_infinity=vp_inf,
                 category=category_id(spec.category_name), category_name=spec.category_name,
                 K=K, pose=pose, env=spec.name)


def render_frame(spec: EnvSpec, seed: int, size: tuple[int, int] = DEFAULT_SIZE) -> Frame:
    """Frame `seed` of environment `spec` at (H, W) `size`; identical for identical (spec, seed, size)."""
    return render_scene(sample_scene(spec, seed, size))

