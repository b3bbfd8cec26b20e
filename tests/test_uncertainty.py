"""Uncertainty from P-AM (mtml_core.uncertainty): the adapted state keeps each task's multiplier distribution (its
mean is the served multiplier); sampled depth std is finite, >= 0, zero for S = 1 or sigma -> 0 and grows with the
distribution's width; confidences lie in [0, 1]; AM models have none."""

import numpy as np
import pytest
import torch
from runtime_helpers import SIZE, env_frames, export_small, small_model

from mtml_core import preprocess
from mtml_core.adapt import AdaptationEngine, EngineConfig
from mtml_core.uncertainty import (
    MAX_SAMPLES,
    MultiplierDistribution,
    UncertaintyMonitor,
    estimate,
    serving_uncertainty,
    support_distribution,
    task_confidence,
    unsupported,
)

ENV = "corridor_neon"


def adapted_engine(out, **model):
    export_small(out, **model)
    engine = AdaptationEngine.from_export(out, "onnxruntime", profiles_dir=out / "profiles", threads=1,
                                          config=EngineConfig(lr=0.05, steps=2))
    for f in env_frames(ENV, range(3)):
        engine.add_frame("neon", f.rgb, depth=f.depth, normals=f.normals, K=f.K, class_name="a", vp_dirs=f.vp_dirs)
    result = engine.adapt("neon")
    assert result.tasks, result
    return engine, result


@pytest.fixture(scope="module")
def pam(tmp_path_factory):
    return adapted_engine(tmp_path_factory.mktemp("pam"), probabilistic=True)


def test_adapted_pam_state_keeps_a_distribution_whose_mean_is_the_served_multiplier(pam):
    engine, result = pam
    state = engine.state
    assert result.accepted and set(state.distributions) == set(result.tasks) - set(result.skipped)
    for task, dist in state.distributions.items():
        assert dist.mu.shape == (engine.backend.multiplier_size,)
        np.testing.assert_allclose(dist.mean_multiplier(), state.multipliers[task], rtol=1e-5, atol=1e-6)
        assert np.all(np.exp(dist.log_sigma) > 0)
    assert unsupported(engine.model) is None


def test_sampled_depth_std_is_finite_non_negative_zero_without_spread_and_grows_with_it(pam):
    engine, _ = pam
    state = engine.state
    x = engine.backend.preprocess(np.stack([f.rgb for f in env_frames(ENV, [10, 11])]))
    hw = engine.backend.input_hw

    def run(dists, samples, seed=0, tasks=None):
        return estimate(engine.backend, x, dists, state.heads, samples, np.random.default_rng(seed), tasks=tasks,
                        n_classes=len(state.class_names))

    base = run(state.distributions, 8)
    assert base.depth_std.shape == (2, *hw) and base.depth_std.dtype == np.float32
    assert np.isfinite(base.depth_std).all() and (base.depth_std >= 0).all() and base.depth_std.max() > 0
    assert set(base.confidence) == set(state.distributions)
    assert all(0.0 <= c <= 1.0 for c in base.confidence.values()), base.confidence
    # one sample: no spread; sigma -> 0: every sample is the mean multiplier, so std 0 and full agreement
    assert np.all(run(state.distributions, 1).depth_std == 0)
    narrow = run({t: d.widened(1e-6) for t, d in state.distributions.items()}, 8)
    assert narrow.depth_std.max() < 1e-4 * max(base.depth_std.max(), 1e-3)
    assert all(c > 0.999 for c in narrow.confidence.values()), narrow.confidence
    # a wider distribution gives a larger spread (same random draws, scaled) and less agreement
    wide = run({t: d.widened(4.0) for t, d in state.distributions.items()}, 8)
    assert wide.depth_std.mean() > base.depth_std.mean() > narrow.depth_std.mean()
    assert wide.confidence["depth"] < base.confidence["depth"] < narrow.confidence["depth"]
    # only the asked tasks are sampled
    only = run(state.distributions, 4, tasks=["depth"])
    assert set(only.confidence) == {"depth"}
    with pytest.raises(ValueError, match="samples"):
        run(state.distributions, MAX_SAMPLES + 1)
    with pytest.raises(ValueError, match="samples"):
        run(state.distributions, 0)


def test_stacked_samples_equal_one_prediction_per_sampled_multiplier(pam):
    engine, _ = pam
    state = engine.state
    x = engine.backend.preprocess(env_frames(ENV, [12])[0].rgb)
    dist = state.distributions["depth"]
    got = estimate(engine.backend, x, {"depth": dist}, state.heads, 5, np.random.default_rng(3))
    draws = dist.sample(5, np.random.default_rng(3))
    depths = [engine.backend.predict(x, {"depth": m}, state.heads, tasks=["depth"])["depth"][0, 0] for m in draws]
    np.testing.assert_allclose(got.depth_std[0], np.std(depths, axis=0), rtol=1e-4, atol=1e-6)


