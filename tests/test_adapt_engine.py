"""Online adaptation engine: label validation, depth → normals, adaptation on an unseen environment, rejection of
worse or failed adaptations, atomic swaps under concurrent inference, environment profiles and recognition."""

import json
import threading
import time

import numpy as np
import pytest
import torch
from runtime_helpers import SIZE, env_frames, export_small

from mtml_core import preprocess
from mtml_core.adapt import AdaptationEngine, EngineConfig, check_name, normals_from_depth
from mtml_core.adapt.buffer import SupportBuffer
from mtml_core.adapt.engine import ADAM_LR, MAX_STEPS
from mtml_core.adapt.labels import check_depth
from mtml_core.data.geometry import intrinsics
from mtml_core.losses import task_loss

UNSEEN = "corridor_neon"  # a test-split built-in environment
OTHER = "plaza_sandstone"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    export_small(out)
    return out


@pytest.fixture
def engine(export, tmp_path):
    return AdaptationEngine.from_export(export, "onnxruntime", profiles_dir=tmp_path / "profiles",
                                        config=EngineConfig(lr=0.1, steps=10))


def add(engine, env, frames, class_names=None):
    for i, f in enumerate(frames):
        engine.add_frame(env, f.rgb, depth=f.depth, normals=f.normals, K=f.K,
                         class_name=class_names[i % len(class_names)] if class_names else f.env, vp_dirs=f.vp_dirs)


def query_losses(engine, frames):
    preds = engine.infer_batch(np.stack([f.rgb for f in frames]))
    out = {"depth": torch.from_numpy(np.stack([p.depth for p in preds]))[:, None],
           "normals": torch.from_numpy(np.stack([p.normals for p in preds])).permute(0, 3, 1, 2),
           "vp": torch.from_numpy(np.stack([p.vp_dirs for p in preds]))}
    return {t: float(task_loss(t, out[t], preprocess.frame_labels(t, frames))) for t in out}


# -- depth → normals ------------------------------------------------------------------------------------------------
def test_normals_from_depth_of_a_plane_is_exact():
    K = intrinsics(70.0, (40, 60))
    v, u = np.mgrid[0:40, 0:60].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T
    n = np.array([0.3, -0.8, -0.5])
    n /= np.linalg.norm(n)
    depth = (-3.0 / (rays @ n)).astype(np.float32)  # plane n·p = -3 (facing the camera)
    depth[10:12, 20:30] = np.nan
    got = normals_from_depth(depth, K)
    ok = np.isfinite(got).all(-1)
    assert ok.mean() > 0.95 and not ok[10:12, 20:30].any()
    np.testing.assert_allclose(got[ok], np.broadcast_to(n, got[ok].shape), atol=1e-4)


def test_normals_from_depth_match_rendered_normals():
    for f in env_frames(UNSEEN, range(2), (96, 128)):
        n = normals_from_depth(f.depth, f.K)
        ok = np.isfinite(n).all(-1) & np.isfinite(f.normals).all(-1)
        cos = np.clip((n[ok] * f.normals[ok]).sum(-1), -1, 1)
        assert ok.mean() > 0.9 and np.median(np.degrees(np.arccos(cos))) < 1.0
        assert (np.degrees(np.arccos(cos)) < 5).mean() > 0.9


