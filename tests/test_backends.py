"""Backend parity: every backend present against torch (max abs diff <= 1e-4, FP32) for the four outputs and the
embedding, with runtime multipliers, folded backbones and adapted head weights."""

import numpy as np
import pytest
import torch
from runtime_helpers import SIZE, export_small, small_model

from mtml_core.backends import load_backend
from mtml_core.backends.manifest import load_manifest

RNG = np.random.default_rng(1)
FOLD = RNG.uniform(0.2, 1.2, 32).astype(np.float32)
TOL = 1e-4


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    export_small(out, fold={"normals": torch.from_numpy(FOLD)})
    return out


@pytest.fixture(scope="module")
def torch_backend(export):
    return load_backend("torch", export)


def other_backends(export):
    yield load_backend("onnxruntime", export)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return
    if torch.cuda.is_available():
        yield load_backend("tensorrt", export, precision="fp32", cache_dir=export / "trt")


def images(n):
    return RNG.standard_normal((n, 3, *SIZE)).astype(np.float32)


def adapted_params(model, task, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: (v + 0.1 * torch.randn(v.shape, generator=g)).detach().numpy()
            for k, v in model.heads[task].named_parameters()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        np.testing.assert_allclose(a[k], b[k], atol=TOL, rtol=0, err_msg=k)


def test_torch_backend_equals_the_model(torch_backend):
    model = small_model()
    x = images(2)
    m = {t: RNG.uniform(0, 1, 32).astype(np.float32) for t in ("depth", "vp")}
    got = torch_backend.predict(x, m)
    with torch.no_grad():
        ref = model(torch.from_numpy(x), {t: torch.from_numpy(v) for t, v in m.items()})
    assert_same(got, {k: v.numpy() for k, v in ref.items()})
    assert got["class"].shape == (2, 3) and got["depth"].shape == (2, 1, *SIZE)
    assert got["normals"].shape == (2, 3, *SIZE) and got["vp"].shape == (2, 3, 3)


@pytest.mark.parametrize("n", [1, 3])
def test_parity_four_outputs_and_embed(export, torch_backend, n):
    x = images(n)
    per_task = {"class": None, "depth": RNG.uniform(0, 1, 32).astype(np.float32),
                "normals": RNG.uniform(0, 1, (n, 32)).astype(np.float32), "vp": FOLD.copy()}
    ref = torch_backend.predict(x, per_task)
    m = RNG.uniform(0, 1, 32).astype(np.float32)
    for backend in other_backends(export):
        assert_same(backend.predict(x, per_task), ref)
        np.testing.assert_allclose(backend.embed(x, m), torch_backend.embed(x, m), atol=TOL, rtol=0)
        np.testing.assert_allclose(backend.embed(x), torch_backend.embed(x), atol=TOL, rtol=0)
    # outputs depend on the multiplier (the parity above is not vacuous)
    plain = torch_backend.predict(x)
    assert not np.allclose(plain["depth"], ref["depth"], atol=1e-3)


def test_stacked_multipliers_equal_separate_calls(export):
    for backend in other_backends(export):
        x = images(2)
        m = {t: RNG.uniform(0, 1, 32).astype(np.float32) for t in backend.tasks}
        together = backend.predict(x, m)
        for t in backend.tasks:
            alone = backend.predict(x, {t: m[t]}, tasks=[t])
            np.testing.assert_allclose(together[t], alone[t], atol=1e-5, rtol=0)


def test_folded_backbone_is_used_and_matches(export, torch_backend):
    man = load_manifest(export)
    assert len(man.folded) == 1
    x = images(2)
    for backend in [torch_backend, *other_backends(export)]:
        calls = []
        original = backend._folded_backbone
        backend._folded_backbone = lambda i, im, f=original, c=calls: c.append(i) or f(i, im)
        try:
            folded = backend.features(x, FOLD)
        finally:
            del backend._folded_backbone
        assert calls == [0]
        unfolded = backend._backbone(x, FOLD[None])
        for a, b in zip(folded, unfolded):
            np.testing.assert_allclose(a, b, atol=TOL, rtol=0)


def test_adapted_heads_without_reexport(export, torch_backend):
    model = small_model()
    x = images(2)
    heads = {t: adapted_params(model, t, i) for i, t in enumerate(model.cfg.tasks)}
    ref = torch_backend.predict(x, heads=heads)
    base = torch_backend.predict(x)
    for t in model.cfg.tasks:
        assert not np.allclose(ref[t], base[t], atol=1e-4), t
    for backend in other_backends(export):
        assert_same(backend.predict(x, heads=heads), ref)
        assert_same(backend.predict(x), base)  # back to the exported weights


def test_bad_inputs_are_refused(export):
    for backend in other_backends(export):
        with pytest.raises(ValueError, match="images"):
            backend.predict(np.zeros((1, 3, 10, 10), np.float32))
        with pytest.raises(ValueError, match="uint8"):
            backend.predict(np.zeros((1, 3, *SIZE), np.uint8))
        with pytest.raises(ValueError, match="multipliers"):
            backend.predict(images(2), {"depth": np.ones(31, np.float32)})
        with pytest.raises(ValueError, match="multipliers"):
            backend.predict(images(2), {"depth": np.ones((3, 32), np.float32)})
        with pytest.raises(ValueError, match="parameter"):
            backend.predict(images(1), heads={"vp": {"fc.weight": np.zeros((9, 5), np.float32),
                                                     "fc.bias": np.zeros(9, np.float32)}})
        with pytest.raises(ValueError, match="unknown backend"):
            load_backend("tflite", export)


def test_preprocess_is_the_shared_one(export):
    from mtml_core.preprocess import to_tensor

    backend = load_backend("onnxruntime", export)
    rgb = RNG.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    x = backend.preprocess(rgb)
    np.testing.assert_array_equal(x, to_tensor(rgb, SIZE, (0.5,) * 3, (0.25,) * 3).numpy())


def test_tensorrt_backend_parity(export, torch_backend):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed here (needs an NVIDIA GPU box/Jetson)")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the TensorRT backend needs an NVIDIA GPU")
    trt_backend = load_backend("tensorrt", export, precision="fp32", cache_dir=export / "trt")
    x = images(2)
    assert_same(trt_backend.predict(x), torch_backend.predict(x))