def test_serving_uncertainty_follows_the_serving_state(pam, tmp_path):
    engine, _ = pam
    rgb = env_frames(ENV, [13])[0].rgb
    version = engine.state.version
    u = serving_uncertainty(engine, rgb, 4, np.random.default_rng(0), version)
    assert u is not None and u.depth_std.shape == (1, *engine.backend.input_hw) and u.seconds > 0
    assert serving_uncertainty(engine, rgb, 4, np.random.default_rng(0), version + 1) is None  # a swap happened


def test_a_profile_keeps_the_distributions_and_one_without_a_sigma_is_refused(pam):
    engine, _ = pam
    before = engine.state.distributions
    engine.save_profile("neon_pam")
    engine.reset()
    assert not engine.state.distributions  # the meta-initialisation has none
    engine.load_profile("neon_pam")
    after = engine.state.distributions
    assert set(after) == set(before) and after
    for task, dist in before.items():
        np.testing.assert_array_equal(after[task].mu, dist.mu)
        np.testing.assert_array_equal(after[task].log_sigma, dist.log_sigma)
        assert (after[task].mask is None) == (dist.mask is None)
        np.testing.assert_allclose(after[task].mean_multiplier(), engine.state.multipliers[task], rtol=1e-5,
                                   atol=1e-6)
    profile = engine.profiles.load("neon_pam")
    profile.distributions = {t: {"mu": d["mu"]} for t, d in profile.distributions.items()}
    with pytest.raises(ValueError, match="needs both mu and log_sigma"):
        engine.profiles.save(profile)


def test_am_and_anil_models_have_no_distribution():
    am, anil = small_model(), small_model(use_attention=False)
    assert "not P-AM" in unsupported(am) and "meta.method am" in unsupported(am)
    assert "meta.method anil" in unsupported(anil)
    f = env_frames(ENV, [0])[0]
    images = preprocess.to_tensor(f.rgb, SIZE, am.cfg.mean, am.cfg.std)
    depth = torch.from_numpy(np.asarray(f.depth, np.float32))[None, None]
    depth = torch.nn.functional.interpolate(depth, size=SIZE)
    assert support_distribution(am, "depth", images, depth) is None  # so an AM engine's state keeps none
    assert support_distribution(anil, "depth", images, depth) is None


def test_confidence_is_one_for_identical_samples_and_lower_when_they_disagree():
    rng = np.random.default_rng(0)
    same = np.repeat(rng.uniform(1, 5, (1, 2, 1, 6, 8)), 4, axis=0)
    assert task_confidence("depth", same) == pytest.approx(1.0)
    assert task_confidence("depth", same * rng.uniform(0.5, 1.5, same.shape)) < 0.9
    n = rng.normal(size=(1, 1, 3, 6, 8))
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    assert task_confidence("normals", np.concatenate([n, n, n])) == pytest.approx(1.0)
    assert task_confidence("normals", np.concatenate([n, -n])) == pytest.approx(0.0, abs=1e-9)
    vp = np.eye(3)[None, None]
    assert task_confidence("vp", np.concatenate([vp, -vp])) == pytest.approx(1.0)  # a direction's sign is arbitrary
    logits = np.array([[[5.0, 0.0, 0.0, 9.0]], [[0.0, 5.0, 0.0, -9.0]]])
    assert task_confidence("class", logits[:1].repeat(2, 0), n_classes=3) == pytest.approx(1.0)
    assert task_confidence("class", logits, n_classes=3) == pytest.approx(0.5, abs=0.02)  # two opposite samples
    with pytest.raises(ValueError):
        MultiplierDistribution(np.zeros(3), np.zeros(2))


def test_monitor_samples_only_when_on_wanted_and_due_and_reports_on_diagnostics(pam):
    engine, _ = pam
    rgb = env_frames(ENV, [14])[0].rgb
    v = engine.state.version
    mon = UncertaintyMonitor(unsupported(engine.model), seed=0)
    assert mon.check_samples(16) is None
    assert mon.step(engine, rgb, v, 0, 1, True) is None and mon.values(v)["uncertainty"].startswith("off")
    assert mon.step(engine, rgb, v, 4, 1, False) is None and mon.values(v)["uncertainty"].startswith("idle")
    got = [mon.step(engine, rgb, v, 4, 3, True) is not None for _ in range(6)]
    assert got == [True, False, False, True, False, False]  # every 3rd wanted frame (counting from the first)
    values = mon.values(v)
    assert values["uncertainty"] == "on: 4 samples every 3 frame(s)" and values["uncertainty_samples_used"] == 4
    assert {k for k in values if k.startswith("confidence_")} == {f"confidence_{t}" for t in engine.state.distributions}
    assert values["depth_std_mean_m"] > 0 and values["uncertainty_ms"] > 0
    assert "confidence_depth" not in mon.values(v + 1)  # an estimate of an older serving state is not shown
    am = UncertaintyMonitor("the served model is not P-AM (meta.method am ...)")
    assert "uncertainty_samples must stay 0" in am.check_samples(1) and am.check_samples(0) is None
    assert am.step(engine, rgb, v, 4, 1, True) is None and am.values(v)["uncertainty"].startswith("unavailable")