# -- support frames ---------------------------------------------------------------------------------------------
def test_bad_frames_are_rejected_and_leave_the_buffer_alone(engine):
    f = env_frames(UNSEEN, [0], (96, 128))[0]
    assert engine.add_frame("lab", f.rgb, depth=f.depth, K=f.K, vp_dirs=f.vp_dirs, class_name="lab") == 1
    bad_normals = f.normals * 2
    bad = [
        ({"rgb": f.rgb.astype(np.float32)}, "rgb"),
        ({"depth": f.depth[:-1]}, "depth: expected shape"),
        ({"depth": np.where(np.arange(f.depth.size).reshape(f.depth.shape) == 5, np.inf, f.depth)}, "inf"),
        ({"depth": -f.depth}, "negative"),
        ({"depth": (f.depth * 1000).astype(np.uint16)}, "millimetres"),
        ({"depth": f.depth * 1000}, "max_depth .*millimetres"),
        ({"depth": np.full_like(f.depth, 1e-42)}, "no plausible depth.*min_depth"),
        ({"depth": np.full_like(f.depth, 0.005)}, "no plausible depth"),
        ({"depth": np.full_like(f.depth, np.nan)}, "valid pixels"),
        ({"normals": bad_normals}, "unit"),
        ({"vp_dirs": np.full((3, 3), np.nan, np.float32)}, "NaN"),
        ({"vp_dirs": f.vp_dirs * 3}, "unit"),
        ({"vp_dirs": np.repeat(f.vp_dirs[:1], 3, 0)}, "near-orthogonal"),
        ({"vp_dirs": np.stack([f.vp_dirs[0], f.vp_dirs[1], f.vp_dirs[1] * 0.9 + f.vp_dirs[2] * 0.1])
          / np.linalg.norm(np.stack([f.vp_dirs[0], f.vp_dirs[1], f.vp_dirs[1] * 0.9 + f.vp_dirs[2] * 0.1]), axis=1,
                           keepdims=True)}, "near-orthogonal"),
        ({"vp_dirs": np.concatenate([f.vp_dirs[:2], np.full((1, 3), np.nan, np.float32)])}, "rows 1 and 2"),
        ({"vp_dirs": np.concatenate([np.full((1, 3), np.nan, np.float32), f.vp_dirs[1:]])}, "vertical"),
        ({"K": np.eye(3, dtype=np.float32) * -1}, "focal"),
        ({"K": np.where(np.eye(3) == 1, [1e308, 1e308, 1.0], f.K)}, "float32's range"),  # finite in float64
        ({"normals": np.full(f.normals.shape, 1e300)}, "float32's range"),
        ({"K": f.K * np.array([[1, 1, 10], [1, 1, 10], [1, 1, 1]], np.float32)}, "principal point"),
        ({"class_name": ""}, "class_name"),
        ({"class_name": 3}, "class_name"),
        ({"class_name": "a\nb"}, "class_name"),
        ({"class_name": "x" * 65}, "class_name"),
        ({"class_name": "\ud800"}, "class_name"),
    ]
    for change, message in bad:
        kwargs = {"rgb": f.rgb, "depth": f.depth, "K": f.K, "vp_dirs": f.vp_dirs, **change}
        with pytest.raises(ValueError, match=message):
            engine.add_frame("lab", **kwargs)
    with pytest.raises(ValueError, match="environment name"):
        engine.add_frame("../etc", f.rgb)
    assert engine.buffer.count("lab") == 1


def test_buffer_is_bounded(export):
    engine = AdaptationEngine.from_export(export, "onnxruntime", config=EngineConfig(buffer_size=3))
    frames = env_frames(UNSEEN, range(5))
    sizes = [engine.add_frame("hall", f.rgb, depth=f.depth) for f in frames]
    assert sizes == [1, 2, 3, 3, 3]
    kept = engine.buffer.frames("hall")
    expected = preprocess.to_tensor(frames[-1].rgb, SIZE)[0]
    assert torch.equal(kept[-1].image, expected)  # the newest stays, the oldest went


@pytest.mark.parametrize("method, coverage", [("difference", 0.8), ("pseudo", 0.2)])
def test_normals_are_derived_from_depth_when_missing(export, method, coverage):
    # "difference": per-pixel at the frame's resolution (exact depth); "pseudo" (the default, for sensor depth):
    # plane fits at the label resolution, NaN where no plane fits (edges), so less coverage but still exact on planes
    engine = AdaptationEngine.from_export(export, "onnxruntime", config=EngineConfig(normals_from=method))
    f = env_frames(UNSEEN, [3])[0]
    engine.add_frame("derive", f.rgb, depth=f.depth, K=f.K)
    stored = engine.buffer.frames("derive")[0].normals
    want = preprocess.frame_labels("normals", [f])[0]
    ok = torch.isfinite(stored).all(0) & torch.isfinite(want).all(0)
    cos = (stored * want).sum(0)[ok]
    assert ok.float().mean() > coverage and (cos > 0.99).float().mean() > 0.85


