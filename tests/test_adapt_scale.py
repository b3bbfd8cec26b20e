"""The adaptation's closed-form depth-scale term (mtml_core.adapt.scale) and vertical-only VP adaptation.

The scale term recovers a known factor, is bounded, never raises the support loss, lives in the depth head's own
parameters (so it is served by the ONNX head graphs, saved in profiles and loaded back), and works for both depth
head kinds; a York-Urban-like label (vertical direction only, horizontals NaN) goes through the engine end to end.
"""

import math

import numpy as np
import pytest
import torch
from runtime_helpers import SIZE, SMALL, env_frames, export_small, small_model

from mtml_core.adapt import AdaptationEngine, EngineConfig
from mtml_core.adapt.scale import BIAS, apply_scale, log_scale, scale_param
from mtml_core.config import ModelConfig
from mtml_core.losses import task_loss
from mtml_core.model import MultiTaskModel


def test_log_scale_recovers_a_known_factor_despite_outliers_and_holes():
    rng = np.random.default_rng(0)
    pred = torch.from_numpy(rng.uniform(0.5, 5.0, (4, 1, 24, 32))).float()
    labels = pred * 2.5
    labels[:, :, :3] = float("nan")  # holes
    labels[:, :, 5, :4] = 1e3  # a few wild outliers (the median ignores them)
    assert math.exp(log_scale(pred, labels)) == pytest.approx(2.5, rel=1e-4)
    assert math.exp(log_scale(pred, pred / 3.0)) == pytest.approx(1 / 3.0, rel=1e-4)


def test_log_scale_is_bounded_and_zero_without_valid_pixels():
    pred = torch.full((1, 1, 8, 8), 2.0)
    assert log_scale(pred, pred * 1e4, max_scale=16.0) == pytest.approx(math.log(16.0))
    assert log_scale(pred, pred * 1e-4, max_scale=16.0) == pytest.approx(-math.log(16.0))
    assert log_scale(pred, torch.full_like(pred, float("nan"))) == 0.0
    with pytest.raises(ValueError, match="max_scale"):
        log_scale(pred, pred, max_scale=0.5)


@pytest.mark.parametrize("arch", ["paper", "unet"])
def test_scale_folds_into_the_depth_head_output_bias(arch):
    torch.manual_seed(0)
    model = small_model() if arch == "paper" else MultiTaskModel(ModelConfig(**{**SMALL, "arch": arch})).eval()
    head = model.heads["depth"]
    params = {k: v.detach() for k, v in head.named_parameters()}
    assert scale_param(head, params) == BIAS and scale_param(model.heads["normals"], params) is None
    images = torch.randn(3, 3, *SIZE)
    with torch.no_grad():
        x = model.head_input("depth", model.features(images))
        pred = head(x)
    labels = pred * 3.0
    labels[:, :, :4] = float("nan")
    scaled, s, loss = apply_scale(head, params, x, labels)
    assert s == pytest.approx(math.log(3.0), abs=1e-4) and loss < 1e-6
    assert torch.equal(params[BIAS], head.out.bias)  # the input parameters are untouched
    out = torch.func.functional_call(head, scaled, (x,))
    assert torch.allclose(out, pred * 3.0, rtol=1e-4)
    # a correction that would raise the support loss is not applied
    bad = torch.where(torch.rand_like(pred) < 0.6, pred * 3.0, pred / 50.0)
    kept, s_bad, loss_bad = apply_scale(head, params, x, bad)
    base = float(task_loss("depth", pred, bad))
    assert loss_bad <= base + 1e-9 and (s_bad == 0.0) == (kept is params)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    export_small(out)
    return out


