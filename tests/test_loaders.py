"""Real-dataset loaders on tiny files written in each published format."""

import json
import pickle
import zipfile

import cv2
import h5py
import numpy as np
import pytest

from mtml_core.data.episodes import ClassEpisodeSampler
from mtml_core.data.loaders import (
    annotated_depth_frames,
    class_folders,
    diode_frames,
    kitti_depth_frames,
    load_omniglot,
    miniimagenet_csv,
    miniimagenet_pickle,
    nyu_labeled_mat,
    nyu_sync_frames,
    omniglot_splits,
    read_kitti_depth,
    read_yorkurban_gt,
    split_classes,
    yorkurban_frames,
)

RNG = np.random.default_rng(0)


def _png(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _rgb(h=6, w=8):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_omniglot_zip_and_folder(tmp_path):
    glyph = np.full((105, 105), 255, np.uint8)
    glyph[40:60, 50] = 0
    zpath = tmp_path / "images_background.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for a in ("Alpha", "Beta", "Gamma", "Delta"):
            for c in (1, 2):
                for d in range(3):
                    z.writestr(f"images_background/{a}/character{c:02d}/{c:04d}_{d + 1:02d}.png",
                               cv2.imencode(".png", glyph)[1].tobytes())
    folder = tmp_path / "images_evaluation" / "Omega" / "character01"
    for d in range(3):
        _png(folder / f"0001_{d:02d}.png", glyph)
    data = load_omniglot([zpath, tmp_path / "images_evaluation", zpath])  # duplicates count once
    assert data.class_names()[0] == "Alpha/character01" and len(data.class_names()) == 9
    assert all(data.num_items(c) == 3 for c in data.class_names())
    img = data.rgb("Omega/character01", 1)
    assert img.shape == (105, 105, 3) and img[50, 50].tolist() == [0, 0, 0] and img[0, 0].tolist() == [255] * 3
    splits = omniglot_splits(data, seed=1)
    alphabets = {s: {c.split("/")[0] for c in v.class_names()} for s, v in splits.items()}
    assert set(splits) == {"train", "val", "test"}
    assert not alphabets["train"] & (alphabets["val"] | alphabets["test"]) and not alphabets["val"] & alphabets["test"]
    ep = ClassEpisodeSampler(splits["train"], n_way=2, k_shot=1, n_query=2, size=(28, 28)).sample(0)
    assert ep.support_x.shape == (2, 3, 28, 28) and set(ep.class_names) <= set(splits["train"].class_names())
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.zip"):
        load_omniglot(tmp_path / "broken.zip")
    with pytest.raises(FileNotFoundError, match="nope.zip"):
        load_omniglot(tmp_path / "nope.zip")


def test_miniimagenet_pickle_and_csv(tmp_path):
    images = RNG.integers(0, 256, (6, 84, 84, 3), dtype=np.uint8)
    cache = {"image_data": images, "class_dict": {"n01": [0, 1, 2], "n02": [3, 4, 5]}}
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    path.write_bytes(pickle.dumps(cache))
    data = miniimagenet_pickle(path)
    assert data.split == "train" and data.class_names() == ["n01", "n02"]
    assert np.array_equal(data.rgb("n02", 1), images[4])
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"image_data": images, "class_dict": {}, "x": print}))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        miniimagenet_pickle(evil)
    (tmp_path / "images").mkdir()
    rows = ["filename,label"]
    for i in range(4):
        _png(tmp_path / "images" / f"im{i}.jpg", _rgb())
        rows.append(f"im{i}.jpg,n0{i % 2}")
    (tmp_path / "val.csv").write_text("\n".join(rows) + "\n")
    csv_set = miniimagenet_csv(tmp_path / "val.csv")
    assert csv_set.split == "val" and csv_set.num_items("n00") == 2 and csv_set.rgb("n01", 0).shape == (6, 8, 3)
    (tmp_path / "bad.csv").write_text("file,class\na,b\n")
    with pytest.raises(ValueError, match="bad.csv"):
        miniimagenet_csv(tmp_path / "bad.csv")