def test_default_normals_label_is_pseudo_ground_truth_of_noisy_depth(export):
    # a Kinect-like noisy plane: the per-pixel difference is dominated by noise; the default plane fits are not
    engine = AdaptationEngine.from_export(export, "onnxruntime")
    assert engine.config.normals_from == "pseudo"
    h, w = 240, 320
    K = intrinsics(60.0, (h, w))
    rays = np.linalg.solve(K, np.stack([*np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5), np.ones((h, w))],
                                       0).reshape(3, -1)).reshape(3, h, w)
    n_true = np.array([0.0, -0.6, -0.8])  # a floor-and-wall-like plane facing the camera
    depth = (-2.0 / np.tensordot(n_true, rays, 1)).astype(np.float32)  # n . p = 2 (p = z * ray)
    rng = np.random.default_rng(0)
    noisy = np.round((depth + rng.normal(0, 0.01, depth.shape)) * 1000) / 1000  # 1 cm noise, mm steps
    rgb = np.full((h, w, 3), 128, np.uint8)
    engine.add_frame("kinect", rgb, depth=noisy.astype(np.float32), K=K)
    got = engine.buffer.frames("kinect")[0].normals.numpy().transpose(1, 2, 0)
    ok = np.isfinite(got).all(-1)
    err = np.degrees(np.arccos(np.clip(got[ok] @ n_true, -1, 1)))
    assert ok.mean() > 0.8 and np.median(err) < 6.0
    diff = normals_from_depth(noisy.astype(np.float32), K)  # what the node derived before
    d_ok = np.isfinite(diff).all(-1)
    assert np.median(np.degrees(np.arccos(np.clip(diff[d_ok] @ n_true, -1, 1)))) > 3 * np.median(err)


# -- adaptation -------------------------------------------------------------------------------------------------
def test_adaptation_lowers_query_error_of_an_unseen_environment(engine):
    support, query = env_frames(UNSEEN, range(10)), env_frames(UNSEEN, range(100, 110))
    add(engine, "neon", support)
    before = query_losses(engine, query)
    result = engine.adapt("neon")
    assert result.accepted, result.reason
    assert set(result.tasks) == {"class", "depth", "normals", "vp"} and result.steps == 10
    for task, s in result.tasks.items():
        assert s.shots == 10 and s.loss_after < s.loss_initial, task
    after = query_losses(engine, query)
    assert after["depth"] < 0.8 * before["depth"], (before, after)
    assert sum(after.values()) < sum(before.values())
    pred = engine.infer(query[0].rgb)
    assert pred.env == "neon" and pred.class_names == ("corridor_neon",) and pred.class_confidence == 1.0


def test_adam_depth_optimizer_adapts_depth_with_adam_and_the_rest_with_sgd(export):
    config = EngineConfig(steps=10, depth_optimizer="adam")
    assert config.rate("depth") == ADAM_LR and config.optimizer_of("normals") == "sgd"
    assert config.rate("normals", {"task_inner_lr": {"normals": 0.02}}) == 0.02
    with pytest.raises(ValueError, match="depth_optimizer must be one of"):
        EngineConfig(depth_optimizer="lbfgs")
    support = env_frames(UNSEEN, range(10))
    engines = {opt: AdaptationEngine.from_export(export, "onnxruntime", config=EngineConfig(
        steps=10, lr={"depth": 0.003, "normals": 0.1, "vp": 0.1, "class": 0.1}, depth_optimizer=opt))
        for opt in ("sgd", "adam")}
    losses = {}
    for opt, eng in engines.items():
        add(eng, "neon", support)
        result = eng.adapt("neon")
        assert result.accepted, result.reason
        losses[opt] = {t: s.loss_after for t, s in result.tasks.items()}
    # at the same small rate Adam's per-parameter steps move the depth head much further than SGD's
    assert losses["adam"]["depth"] < losses["sgd"]["depth"], losses
    assert losses["adam"]["normals"] == pytest.approx(losses["sgd"]["normals"], rel=1e-5), losses  # SGD for both


def test_class_adaptation_separates_two_environments(engine):
    engine.config.lr = 1.0  # random features differ little between frames: larger and more steps than a trained model
    add(engine, "site", env_frames(UNSEEN, range(5)))
    add(engine, "site", env_frames(OTHER, range(5)))
    result = engine.adapt("site", steps=30, tasks=["class"])
    stats = result.tasks["class"]  # the serving head does not know these classes: compared with the initial loss
    assert result.accepted and stats.baseline == "initial" and stats.loss_before == stats.loss_initial
    assert np.isfinite(stats.loss_before) and stats.loss_after < stats.loss_before
    queries = env_frames(UNSEEN, range(50, 55)) + env_frames(OTHER, range(50, 55))
    names = [p.class_name for p in engine.infer_batch(np.stack([f.rgb for f in queries]))]
    assert np.mean([n == f.env for n, f in zip(names, queries)]) >= 0.8


