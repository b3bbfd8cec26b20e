"""ONNX export: manifest contents and checksums, multiplier folding parity, dynamic batch, TensorRT cache keys."""

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from runtime_helpers import SIZE, export_small, small_model

from mtml_core.backends.manifest import load_manifest, sha256_file
from mtml_core.backends.trt_build import engine_cache_key
from mtml_core.export import fold_multiplier

RNG = np.random.default_rng(0)
FOLD = torch.from_numpy(RNG.uniform(0.0, 1.5, 32).astype(np.float32))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    export_small(out, fold={"depth": FOLD, "class": None})
    return out


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_manifest_describes_the_export(export):
    man = load_manifest(export)
    doc = man.doc
    assert doc["opset"] >= 17
    assert (doc["input"]["height"], doc["input"]["width"]) == SIZE and doc["input"]["mean"] == [0.5] * 3
    assert doc["multiplier"]["size"] == 4 * 8 and "block-major" in doc["multiplier"]["layout"]
    assert man.tasks == ("class", "depth", "normals", "vp")
    for rel, digest in doc["files"].items():
        assert sha256_file(export / rel) == digest
    for task in man.tasks:  # every head parameter is an initializer of its graph, named as the manifest says
        entry = man.head(task)
        graph = onnx.load(str(export / entry["file"])).graph
        inits = {i.name: list(i.dims) for i in graph.initializer}
        for spec in entry["params"].values():
            assert inits[spec["onnx"]] == spec["shape"]
    model = small_model()
    loaded = man.load_model()
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_backbone_has_two_inputs_and_dynamic_batch(export):
    s = session(export / "backbone.onnx")
    assert [i.name for i in s.get_inputs()] == ["images", "multipliers"]
    model = small_model()
    m = torch.from_numpy(RNG.uniform(0, 1, 32).astype(np.float32))
    for n in (1, 3):
        x = torch.randn(n, 3, *SIZE)
        (out,) = s.run(None, {"images": x.numpy(), "multipliers": m[None].numpy()})
        with torch.no_grad():
            ref = model.backbone(x, m)[-1]
        assert out.shape == tuple(ref.shape)
        np.testing.assert_allclose(out, ref.numpy(), atol=1e-5)
    # one multiplier row per image equals running them one by one
    x = torch.randn(2, 3, *SIZE)
    rows = torch.from_numpy(RNG.uniform(0, 1, (2, 32)).astype(np.float32))
    (both,) = s.run(None, {"images": x.numpy(), "multipliers": rows.numpy()})
    for i in range(2):
        (one,) = s.run(None, {"images": x[i:i + 1].numpy(), "multipliers": rows[i:i + 1].numpy()})
        np.testing.assert_allclose(both[i:i + 1], one, atol=1e-5)


def test_fold_matches_runtime_multiplier_in_torch():
    model = small_model()
    m = torch.from_numpy(RNG.uniform(0.0, 2.0, 32).astype(np.float32))
    m[:5] = 0.0
    folded = fold_multiplier(model.backbone, m)
    x = torch.randn(3, 3, *SIZE)
    with torch.no_grad():
        ref, got = model.backbone(x, m), folded(x)
        plain = model.backbone(x)
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain[-1], ref[-1], atol=1e-3)  # the multiplier really changes the features
    assert torch.equal(model.backbone.blocks[0][1].weight, small_model().backbone.blocks[0][1].weight)  # copy


def test_fold_refuses_negative_or_misshapen_multipliers():
    model = small_model()
    with pytest.raises(ValueError, match=">= 0"):
        fold_multiplier(model.backbone, -torch.ones(32))
    with pytest.raises(ValueError, match="B·C"):
        fold_multiplier(model.backbone, torch.ones(31))


def test_folded_onnx_matches_unfolded(export):
    man = load_manifest(export)
    vectors = man.folded_multipliers()
    entry = next(e for e in man.folded if "depth" in e["tasks"])
    assert torch.equal(vectors[entry["key"]], FOLD)
    folded, plain = session(export / entry["file"]), session(export / "backbone.onnx")
    assert [i.name for i in folded.get_inputs()] == ["images"]
    x = RNG.standard_normal((2, 3, *SIZE)).astype(np.float32)
    (a,) = folded.run(None, {"images": x})
    (b,) = plain.run(None, {"images": x, "multipliers": FOLD[None].numpy()})
    np.testing.assert_allclose(a, b, atol=1e-4)
    identity = next(e for e in man.folded if "class" in e["tasks"])
    (c,) = session(export / identity["file"]).run(None, {"images": x})
    (d,) = plain.run(None, {"images": x, "multipliers": np.ones((1, 32), np.float32)})
    np.testing.assert_allclose(c, d, atol=1e-4)