def test_places_class_folders(tmp_path):
    for cls in ("a/airfield", "a/alley", "b/bakery"):
        for i in range(2):
            _png(tmp_path / cls / f"{i:08d}.jpg", _rgb())
    data = class_folders(tmp_path)
    assert data.class_names() == ["a/airfield", "a/alley", "b/bakery"] and data.rgb("b/bakery", 1).shape == (6, 8, 3)
    (tmp_path / "b" / "bakery" / "00000009.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(ValueError, match="00000009.jpg"):
        class_folders(tmp_path).rgb("b/bakery", 2)


def test_nyu_labeled_mat(tmp_path):
    rgb = _rgb(4, 5)
    depth = RNG.uniform(0.5, 9, (4, 5)).astype(np.float32)
    depth[0, 0] = 0.0
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w") as f:  # MATLAB v7.3 as h5py sees it: transposed
        f["images"] = np.stack([rgb.transpose(2, 1, 0)] * 2)
        f["depths"] = np.stack([depth.T] * 2)
    frames = nyu_labeled_mat(path)
    assert len(frames) == 2
    fr = frames[1]
    assert np.array_equal(fr.rgb, rgb) and np.isnan(fr.depth[0, 0])
    assert np.allclose(fr.depth[1:], depth[1:]) and fr.K[0, 0] > 500
    (tmp_path / "junk.mat").write_bytes(b"MATLAB 5.0")
    with pytest.raises(ValueError, match="junk.mat"):
        nyu_labeled_mat(tmp_path / "junk.mat")


def test_nyu_sync_and_annotation_json(tmp_path):
    rgb = _rgb()
    mm = np.array(RNG.integers(500, 8000, (6, 8)), np.uint16)
    mm[2, 3] = 0
    _png(tmp_path / "scene" / "rgb" / "rgb_00007.jpg", rgb)
    _png(tmp_path / "scene" / "depth" / "sync_depth_00007.png", mm)
    frames = nyu_sync_frames(tmp_path)
    assert len(frames) == 1 and frames[0].rgb.shape == (6, 8, 3)
    d = frames[0].depth
    assert np.isnan(d[2, 3]) and np.allclose(d[0, 0], mm[0, 0] / 1000)
    ann = {"files": [{"cam_in": [100.0, 101.0, 4.0, 3.0], "rgb": "data/x/scene/rgb/rgb_00007.jpg",
                      "depth": "data/x/scene/depth/sync_depth_00007.png", "depth_scale": 1000.0}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    fr = annotated_depth_frames(tmp_path / "ann.json")[0]
    assert fr.K[1, 1] == 101.0 and fr.K[0, 2] == 4.0 and np.array_equal(fr.depth, d, equal_nan=True)
    ann["files"][0]["depth"] = "data/x/missing.png"
    (tmp_path / "ann2.json").write_text(json.dumps(ann))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        annotated_depth_frames(tmp_path / "ann2.json")


def test_kitti_depth_png(tmp_path):
    raw = np.array([[0, 256, 512], [65535, 0, 1]], np.uint16)
    _png(tmp_path / "depth" / "0000000005.png", raw)
    _png(tmp_path / "rgb" / "0000000005.png", _rgb(2, 3))
    d = read_kitti_depth(tmp_path / "depth" / "0000000005.png")
    assert np.isnan(d[0, 0]) and np.isnan(d[1, 1]) and d[0, 1] == 1.0 and d[0, 2] == 2.0
    assert np.isclose(d[1, 0], 65535 / 256) and np.isclose(d[1, 2], 1 / 256)
    frames = kitti_depth_frames(tmp_path / "depth", tmp_path / "rgb")
    assert np.array_equal(frames[0].depth, d, equal_nan=True)
    _png(tmp_path / "rgb8.png", _rgb(2, 3))
    with pytest.raises(ValueError, match="rgb8.png"):
        read_kitti_depth(tmp_path / "rgb8.png")


def test_diode_npy(tmp_path):
    scan = tmp_path / "val" / "indoors" / "scene_00019" / "scan_00183"
    stem = "00019_00183_indoors_000_010"
    _png(scan / f"{stem}.png", _rgb(6, 8))
    depth = RNG.uniform(1, 10, (6, 8, 1)).astype(np.float32)
    mask = np.ones((6, 8), np.float32)
    mask[1, 1] = 0
    depth[2, 2, 0] = np.inf
    np.save(scan / f"{stem}_depth.npy", depth)
    np.save(scan / f"{stem}_depth_mask.npy", mask)
    fr = diode_frames(tmp_path)[0]
    assert np.isnan(fr.depth[1, 1]) and np.isnan(fr.depth[2, 2]) and fr.depth[0, 0] == depth[0, 0, 0]
    assert fr.env == "diode-indoors" and np.isclose(fr.K[0, 0], 886.81 * 8 / 1024)
    (scan / f"{stem}_depth.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="_depth.npy"):
        diode_frames(tmp_path)[0]


def test_yorkurban_gt(tmp_path):
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    up = np.array([0.1, -0.95, 0.2])
    up /= np.linalg.norm(up)
    zen = (K @ up)[:2] / (K @ up)[2]
    horizon = np.linalg.inv(K).T @ up  # image of the plane orthogonal to the vertical
    fs = cv2.FileStorage(str(tmp_path / "gt_data.yml"), cv2.FILE_STORAGE_WRITE)
    fs.write("horizon_lines", np.stack([horizon, horizon]))
    fs.write("zeniths", np.stack([zen, [np.nan, np.nan]]))
    fs.release()
    for k in range(2):
        _png(tmp_path / f"{k:03d}.jpg", _rgb(48, 64))
    frames = yorkurban_frames(tmp_path, K=K.astype(np.float32))
    for fr in frames:  # row 0 from the zenith, row 1 from the horizon line: same vertical
        assert np.allclose(fr.vp_dirs[0], up, atol=1e-5) and np.isnan(fr.vp_dirs[1:]).all()
    assert np.allclose(frames[0].vp_pixels[0], zen, atol=1e-2)
    h, z = read_yorkurban_gt(tmp_path / "gt_data.yml")
    assert h.shape == (2, 3) and z.shape == (2, 2)
    (tmp_path / "bad.yml").write_text("%YAML:1.0\nfoo: 1\n")
    with pytest.raises(ValueError, match="bad.yml"):
        read_yorkurban_gt(tmp_path / "bad.yml")


def test_split_classes_are_disjoint_and_grouped():
    names = [f"a{i}/c{j}" for i in range(10) for j in range(3)]
    splits = split_classes(names, seed=3, group=lambda n: n.split("/")[0])
    assert sorted(sum(splits.values(), [])) == sorted(names)
    groups = {s: {n.split("/")[0] for n in v} for s, v in splits.items()}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])
    assert splits == split_classes(names, seed=3, group=lambda n: n.split("/")[0])
    with pytest.raises(ValueError, match="fractions"):
        split_classes(names, (0.5, 0.5, 0.5))