def test_worse_adaptation_is_rejected_and_previous_model_keeps_serving(engine):
    add(engine, "neon", env_frames(UNSEEN, range(5)))
    assert engine.adapt("neon").accepted
    state = engine.state
    result = engine.adapt("neon", steps=0)  # attention alone: every task worse than its adapted head serving
    assert not result.accepted and all(t in result.reason for t in engine.tasks) and "worse" in result.reason
    assert engine.state is state and result.version == state.version


def test_a_task_that_gets_worse_keeps_serving_while_the_others_are_swapped_in(engine):
    add(engine, "neon", env_frames(UNSEEN, range(5)))
    assert engine.adapt("neon", tasks=["depth"]).accepted  # depth adapted; the other tasks serve the prior
    state = engine.state
    engine.config.lr = {"class": 0.1, "depth": 50.0, "normals": 0.1, "vp": 0.1}  # depth diverges
    result = engine.adapt("neon")
    assert result.accepted and "depth" in result.skipped and "depth" in result.reason
    new = engine.state
    assert new.version == state.version + 1
    assert new.heads["depth"] is state.heads["depth"] and new.multipliers["depth"] is state.multipliers["depth"]
    assert new.heads["vp"] is not None and state.heads["vp"] is None


def test_failed_adaptation_is_reported_and_previous_model_keeps_serving(engine):
    state = engine.state
    assert "no frames" in engine.adapt("empty").reason
    for i, f in enumerate(env_frames(UNSEEN, range(4))):
        engine.add_frame("many", f.rgb, class_name=f"room{i}")  # 4 classes for a 3-way head
    result = engine.adapt("many")
    assert not result.accepted and "3 outputs" in result.reason
    assert engine.state is state


def test_swap_is_atomic_under_concurrent_inference(engine):
    add(engine, "neon", env_frames(UNSEEN, range(4)), ["near", "far"])
    add(engine, "plaza", env_frames(OTHER, range(4)), ["near", "far"])
    rgb = env_frames(UNSEEN, [77])[0].rgb
    expected = {}
    for env in ("neon", "plaza"):
        engine.reset()
        assert engine.adapt(env).accepted
        engine.save_profile()
        expected[env] = engine.infer(rgb)
    fields = ("depth", "normals", "vp_dirs", "class_scores")
    for f in fields:  # the two states differ in every output, so a mix would show
        assert not np.allclose(getattr(expected["neon"], f), getattr(expected["plaza"], f), atol=1e-4), f
    neon, plaza = engine.profiles.load("neon"), engine.profiles.load("plaza")
    x = engine.backend.preprocess(rgb)
    torn = engine.backend.predict(x, neon.multipliers, plaza.heads)  # what a torn read would serve
    assert not np.allclose(torn["depth"][0, 0], expected["plaza"].depth, atol=1e-4)
    stop = threading.Event()

    def swap():
        i = 0
        while not stop.is_set():
            engine.load_profile(("neon", "plaza")[i % 2])
            i += 1

    thread = threading.Thread(target=swap)
    thread.start()
    try:
        seen = [engine.infer(rgb) for _ in range(60)]
    finally:
        stop.set()
        thread.join()
    matches = set()
    for p in seen:
        who = [env for env, e in expected.items()
               if all(np.allclose(getattr(p, f), getattr(e, f), atol=1e-5) for f in fields)]
        assert len(who) == 1 and who[0] == p.env, "an inference mixed two serving states"
        matches.add(who[0])
    assert matches == {"neon", "plaza"}  # swaps really happened while inferring


# -- profiles ---------------------------------------------------------------------------------------------------
def test_profiles_save_load_list_delete(engine):
    add(engine, "neon", env_frames(UNSEEN, range(5)))
    assert engine.adapt("neon").accepted
    rgb = env_frames(UNSEEN, [60])[0].rgb
    adapted = engine.infer(rgb)
    engine.save_profile()
    engine.reset()
    assert not np.allclose(engine.infer(rgb).depth, adapted.depth)
    engine.load_profile("neon")
    again = engine.infer(rgb)
    np.testing.assert_array_equal(again.depth, adapted.depth)
    np.testing.assert_array_equal(again.class_scores, adapted.class_scores)
    listed = engine.list_profiles()
    assert [p["name"] for p in listed] == ["neon"] and listed[0]["class_names"] == ["corridor_neon"]
    assert "depth" in listed[0]["stats"]
    engine.delete_profile("neon")
    assert engine.list_profiles() == []
    with pytest.raises(FileNotFoundError):
        engine.load_profile("neon")


