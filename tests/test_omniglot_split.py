"""Omniglot splits: alphabet-disjoint over the union of overlapping archives (fixtures, and the real archives)."""

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtml_core.data.loaders import omniglot_union_splits
from mtml_core.data.loaders.omniglot import alphabet
from training.data import class_source

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"


def _archive(path: Path, alphabets: dict[str, int]) -> Path:
    """A zip in the published layout: `<root>/<Alphabet>/characterNN/<n>.png`, 2 drawers per character."""
    png = cv2.imencode(".png", np.full((105, 105), 255, np.uint8))[1].tobytes()
    with zipfile.ZipFile(path, "w") as z:
        for a, n in alphabets.items():
            for c in range(1, n + 1):
                for d in (1, 2):
                    z.writestr(f"{path.stem}/{a}/character{c:02d}/{c:04d}_{d:02d}.png", png)
    return path


def _alphabets(split) -> set[str]:
    return {alphabet(c) for c in split.class_names()}


@pytest.fixture
def archives(tmp_path):
    # like small1 / small2: two alphabets (Greek, Latin) in both archives
    one = _archive(tmp_path / "small1.zip", {"Balinese": 3, "Aramaic": 2, "Greek": 4, "Korean": 3, "Latin": 5})
    two = _archive(tmp_path / "small2.zip", {"Greek": 4, "Katakana": 3, "Latin": 5, "Sanskrit": 2, "Tagalog": 2})
    return one, two


def test_union_split_is_alphabet_disjoint_and_deterministic(archives):
    one, two = archives
    parts = omniglot_union_splits(one, two, val_fraction=0.2)
    assert set(parts) == {"train", "val", "test"}
    alpha = {s: _alphabets(v) for s, v in parts.items()}
    # the shared alphabets are not tested on: the test split is the alphabets only the test archive holds
    assert alpha["test"] == {"Katakana", "Sanskrit", "Tagalog"}
    assert alpha["train"] | alpha["val"] == {"Balinese", "Aramaic", "Greek", "Korean", "Latin"}
    assert len(alpha["val"]) == 1 and not alpha["train"] & alpha["val"]
    # every class of the union (shared characters once) is in exactly one split
    names = [c for v in parts.values() for c in v.class_names()]
    assert len(names) == len(set(names)) == 3 + 2 + 4 + 3 + 5 + 3 + 2 + 2
    again = omniglot_union_splits([one], [two], val_fraction=0.2)
    assert {s: v.class_names() for s, v in again.items()} == {s: v.class_names() for s, v in parts.items()}
    assert "val" not in omniglot_union_splits(one, two, val_fraction=0.0)


def test_union_split_refuses_a_test_archive_without_new_alphabets(archives, tmp_path):
    one, _ = archives
    subset = _archive(tmp_path / "greek.zip", {"Greek": 4})
    with pytest.raises(ValueError, match="nothing is left to test on"):
        omniglot_union_splits(one, subset)
    with pytest.raises(ValueError, match="val_fraction"):
        omniglot_union_splits(one, archives[1], val_fraction=1.0)


def test_class_source_omniglot_splits_do_not_share_alphabets(archives):
    one, two = archives
    cfg = {"data": {"source": "omniglot", "omniglot_train": str(one), "omniglot_test": str(two),
                    "omniglot_val_fraction": 0.2, "pool": 4}, "model": {"input_hw": [28, 28]}}
    alpha = {s: _alphabets(class_source(cfg, s)) for s in ("train", "val", "test")}
    assert not alpha["train"] & alpha["val"] and not alpha["train"] & alpha["test"] and not alpha["val"] & alpha["test"]
    assert alpha["test"] == {"Katakana", "Sanskrit", "Tagalog"}
    cfg["data"]["omniglot_val_fraction"] = 0.0
    with pytest.raises(ValueError, match="no alphabets left for the 'val' split"):
        class_source(cfg, "val")


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real Omniglot archives not present at {DATA}")
def test_real_archives_split_by_alphabet_over_their_union():
    parts = omniglot_union_splits(DATA / "images_background_small1.zip", DATA / "images_background_small2.zip")
    alpha = {s: _alphabets(v) for s, v in parts.items()}
    assert sum(len(a) for a in alpha.values()) == len(set().union(*alpha.values())) == 8
    assert alpha["test"] == {"Japanese_(katakana)", "Sanskrit", "Tagalog"}
    assert {"Greek", "Latin"} <= alpha["train"] | alpha["val"]
    assert len(parts["test"].class_names()) == 106  # not 156: Greek and Latin (50 characters) are no longer tested
