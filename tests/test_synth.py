"""Synthetic world: determinism, environment statistics, built-in specs, categories, validation."""

import itertools

import numpy as np
import pytest
import torch

from mtml_core.data.categories import CATEGORIES, FAMILIES, categories, category_split
from mtml_core.data.geometry import camera_rotation, canonical_vps
from mtml_core.data.spec import EnvSpec, builtin_envs, get_env, load_spec
from mtml_core.data.synth import render_frame

N_STATS = 24


def _features(frame):
    rgb = frame.rgb.astype(np.float32)
    h = rgb.shape[0] // 3
    bands = np.concatenate([rgb[i * h:(i + 1) * h].mean((0, 1)) for i in range(3)])
    g = rgb.mean(-1)
    return np.r_[bands, rgb.std((0, 1)), np.abs(np.diff(g, axis=1)).mean(), np.abs(np.diff(g, axis=0)).mean()]


@pytest.fixture(scope="module")
def env_features():
    return {e.name: np.stack([_features(render_frame(e, s, (48, 64))) for s in range(N_STATS)])
            for e in builtin_envs()}


def test_same_spec_and_seed_give_identical_frames():
    spec = get_env("street_brick")
    a, b = render_frame(spec, 7), render_frame(spec, 7)
    for field in ("rgb", "depth", "normals", "vp_dirs", "vp_pixels", "K", "pose"):
        assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=True), field
    c = render_frame(spec, 8)
    assert not np.array_equal(a.rgb, c.rgb)
    # a spec that differs in one value renders differently for the same seed
    other = EnvSpec.from_dict({**spec.to_dict(), "noise": [9.0, 10.0]})
    assert not np.array_equal(render_frame(other, 7).rgb, a.rgb)


def test_different_environments_have_measurably_different_image_statistics(env_features):
    for a, b in itertools.combinations(env_features, 2):
        fa, fb = env_features[a], env_features[b]
        z = np.abs(fa.mean(0) - fb.mean(0)) / np.sqrt((fa.var(0, ddof=1) + fb.var(0, ddof=1)) / N_STATS)
        assert z.max() > 3.0, (a, b, z)


def test_test_environments_differ_in_appearance_and_geometry_from_training():
    def geometry_stats(spec):
        frames = [render_frame(spec, s, (24, 32)) for s in range(N_STATS)]
        hfov = [np.degrees(2 * np.arctan(16 / f.K[0, 0])) for f in frames]
        return np.array(hfov), np.array([f.pose[2, 3] for f in frames])

    train = {e.name: (geometry_stats(e), e) for e in builtin_envs("train")}
    for test_env in builtin_envs("test"):
        (hfov, cam_h) = geometry_stats(test_env)
        for (t_hfov, t_cam_h), t_env in train.values():
            assert hfov.min() > t_hfov.max() or cam_h.max() < t_cam_h.min(), (test_env.name, t_env.name)
            assert test_env.style != t_env.style  # no training palette/texture set


def test_builtin_environments_and_categories():
    envs = builtin_envs()
    assert len(envs) >= 24
    by_split = {s: builtin_envs(s) for s in ("train", "val", "test")}
    assert all(by_split.values())
    assert {e.family for e in by_split["train"]} == set(FAMILIES)
    assert len(FAMILIES) >= 6 and len(CATEGORIES) >= 40
    split_sets = {s: set(categories(s)) for s in ("train", "val", "test")}
    assert sum(map(len, split_sets.values())) == len(CATEGORIES)
    for a, b in itertools.combinations(split_sets.values(), 2):
        assert not a & b
    for split, specs in by_split.items():  # environments only show categories of their own split
        assert all(category_split(e.category_name) == split for e in specs)


def test_frame_fields_and_types():
    f = render_frame(get_env("plaza_concrete"), 2, (30, 40))
    assert f.rgb.shape == (30, 40, 3) and f.rgb.dtype == np.uint8
    assert f.depth.dtype == np.float32 and f.normals.dtype == np.float32
    sky = ~np.isfinite(f.depth)
    assert sky.any() and np.isnan(f.normals[sky]).all()  # sky: invalid, never 0
    assert (f.depth[~sky] > 0).all()
    assert f.category_name == "plaza/concrete" and CATEGORIES[f.category] == f.category_name
    assert f.env == "plaza_concrete" and f.K.shape == (3, 3) and f.pose.shape == (4, 4)


@pytest.mark.parametrize("change,key", [
    ({"camera": {"hfvo_deg": [60, 70]}}, "camera.hfvo_deg"),
    ({"colour": 1}, "colour"),
    ({"camera": {"hfov_deg": [60, 170]}}, "camera.hfov_deg"),
    ({"geometry": {"width": [5.0, 2.0]}}, "geometry.width"),
    ({"geometry": {"obstacles": [1.5, 3]}}, "geometry.obstacles"),
    ({"fog": {"color": [0, 0, 300]}}, "fog.color"),
    ({"family": "castle"}, "family"),
    ({"materials": {"wall": {"texture": "marble"}}}, "materials.wall.texture"),
    ({"materials": {"roof": {}}}, "materials.roof"),
    ({"noise": "loud"}, "noise"),
])
def test_spec_validation_names_the_bad_key(change, key):
    data = {"name": "x", "split": "train", "family": "room", "style": "wood", **change}
    with pytest.raises(ValueError, match=key.replace(".", r"\.").replace("[", r"\[")):
        EnvSpec.from_dict(data)


def test_spec_files_round_trip_and_errors(tmp_path):
    spec = get_env("room_wood")
    path = tmp_path / "room.yaml"
    path.write_text(__import__("yaml").safe_dump(spec.to_dict()))
    assert load_spec(path).to_dict() == spec.to_dict()
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="nowhere"):
        get_env("nowhere")


def test_canonical_vps_rules_numpy_and_torch():
    rng = np.random.default_rng(0)
    for _ in range(20):
        R = camera_rotation(*rng.uniform([-180, -40, -30], [180, 40, 30]))
        raw = np.stack([R[2], R[0], R[1]]) * rng.choice([-1, 1], (3, 1)) * rng.uniform(0.5, 2, (3, 1))
        raw = raw[[0, 2, 1]] if rng.random() < 0.5 else raw
        c = canonical_vps(raw)
        assert np.allclose(np.linalg.norm(c, axis=1), 1)
        assert c[0, 1] <= 0 and c[1, 2] >= 0 and c[2, 2] >= 0 and c[1, 2] >= c[2, 2]
        assert np.allclose(np.abs(c[0]), np.abs(R[2]))
        assert np.allclose(canonical_vps(c), c)  # idempotent
        assert np.allclose(canonical_vps(torch.tensor(raw)).numpy(), c)
    batch = np.stack([np.eye(3)[[1, 0, 2]] * -1] * 4)
    out = canonical_vps(batch)
    assert out.shape == (4, 3, 3)
    assert np.allclose(out[0], [[0, -1, 0], [0, 0, 1], [1, 0, 0]])