def test_tampered_export_is_refused(export, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(export, copy)
    head = copy / "head_depth.onnx"
    data = bytearray(head.read_bytes())
    data[-10] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="head_depth.onnx has sha256"):
        load_manifest(copy)
    doc = json.loads((export / "manifest.json").read_text())
    doc["format"] = "something-else"
    (copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="format"):
        load_manifest(copy)


def test_trt_cache_key_changes_with_each_component():
    base = ("a" * 64, "10.3.0", "NVIDIA H100", "fp16")
    key = engine_cache_key(*base)
    assert engine_cache_key(*base) == key
    for i, other in enumerate(("b" * 64, "10.4.0", "Orin", "fp32")):
        changed = list(base)
        changed[i] = other
        assert engine_cache_key(*changed) != key
    with pytest.raises(ValueError, match="precision"):
        engine_cache_key("a", "1", "gpu", "int8")


def test_tensorrt_engine_build_and_cache(export, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="tensorrt is not installed here (needs an NVIDIA GPU box/Jetson)")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: TensorRT engines can only be built on an NVIDIA GPU")
    from mtml_core.backends.trt_build import build_engine

    gpu = torch.cuda.get_device_name()
    shapes = {"images": ((1, 3, *SIZE), (1, 3, *SIZE), (4, 3, *SIZE))}
    folded = load_manifest(export).folded[0]["file"]
    first = build_engine(export / folded, tmp_path, gpu, shapes, "fp16")
    again = build_engine(export / folded, tmp_path, gpu, shapes, "fp16")
    assert not first.from_cache and again.from_cache and again.path == first.path
    assert first.precision in ("fp16", "fp32") and trt.__version__
    rebuilt = build_engine(export / folded, tmp_path, gpu, shapes, "fp16", force_rebuild=True)
    assert not rebuilt.from_cache


def test_multiscale_head_reads_every_block(tmp_path):
    from mtml_core.backends import load_backend

    export_small(tmp_path, multiscale_heads=("depth",))
    man = load_manifest(tmp_path)
    assert man.feature_names == ("feat_0", "feat_1", "feat_2", "feat_3")
    assert man.head("depth")["inputs"] == list(man.feature_names) and man.head("vp")["inputs"] == ["feat_3"]
    x = RNG.standard_normal((2, 3, *SIZE)).astype(np.float32)
    m = {"depth": RNG.uniform(0, 1, 32).astype(np.float32)}
    ref = load_backend("torch", tmp_path).predict(x, m)
    got = load_backend("onnxruntime", tmp_path).predict(x, m)
    for task in ref:
        np.testing.assert_allclose(got[task], ref[task], atol=1e-4, rtol=0)


def test_cli_exports_a_run_with_a_folded_profile(tmp_path, capsys):
    from mtml_core.adapt.profiles import Profile, ProfileStore
    from mtml_core.checkpoint import save_checkpoint
    from training.export import main

    model = small_model()
    run = save_checkpoint(model, tmp_path / "run")
    spec = {t: {k: list(v.shape) for k, v in model.heads[t].named_parameters()} for t in model.cfg.tasks}
    store = ProfileStore(tmp_path / "profiles", sha256_file(run / "model.safetensors"), spec, 32,
                         model.embedding_size)
    vec = RNG.uniform(0.3, 1.0, 32).astype(np.float32)
    meta = store.save(Profile("lab", {"depth": vec, "vp": None}, {}, ()))
    assert main([str(run), "--out", str(tmp_path / "out"), "--fold-env", str(meta)]) == 0
    man = load_manifest(tmp_path / "out")
    assert man.doc["source_checkpoint"] == str(run.resolve()) and man.doc["fold_source"] == str(meta.resolve())
    assert [e["tasks"] for e in man.folded] == [["depth"], ["vp"]]
    np.testing.assert_array_equal(man.folded_multipliers()["folded_0"].numpy(), vec)
    copied = ProfileStore(tmp_path / "out" / "profiles", sha256_file(run / "model.safetensors"), spec, 32,
                          model.embedding_size).load("lab")  # the copy is a complete, verified profile
    np.testing.assert_array_equal(copied.multipliers["depth"], vec)
    assert "parity onnxruntime vs torch" in capsys.readouterr().out
    other = tmp_path / "other"
    save_checkpoint(small_model(seed=5), other)
    assert main([str(other), "--out", str(tmp_path / "out2"), "--fold-env", str(meta), "--no-check"]) == 2
    assert "another model" in capsys.readouterr().err
