"""Loaders on the real public samples in ../shared/data (skipped when that folder is absent)."""

from pathlib import Path

import numpy as np
import pytest

from mtml_core.data.episodes import ClassEpisodeSampler
from mtml_core.data.loaders import (
    annotated_depth_frames,
    load_omniglot,
    nyu_sync_frames,
    omniglot_splits,
    read_yorkurban_gt,
    yorkurban_frames,
)
from mtml_core.data.loaders.yorkurban import YORK_URBAN_K, vertical_direction

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real sample data not present at {DATA}")


def test_omniglot_archives():
    data = load_omniglot(sorted((DATA / "omniglot").glob("*.zip")))
    assert len(data.class_names()) >= 100 and all(data.num_items(c) == 20 for c in data.class_names()[:10])
    img = data.rgb(data.class_names()[0], 0)
    assert img.shape == (105, 105, 3) and set(np.unique(img)) <= {0, 255}
    splits = omniglot_splits(data)
    ep = ClassEpisodeSampler(splits["test"], n_way=5, k_shot=1, n_query=5, size=(28, 28)).sample(0)
    assert ep.query_x.shape == (25, 3, 28, 28)


@pytest.mark.parametrize("name,scale_max", [("nyu_demo", 10.5), ("kitti_demo", 90.0)])
def test_depth_demo_annotations(name, scale_max):
    frames = annotated_depth_frames(DATA / "depth" / name / "test_annotations.json")
    assert len(frames) == 3
    for fr in frames:
        valid = np.isfinite(fr.depth)
        assert 0.05 < valid.mean() < 1 and (fr.depth[valid] > 0).all() and fr.depth[valid].max() < scale_max
        assert fr.depth.shape == fr.rgb.shape[:2] and fr.K[0, 0] > 400


def test_nyu_sync_folder_matches_annotations():
    sync = nyu_sync_frames(DATA / "depth" / "nyu_demo")
    ann = annotated_depth_frames(DATA / "depth" / "nyu_demo" / "test_annotations.json")
    assert len(sync) == 3
    assert np.array_equal(sync[0].depth, ann[0].depth, equal_nan=True)


def test_yorkurban_vertical_from_zenith_agrees_with_horizon():
    frames = yorkurban_frames(DATA / "vp" / "yorkurban")
    assert len(frames) == 102
    fr = frames[0]
    assert fr.rgb.shape == (480, 640, 3) and fr.vp_dirs[0, 1] < -0.9 and np.isnan(fr.vp_dirs[1:]).all()
    horizons, zeniths = read_yorkurban_gt(DATA / "vp" / "yorkurban" / "gt_data.yml")
    angles = []
    for k in range(len(horizons)):
        a = vertical_direction(zeniths[k], horizons[k], YORK_URBAN_K)
        b = vertical_direction(np.full(2, np.nan), horizons[k], YORK_URBAN_K)
        angles.append(np.degrees(np.arccos(min(1.0, abs(a @ b)))))
    # two independent annotations of one direction: consistent to about a degree with these intrinsics
    assert np.median(angles) < 1.0 and np.max(angles) < 3.0