@pytest.mark.parametrize("damage", ["tensors", "checksum", "model", "json", "shape"])
def test_corrupt_profile_is_refused(engine, damage):
    add(engine, "neon", env_frames(UNSEEN, range(3)))
    assert engine.adapt("neon").accepted
    meta = engine.save_profile()
    doc = json.loads(meta.read_text())
    data = meta.parent / doc["tensors"]
    if damage == "tensors":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        data.write_bytes(bytes(raw))
        message = "checksum"
    elif damage == "checksum":
        doc["tensors_sha256"] = "0" * 64
        meta.write_text(json.dumps(doc))
        message = "tensors_sha256"  # the tensors file's name no longer matches the checksum
    elif damage == "model":
        doc["model_sha256"] = "f" * 64
        meta.write_text(json.dumps(doc))
        message = "another model"
    elif damage == "json":
        meta.write_text(meta.read_text()[:40])
        message = "not valid JSON"
    else:
        from mtml_core.adapt.profiles import Profile

        bad = Profile("neon", {"depth": np.ones(5, np.float32)}, {}, ())
        with pytest.raises(ValueError, match="does not fit"):
            engine.profiles.save(bad)
        return
    engine.reset()
    state = engine.state
    with pytest.raises(ValueError, match=message):
        engine.load_profile("neon")
    assert engine.state is state


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "", "x" * 65, "name with space", "c:\\x",
                                  "lab\n", "lab.v2", "-lab", None, 5])
def test_path_like_names_are_refused(engine, name):
    with pytest.raises(ValueError, match="environment name"):
        check_name(name)
    with pytest.raises(ValueError, match="environment name"):
        engine.load_profile(name)


def test_recognition_finds_the_known_environment_and_can_switch(engine):
    for env, spec in (("neon", UNSEEN), ("plaza", OTHER)):
        add(engine, env, env_frames(spec, range(5)))
        engine.reset()
        assert engine.adapt(env).accepted
        engine.save_profile()
    engine.reset()
    now = env_frames(OTHER, range(40, 43))
    rec = engine.recognize([f.rgb for f in now], switch=False)
    assert rec.best == "plaza" and rec.scores["plaza"] > rec.scores["neon"] and not rec.switched
    assert engine.state.env is None
    rec = engine.recognize([f.rgb for f in env_frames(UNSEEN, range(40, 43))], switch=True)
    assert rec.best == "neon"
    if rec.confidence >= engine.config.switch_confidence:
        assert rec.switched and engine.state.env == "neon"
    else:
        assert not rec.switched and engine.state.env is None


def test_inference_keeps_serving_the_old_state_during_adaptation(engine):
    add(engine, "neon", env_frames(UNSEEN, range(5)))
    rgb = env_frames(UNSEEN, [9])[0].rgb
    old = engine.infer(rgb)
    done = threading.Event()
    results = []
    thread = threading.Thread(target=lambda: (results.append(engine.adapt("neon", steps=40)), done.set()))
    thread.start()
    during = []
    while not done.is_set():
        during.append(engine.infer(rgb))
    thread.join()
    assert results[0].accepted and len(during) >= 1
    served = [p for p in during if p.version == old.version]
    assert served  # answered while adapt() was running, from the old state only
    for p in served:
        np.testing.assert_array_equal(p.depth, old.depth)
    assert engine.infer(rgb).version == old.version + 1


# -- bounds, cancellation, labels at the edges (issue 12) ----------------------------------------------------------
@pytest.mark.parametrize("steps", [-1, MAX_STEPS + 1, 2**31 - 1, True, 2.5, "10", None])
def test_adapt_steps_are_bounded(engine, steps):
    add(engine, "neon", env_frames(UNSEEN, range(2)))
    if steps is None:
        engine.config.steps = -5  # a bad default is refused as well
    with pytest.raises(ValueError, match=rf"steps must be an integer in \[0, {MAX_STEPS}\]"):
        engine.adapt("neon", steps=steps)