def test_engine_scale_term_is_served_saved_and_loaded(export, tmp_path):
    # no attention and no inner steps: the adaptation is the scale term alone, so the served depth must be exactly
    # the known factor times what was served before, through the ONNX head graph, and the same after a profile
    # save / reset / load
    cfg = EngineConfig(steps=0, use_attention=False, max_depth=1e4)
    engine = AdaptationEngine.from_export(export, "onnxruntime", profiles_dir=tmp_path / "profiles", config=cfg)
    frames = env_frames("corridor_neon", range(4))
    rgb = np.stack([f.rgb for f in frames])
    before = np.stack([p.depth for p in engine.infer_batch(rgb)])
    for f, d in zip(frames, before):
        engine.add_frame("room", f.rgb, depth=(d * 4.0).astype(np.float32))
    result = engine.adapt("room", tasks=["depth"])
    assert result.accepted, result.reason
    assert math.exp(result.tasks["depth"].depth_log_scale) == pytest.approx(4.0, rel=1e-3)
    after = np.stack([p.depth for p in engine.infer_batch(rgb)])
    np.testing.assert_allclose(after, before * 4.0, rtol=2e-3)
    engine.save_profile()
    engine.reset()
    np.testing.assert_allclose(np.stack([p.depth for p in engine.infer_batch(rgb)]), before, rtol=1e-5)
    engine.load_profile("room")
    np.testing.assert_allclose(np.stack([p.depth for p in engine.infer_batch(rgb)]), after, rtol=1e-5)
    assert engine.list_profiles()[0]["stats"]["depth"]["depth_log_scale"] == pytest.approx(math.log(4.0), abs=1e-3)


def test_engine_scale_term_is_bounded_and_can_be_switched_off(export):
    frames = env_frames("corridor_neon", range(2))
    for on in (True, False):
        cfg = EngineConfig(steps=0, use_attention=False, max_depth=1e6, depth_scale=on, max_depth_scale=8.0)
        engine = AdaptationEngine.from_export(export, "onnxruntime", config=cfg)
        before = engine.infer(frames[0].rgb).depth
        for f in frames:
            engine.add_frame("far", f.rgb, depth=(engine.infer(f.rgb).depth * 1000.0).astype(np.float32))
        result = engine.adapt("far", tasks=["depth"])
        ratio = float(np.median(engine.infer(frames[0].rgb).depth / before))
        if on:
            assert result.accepted and ratio == pytest.approx(8.0, rel=1e-3)  # clipped at max_depth_scale
        else:  # steps=0 and no scale: nothing can improve, so the engine keeps the serving model
            assert result.tasks["depth"].depth_log_scale is None and ratio == pytest.approx(1.0, rel=1e-5)


def _vertical_error(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(np.abs((pred * truth).sum(-1)), 0, 1)))


def test_vertical_only_vp_labels_adapt_the_vertical(export):
    # York Urban labels only the vertical: rows 1-2 NaN. The engine must accept such frames, adapt on them alone,
    # and bring the served vertical closer to the labels.
    frames = env_frames("corridor_neon", range(6))
    engine = AdaptationEngine.from_export(export, "onnxruntime", config=EngineConfig(steps=30, lr=0.3))
    truth = np.stack([f.vp_dirs[0] for f in frames])
    rgb = np.stack([f.rgb for f in frames])
    before = _vertical_error(np.stack([p.vp_dirs[0] for p in engine.infer_batch(rgb)]), truth)
    for f in frames:
        dirs = np.full((3, 3), np.nan, np.float32)
        dirs[0] = f.vp_dirs[0]
        engine.add_frame("street", f.rgb, vp_dirs=dirs)
    assert torch.isnan(engine.buffer.frames("street")[0].vp[1:]).all()
    result = engine.adapt("street", tasks=["vp"])
    assert result.accepted, result.reason
    stats = result.tasks["vp"]
    assert math.isfinite(stats.loss_after) and stats.loss_after < stats.loss_before
    after = _vertical_error(np.stack([p.vp_dirs[0] for p in engine.infer_batch(rgb)]), truth)
    assert np.isfinite(after).all() and after.mean() < 0.9 * before.mean()  # measured: 7.4 -> 5.8 deg


def test_scale_total_stays_within_the_bound_over_repeated_applications():
    model = small_model()
    head = model.heads["depth"]
    params = {k: v.detach() for k, v in head.named_parameters()}
    with torch.no_grad():
        x = model.head_input("depth", model.features(torch.randn(2, 3, *SIZE)))
        labels = head(x) * 1e3
    once, s1, _ = apply_scale(head, params, x, labels, max_scale=8.0)
    twice, s2, _ = apply_scale(head, once, x, labels, max_scale=8.0, applied=s1)
    assert s1 == pytest.approx(math.log(8.0)) and s2 == 0.0 and twice is once
