"""preprocess: normalisation, layout, resizing of frames and their geometry, label tensors."""

import numpy as np
import pytest
import torch

from mtml_core import preprocess
from mtml_core.data.geometry import project
from mtml_core.data.spec import get_env
from mtml_core.data.synth import render_frame


def test_to_tensor_normalises_and_lays_out():
    rgb = np.zeros((2, 4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    rgb[1, ..., 2] = 51
    x = preprocess.to_tensor(rgb, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.full((2, 4, 5), 2.0))
    assert torch.allclose(x[0, 1], torch.full((4, 5), -2.0))
    assert torch.allclose(x[1, 2], torch.full((4, 5), (0.2 - 0.5) / 0.25))
    assert preprocess.to_tensor(rgb[0], size=(8, 10)).shape == (1, 3, 8, 10)
    with pytest.raises(ValueError, match="uint8"):
        preprocess.to_tensor(rgb.astype(np.float32))


def test_serving_preprocess_is_numpy_and_equals_torch_arithmetic_bit_for_bit():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = preprocess.to_array(rgb, (24, 32), mean, std)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous and x.shape == (2, 3, 24, 32)
    small = torch.from_numpy(np.stack([preprocess.resize_rgb(im, (24, 32)) for im in rgb])).permute(0, 3, 1, 2)
    ref = (small.float() - torch.tensor(mean).view(1, 3, 1, 1) * 255.0) / (torch.tensor(std).view(1, 3, 1, 1) * 255.0)
    assert torch.equal(torch.from_numpy(x), ref)


def test_resize_frame_keeps_geometry_consistent():
    f = render_frame(get_env("corridor_brick"), 1, (96, 128))
    g = preprocess.resize_frame(f, (48, 64))
    assert g.rgb.shape == (48, 64, 3) and g.depth.shape == (48, 64) and g.normals.shape == (48, 64, 3)
    uv, inf = project(g.K, g.vp_dirs)
    assert np.allclose(uv[~inf], g.vp_pixels[~inf], rtol=1e-4, atol=1e-3)
    # nearest-neighbour labels: every resized depth value comes from the original map
    assert np.isin(g.depth[np.isfinite(g.depth)], f.depth).all()
    # a pixel's back-projected ray keeps its world direction: same depth at corresponding pixels
    assert np.allclose(g.depth[10, 20], f.depth[21, 41], rtol=0.2)
    assert np.isclose(g.K[0, 0], f.K[0, 0] / 2) and np.isclose(g.K[0, 2], (f.K[0, 2] + 0.5) / 2 - 0.5)


def test_label_tensors_mark_invalid_as_nan():
    depth = np.array([[[1.0, 0.0], [np.inf, -2.0]]], np.float32)
    t = preprocess.depth_to_tensor(depth)
    assert t.shape == (1, 1, 2, 2) and t[0, 0, 0, 0] == 1.0 and torch.isnan(t[0, 0].flatten()[1:]).all()
    f = render_frame(get_env("plaza_wood"), 0, (12, 16))
    n = preprocess.frame_labels("normals", [f, f])
    assert n.shape == (2, 3, 12, 16)
    assert torch.equal(torch.isnan(n[0, 0]), torch.from_numpy(np.isnan(f.depth)))
    assert preprocess.frame_labels("vp", [f]).shape == (1, 3, 3)
    assert preprocess.frame_labels("depth", [f], size=(6, 8)).shape == (1, 1, 6, 8)
    with pytest.raises(ValueError, match="no depth"):
        preprocess.frame_labels("depth", [f.with_(depth=None)])
    with pytest.raises(ValueError, match="task"):
        preprocess.frame_labels("class", [f])