def test_adaptation_can_be_cancelled_and_is_time_bounded(engine):
    add(engine, "neon", env_frames(UNSEEN, range(10)))
    state = engine.state
    assert not engine.cancel()  # nothing running
    results = []
    thread = threading.Thread(target=lambda: results.append(engine.adapt("neon", steps=MAX_STEPS)))
    thread.start()
    while not engine._adapt_lock.locked():
        time.sleep(0.005)
    time.sleep(0.2)
    t0 = time.perf_counter()
    assert engine.cancel()
    thread.join(timeout=20)
    assert not thread.is_alive() and time.perf_counter() - t0 < 5.0
    assert not results[0].accepted and "cancelled" in results[0].reason and engine.state is state
    engine.config.adapt_timeout = 0.3
    t0 = time.perf_counter()
    result = engine.adapt("neon", steps=MAX_STEPS)
    assert not result.accepted and "adapt_timeout" in result.reason and engine.state is state
    assert time.perf_counter() - t0 < 5.0
    engine.config.adapt_timeout = None
    assert engine.adapt("neon", steps=3).accepted  # a later adaptation is not affected by the earlier cancel


def test_depth_beyond_max_depth_becomes_invalid_instead_of_rejecting_the_frame(engine):
    f = env_frames("street_brick", [0])[0]
    depth = f.depth.copy()
    far = np.zeros(depth.shape, bool)
    far[:10] = True
    depth[far] = 5000.0  # a street ground plane far away
    depth[-2:, :] = 0.004  # nearer than min_depth: invalid too
    engine.add_frame("street", f.rgb, depth=depth, K=f.K)
    stored = engine.buffer.frames("street")[0].depth[0].numpy()
    assert np.isnan(stored[far]).all() and np.isnan(stored[-2:]).all()
    assert np.isfinite(stored[10:-2]).mean() > 0.9
    checked = check_depth(depth, depth.shape, max_depth=100.0, min_valid=0.01)
    with np.errstate(invalid="ignore"):
        assert (f.depth > 100).any()  # the render itself reaches beyond max_depth (the frame used to be refused)
        want = np.isfinite(depth) & (depth >= 0.01) & (depth <= 100.0)
    assert np.array_equal(np.isfinite(checked), want) and np.isnan(checked[far]).all()


def test_vertical_only_vp_labels_are_kept_and_adapt(engine):
    frames = env_frames(UNSEEN, range(4))
    for f in frames:
        vp = f.vp_dirs.copy()
        vp[1:] = np.nan  # York Urban gives the vertical only
        engine.add_frame("york", f.rgb, vp_dirs=vp)
    stored = engine.buffer.frames("york")[0].vp
    assert torch.isfinite(stored[0]).all() and torch.isnan(stored[1:]).all()
    result = engine.adapt("york", tasks=["vp"])
    assert "failed" not in result.reason and np.isfinite(result.tasks["vp"].loss_after), result.reason


def test_buffer_is_bounded_in_bytes(export):
    engine = AdaptationEngine.from_export(export, "onnxruntime")
    f = env_frames(UNSEEN, [0])[0]
    engine.add_frame("a", f.rgb, depth=f.depth)
    size = engine.buffer.nbytes
    buffer = SupportBuffer(capacity=10, max_bytes=int(2.5 * size))
    frame = engine.buffer.frames("a")[0]
    assert [buffer.add("a", frame) for _ in range(3)] == [1, 2, 2]  # the oldest goes to make room
    with pytest.raises(ValueError, match="support buffer full"):
        buffer.add("b", frame)
    assert buffer.nbytes == 2 * size and buffer.count("b") == 0
    buffer.clear("a")
    assert buffer.nbytes == 0 and buffer.add("b", frame) == 1


def test_a_profile_with_wrong_types_never_crashes_the_engine(engine):
    add(engine, "neon", env_frames(UNSEEN, range(3)))
    assert engine.adapt("neon").accepted
    meta = engine.save_profile()
    engine.save_profile("good")
    doc = json.loads(meta.read_text())
    for key, value in (("tasks", 5), ("tasks", None), ("class_names", 5), ("class_names", [1]), ("stats", [1, 2])):
        meta.write_text(json.dumps({**doc, key: value}))
        with pytest.raises(ValueError, match=key):
            engine.load_profile("neon")
        listed = {p["name"]: p for p in engine.list_profiles()}
        assert "error" in listed["neon"] and "error" not in listed["good"]
        rec = engine.recognize([env_frames(UNSEEN, [50])[0].rgb], switch=False)
        assert set(rec.scores) == {"good"}
