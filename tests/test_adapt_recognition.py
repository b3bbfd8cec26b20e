"""Open-set recognition on the shipped model: with one profile saved, frames of other built-in environments and noise
are "none of these"; the calibration is stored, reused and tied to the model."""

import json

import numpy as np
import pytest
from runtime_helpers import env_frames

from mtml_core.adapt import AdaptationEngine, EngineConfig
from mtml_core.adapt.profiles import CALIBRATION_FILE
from mtml_core.adapt.recognition import Calibration, choose_threshold, noise_frames
from mtml_core.checkpoint import load_checkpoint
from mtml_core.export import export_model

DEFAULT = "mtml_core/assets/default"
KNOWN = "corridor_neon"  # a test-split environment: never seen in training
# issue 12's false matches, and more; not warehouse_neon: the same neon material, which the shipped model's plain
# embeddings do not tell apart from corridor_neon (most of the calibration's false positives are such pairs)
OTHERS = ["plaza_concrete", "room_office", "hall_brick", "street_sandstone"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("default_export")
    model, _ = load_checkpoint(DEFAULT)
    export_model(model.eval(), out, checkpoint_dir=DEFAULT)
    return out


@pytest.fixture(scope="module")
def engine(export, tmp_path_factory):
    profiles = tmp_path_factory.mktemp("profiles")
    engine = AdaptationEngine.from_export(export, "onnxruntime", profiles_dir=profiles, config=EngineConfig(steps=2))
    hw = engine.backend.input_hw
    for f in env_frames(KNOWN, range(5), hw):
        engine.add_frame("neon", f.rgb, depth=f.depth)
    assert engine.adapt("neon", tasks=["depth"]).accepted
    engine.save_profile()
    engine.reset()
    return engine


def frames(env, engine, seeds=range(40, 43)):
    return [f.rgb for f in env_frames(env, seeds, engine.backend.input_hw)]


def test_the_calibration_separates_places_on_the_shipped_model(engine):
    cal = engine.recognition_calibration()
    assert cal.tpr >= 0.9 and cal.fpr <= 0.1 and cal.positives >= 40 and cal.negatives >= 1000
    assert 0 < cal.temperature < 1


def test_the_known_place_is_recognised_and_switched_to(engine):
    rec = engine.recognize(frames(KNOWN, engine), switch=True)
    assert rec.best == "neon" and rec.nearest == "neon" and rec.similarity >= rec.threshold
    assert 0.5 < rec.confidence < 1.0  # a softmax against "none of these", never 1.0 over a single entry
    assert rec.switched == (rec.confidence >= engine.config.switch_confidence)
    engine.reset()


@pytest.mark.parametrize("env", OTHERS)
def test_unknown_places_are_none_of_these(engine, env):
    engine.reset()
    rec = engine.recognize(frames(env, engine), switch=True)
    assert rec.best is None and rec.nearest == "neon" and not rec.switched, rec
    assert rec.similarity < rec.threshold and rec.confidence > 0.5  # confident it is none of these
    assert engine.state.env is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_noise_is_none_of_these(engine, seed):
    engine.reset()
    rng = np.random.default_rng(seed)
    hw = engine.backend.input_hw
    for batch in (list(rng.integers(0, 256, (3, *hw, 3), dtype=np.uint8)), list(noise_frames(3, hw, seed + 10))):
        rec = engine.recognize(batch, switch=True)
        assert rec.best is None and not rec.switched, rec


def test_frame_count_is_bounded(engine):
    with pytest.raises(ValueError, match="frames"):
        engine.recognize([])
    with pytest.raises(ValueError, match="frames"):
        engine.recognize([frames(KNOWN, engine, [0])[0]] * 65)


def test_the_calibration_is_stored_and_tied_to_the_model(engine, export):
    path = engine.profiles.root / CALIBRATION_FILE
    doc = json.loads(path.read_text())
    again = AdaptationEngine.from_export(export, "onnxruntime", profiles_dir=engine.profiles.root)
    cal = again.recognition_calibration()  # read back, not recomputed
    assert cal.threshold == doc["threshold"] == engine.recognition_calibration().threshold
    assert "neon" in again.list_profiles()[0]["name"] and [p["name"] for p in again.list_profiles()] == ["neon"]
    with pytest.raises(ValueError, match="this model"):
        Calibration.from_json({**doc, "model_sha256": "0" * 64}, doc["model_sha256"], len(doc["mean"]))
    with pytest.raises(ValueError, match="std"):
        Calibration.from_json({**doc, "std": doc["std"][:-1]}, doc["model_sha256"], len(doc["mean"]))


def test_threshold_maximises_tpr_minus_fpr():
    threshold, tpr, fpr = choose_threshold([0.8, 0.9, 0.7], [0.1, 0.2, 0.75])
    assert (tpr, fpr) == (pytest.approx(2 / 3), 0.0) and threshold == pytest.approx(0.775)  # ties: the higher one
    threshold, tpr, fpr = choose_threshold([0.6, 0.7], [0.1, 0.3])
    assert tpr == 1.0 and fpr == 0.0 and threshold == pytest.approx(0.45)
