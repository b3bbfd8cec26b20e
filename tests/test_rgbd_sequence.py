"""RGB-D sequence loader (7-Scenes and TUM layouts) and pseudo ground-truth normals from depth."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from mtml_core.data.loaders.rgbd_sequence import RGBDSequence, read_intrinsics, rgbd_sequences
from mtml_core.data.pseudo_normals import pseudo_normals

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rgbd" / "7scenes_redkitchen"
K = np.array([[50.0, 0, 16], [0, 50.0, 12], [0, 0, 1]])


def _write_k(path: Path, k: np.ndarray = K) -> None:
    np.savetxt(path, k)


def _seven_scenes(root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True)
    _write_k(root / "camera-intrinsics.txt")
    for i in range(n):
        stem = root / f"frame-{2 * i:06d}"
        rgb = np.full((24, 32, 3), 40 * i, np.uint8)
        rgb[..., 2] = 200  # blue in RGB: the loader must return RGB, not OpenCV's BGR
        assert cv2.imwrite(f"{stem}.color.png", rgb[..., ::-1])
        depth = np.full((24, 32), 1500 + i, np.uint16)
        depth[0, 0], depth[0, 1] = 0, 65535
        assert cv2.imwrite(f"{stem}.depth.png", depth)
        pose = np.eye(4)
        pose[0, 3] = i
        np.savetxt(f"{stem}.pose.txt", pose)
    return root


def test_seven_scenes_layout(tmp_path):
    seq = RGBDSequence(_seven_scenes(tmp_path / "seq-01"))
    assert len(seq) == 3 and seq.layout == "7scenes" and seq.name(1) == "frame-000002"
    fr = seq[1]
    assert fr.rgb.shape == (24, 32, 3) and fr.rgb[5, 5].tolist() == [40, 40, 200]
    assert fr.depth.dtype == np.float32 and np.isnan(fr.depth[0, :2]).all()  # 0 and 65535: no measurement
    assert fr.depth[5, 5] == pytest.approx(1.501)
    assert np.array_equal(fr.K, K.astype(np.float32)) and fr.pose[0, 3] == 1.0 and fr.env == "seq-01"
    assert fr.normals is None and seq[-1].pose[0, 3] == 2.0 and len(seq[0:2]) == 2
    with pytest.raises(IndexError):
        seq[3]
    with_normals = RGBDSequence(tmp_path / "seq-01", normals=True, env="kitchen")[0]
    # a fronto-parallel plane: normals point back at the camera
    assert with_normals.env == "kitchen" and np.allclose(with_normals.normals[12, 16], [0, 0, -1], atol=1e-4)


def test_sequences_are_read_lazily(tmp_path):
    root = _seven_scenes(tmp_path / "seq-01")
    seq = RGBDSequence(root)
    (root / "frame-000004.depth.png").write_bytes(b"broken")  # indexed, not read: only frame 2 fails
    assert seq[0].depth.shape == (24, 32)
    with pytest.raises(ValueError, match="frame-000004.depth.png"):
        seq[2]


def test_tum_layout(tmp_path):
    root = tmp_path / "rgbd_dataset_freiburg1_xyz"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines, depth_lines = ["# color images"], ["# depth maps"]
    for i in range(3):
        t = 10.0 + i / 30
        assert cv2.imwrite(str(root / f"rgb/{t:.6f}.png"), np.zeros((24, 32, 3), np.uint8))
        assert cv2.imwrite(str(root / f"depth/{t + 0.004:.6f}.png"), np.full((24, 32), 5000 * (i + 1), np.uint16))
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        depth_lines.append(f"{t + 0.004:.6f} depth/{t + 0.004:.6f}.png")
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    # pose: translation (1, 2, 3), 90° about z
    (root / "groundtruth.txt").write_text("# t tx ty tz qx qy qz qw\n10.0 1 2 3 0 0 0.7071068 0.7071068\n")
    _write_k(tmp_path / "camera-intrinsics.txt")  # found in the parent folder
    seq = RGBDSequence(root)
    assert seq.layout == "tum" and len(seq) == 3 and seq.depth_scale == 5000
    assert [seq[i].depth[3, 3] for i in range(3)] == pytest.approx([1.0, 2.0, 3.0])
    assert np.allclose(seq.pose(0), [[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], atol=1e-6)
    assert seq.pose(2) is None  # no ground truth within max_dt
    assert [s.root for s in rgbd_sequences(tmp_path)] == [root]


def test_missing_or_malformed_sequences_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.*7-Scenes"):
        RGBDSequence(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no RGB-D frames in .*empty.*frame-NNNNNN.color"):
        RGBDSequence(tmp_path / "empty")
    with pytest.raises(ValueError, match="no RGB-D sequence under"):
        rgbd_sequences(tmp_path / "empty")
    root = _seven_scenes(tmp_path / "seq")
    (root / "frame-000002.color.png").unlink()
    with pytest.raises(FileNotFoundError, match="frame-000002.depth.png has no colour image"):
        RGBDSequence(root)
    root = _seven_scenes(tmp_path / "seq2")
    (root / "camera-intrinsics.txt").write_text("585 0 320\n0 585 240\n")
    with pytest.raises(ValueError, match="malformed intrinsics .*camera-intrinsics.txt"):
        RGBDSequence(root)
    (root / "camera-intrinsics.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no camera-intrinsics.txt in .*seq2"):
        RGBDSequence(root)
    assert len(RGBDSequence(root, K=K)) == 3
    np.savetxt(root / "frame-000000.pose.txt", np.eye(3))
    with pytest.raises(ValueError, match="malformed pose .*frame-000000.pose.txt"):
        RGBDSequence(root, K=K)[0]
    with pytest.raises(ValueError, match="malformed intrinsics"):
        read_intrinsics(root / "frame-000002.pose.txt")


def _plane_depth(normal: np.ndarray, offset: float, hw=(60, 80), k=K) -> np.ndarray:
    """z-depth of the plane n·X = offset seen through K (rays hitting it in front of the camera)."""
    v, u = np.mgrid[0:hw[0], 0:hw[1]].astype(np.float64)
    rays = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1)
    return (offset / (rays @ normal)).astype(np.float32)


def test_pseudo_normals_of_planes_and_edges():
    n_true = np.array([0.3, -0.5, -0.8])
    n_true /= np.linalg.norm(n_true)
    depth = _plane_depth(n_true, -2.0)
    assert (depth > 0).all()
    noisy = depth + np.random.default_rng(0).normal(0, 0.002, depth.shape).astype(np.float32)
    n = pseudo_normals(noisy, K)
    valid = np.isfinite(n).all(-1)
    assert valid.mean() > 0.95 and np.allclose(np.linalg.norm(n[valid], axis=-1), 1, atol=1e-5)
    angles = np.degrees(np.arccos(np.clip(n[valid] @ n_true, -1, 1)))
    assert np.median(angles) < 2 and n.dtype == np.float32
    # the camera sees the plane from the front: flipping the plane's sign does not flip the normals
    assert np.allclose(pseudo_normals(depth, K)[30, 40], n_true, atol=1e-4)
    # a depth step (two fronto-parallel planes 1 m apart): NaN at the edge, exact away from it, NaN without depth
    step = np.where(np.arange(80) < 40, 2.0, 3.0)[None].repeat(60, 0).astype(np.float32)
    step[10:14, 10:14] = np.nan
    ns = pseudo_normals(step, K, windows=(5,))
    assert np.isnan(ns[30, 38:42]).all() and np.allclose(ns[30, 30], [0, 0, -1]) and np.allclose(ns[30, 50], [0, 0, -1])
    assert np.isnan(ns[10:14, 10:14]).all()
    with pytest.raises(ValueError, match="odd"):
        pseudo_normals(step, K, windows=(4,))
    with pytest.raises(ValueError, match="depth must be"):
        pseudo_normals(step[None], K)


@pytest.mark.skipif(not DATA.is_dir(), reason=f"7-Scenes sample not present at {DATA}")
def test_real_7scenes_sequence():
    seq = RGBDSequence(DATA, normals=True)
    assert len(seq) == 500 and seq.name(1) == "frame-000002" and seq.K[0, 0] == 585 and seq.env == DATA.name
    a, b = seq[100], seq[101]
    assert a.rgb.shape == (480, 640, 3) and a.depth.shape == (480, 640)
    valid = np.isfinite(a.depth)
    assert 0.8 < valid.mean() < 1 and 0.3 < np.nanmin(a.depth) and np.nanmax(a.depth) < 6
    R = a.pose[:3, :3]
    assert np.allclose(R @ R.T, np.eye(3), atol=2e-2)
    # the pseudo normals are geometry, not noise: frame 100's normals, rotated into frame 101 by the poses, agree
    # with frame 101's at the same pixels (the camera moves a few pixels between neighbouring frames)
    rel = np.linalg.inv(b.pose[:3, :3]) @ R
    both = np.isfinite(a.normals).all(-1) & np.isfinite(b.normals).all(-1)
    assert both.mean() > 0.5
    cos = np.sum((a.normals[both] @ rel.T) * b.normals[both], -1)
    assert np.median(np.degrees(np.arccos(np.clip(cos, -1, 1)))) < 15  # measured 10.4° (sensor noise)
