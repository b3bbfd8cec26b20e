"""Vanishing directions refined on line segments (mtml_core.vp_lines): the interpretation-plane geometry, recovery
of the true Manhattan frame from a perturbed one on rendered frames, bad input, and the engine serving it."""

import cv2
import numpy as np
import pytest
from runtime_helpers import export_small

from mtml_core.adapt import AdaptationEngine, EngineConfig
from mtml_core.data.geometry import canonical_vps, intrinsics
from mtml_core.data.spec import get_env
from mtml_core.data.synth import render_frame
from mtml_core.vp_lines import refine_frame, refine_vps, segment_planes


def angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sign-free angle (degrees) between matching rows."""
    cos = np.abs((a * b).sum(1)) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return np.rad2deg(np.arccos(np.clip(cos, 0.0, 1.0)))


def rotated(dirs: np.ndarray, *rotvec_deg: float) -> np.ndarray:
    """``dirs`` (rows) rotated by the rotation vector ``rotvec_deg`` (degrees about x, y, z)."""
    return dirs @ cv2.Rodrigues(np.deg2rad(np.array(rotvec_deg, dtype=np.float64)))[0].T


def test_segments_towards_a_vanishing_point_lie_on_planes_through_its_direction():
    hw = (240, 320)
    K = intrinsics(70.0, hw)
    d = np.array([0.3, -0.2, 1.0])
    d /= np.linalg.norm(d)
    vp = K @ d
    vp = vp[:2] / vp[2]
    img = np.full((*hw, 3), 30, np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(12):  # segments on lines through the vanishing point (Eq. L1: l·d = 0)
        p = rng.uniform([20, 20], [300, 220])
        q = p + 0.45 * (vp - p)
        cv2.line(img, tuple(int(v) for v in p), tuple(int(v) for v in q), (230, 230, 230), 2, cv2.LINE_AA)
    planes, lengths = segment_planes(img, K, width=320)
    assert len(planes) >= 12 and (lengths > 0).all()
    np.testing.assert_allclose(np.linalg.norm(planes, axis=1), 1.0, atol=1e-9)
    assert np.median(np.abs(planes @ d)) < np.sin(np.deg2rad(0.5))
    frame = np.linalg.qr(np.stack([d, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).T)[0].T  # orthonormal, row 0 = ±d
    start = rotated(frame, 4.0, -3.0, 2.0)
    out = refine_frame(planes, lengths, start)
    assert angles(out[:1], d[None])[0] < 0.3 < angles(start[:1], d[None])[0]
    np.testing.assert_allclose(out @ out.T, np.eye(3), atol=1e-9)


@pytest.mark.parametrize("env", ["corridor_office", "room_wood", "warehouse_industrial"])
def test_a_perturbed_frame_converges_to_the_rendered_truth(env):
    frame = render_frame(get_env(env), 3, (480, 640))  # a camera frame, resized to 320 wide as the node does
    truth = frame.vp_dirs.astype(np.float64)
    start = rotated(truth, 4.0, 3.0, -3.0)
    out = refine_vps(frame.rgb, frame.K, start, width=320)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert angles(start, truth).min() > 3.5
    assert angles(out, canonical_vps(truth)).max() < 1.5


def test_a_frame_without_segments_keeps_the_head_directions():
    K = intrinsics(60.0, (96, 128))
    head = rotated(np.eye(3), 10.0, 5.0, 0.0)
    out = refine_vps(np.full((96, 128, 3), 128, np.uint8), K, head)
    np.testing.assert_allclose(out, canonical_vps(head), atol=1e-6)


@pytest.mark.parametrize(("rgb", "K", "dirs", "width", "match"), [
    (np.zeros((48, 64, 3), np.uint8), np.diag([-50.0, 50.0, 1.0]), np.eye(3), 320, "positive focal"),
    (np.zeros((48, 64, 3), np.uint8), np.full((3, 3), np.nan), np.eye(3), 320, "finite 3x3"),
    (np.zeros((48, 64, 3), np.uint8), np.diag([50.0, 50.0, 1.0]), np.full((3, 3), np.nan), 320, "finite"),
    (np.zeros((48, 64, 3), np.uint8), np.diag([50.0, 50.0, 1.0]), np.eye(2), 320, "finite"),
    (np.zeros((48, 64), np.uint8), np.diag([50.0, 50.0, 1.0]), np.eye(3), 320, "uint8"),
    (np.zeros((48, 64, 3), np.uint8), np.diag([50.0, 50.0, 1.0]), np.eye(3), 4, "width"),
])
def test_bad_input_is_refused_with_the_reason(rgb, K, dirs, width, match):
    with pytest.raises(ValueError, match=match):
        refine_vps(rgb, K, dirs, width)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    export_small(out)
    return out


def test_the_engine_refines_served_directions_given_intrinsics(export):
    frame = render_frame(get_env("room_wood"), 5, (240, 320))
    plain = AdaptationEngine.from_export(export, "onnxruntime", config=EngineConfig(vp_lines_width=0))
    lines = AdaptationEngine.from_export(export, "onnxruntime", config=EngineConfig(vp_lines_width=320))
    head = plain.infer(frame.rgb, frame.K).vp_dirs
    np.testing.assert_array_equal(lines.infer(frame.rgb).vp_dirs, head)  # no K: the head alone
    refined = lines.infer(frame.rgb, frame.K).vp_dirs
    np.testing.assert_allclose(refined, refine_vps(frame.rgb, frame.K, head, 320), atol=1e-5)
    assert angles(refined, head).max() > 0.1  # the segments moved it
    with pytest.raises(ValueError, match="focal"):
        lines.infer(frame.rgb, np.diag([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"vp_lines_width must be 0 \(off\) or in \[16, 1280\]"):
        EngineConfig(vp_lines_width=8)
