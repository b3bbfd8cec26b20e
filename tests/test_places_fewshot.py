"""Few-shot episodes from a data spec's class sources split by category (the MiniPlaces Table 2 analogue)."""

import numpy as np
import pytest
import torch
import yaml
from places_helpers import places_spec

from training import data as episodes
from training import reproduce_table2, runconfig
from training.evaluate import nearest_class_mean, pixel_baseline

CATEGORIES = [f"{c[0]}/{c}" for c in ("abbey", "bar", "canyon", "desert", "field", "garage", "harbor", "igloo",
                                      "jail", "kitchen")] + ["t/track/outdoor"]


def fewshot_spec(tmp_path, per_class: int = 4) -> str:
    """A MiniPlaces-layout folder of one grey level per category and image, split by category."""
    return places_spec(tmp_path, CATEGORIES, per_class,
                       lambda i, j: np.full((24, 24, 3), (20 * i + 3 * j) % 256, np.uint8),
                       {"by": "category", "train": 0.6, "val": 0.2, "test": 0.2, "seed": 3})


def config(spec: str, *extra: str) -> dict:
    return runconfig.load(runconfig.paper_config_path(), [
        "data.source=spec", f"data.spec={spec}", "model.tasks=[class]", "model.input_hw=[16,16]", "model.n_way=2",
        "model.filters=8", "data.k_shot=1", "data.class_query=2", "data.meta_batch=2", "meta.mode=literal",
        "train.steps=1", "train.val_every=1", "train.save_every=1", "train.val_episodes=2", "eval.k_shot=1",
        "eval.batchnorm=batch", "train.threads=1", *extra])


def test_category_splits_are_disjoint_and_episodes_come_from_their_split(tmp_path):
    cfg = config(fewshot_spec(tmp_path))
    names = {s: set(episodes.class_source(cfg, s).class_names()) for s in episodes.SPLITS}
    assert [len(names[s]) for s in episodes.SPLITS] == [7, 2, 2]  # 11 categories, 0.6 / 0.2 / 0.2
    assert not (names["train"] & names["val"] or names["train"] & names["test"] or names["val"] & names["test"])
    assert set().union(*names.values()) == set(CATEGORIES)
    assert episodes.class_names(cfg)["test"] == sorted(names["test"])
    sampler = episodes.samplers(cfg, "test", k_shot=1, class_query=3)["class"]
    ep = sampler.sample(5)
    assert set(ep.class_names) == names["test"]  # 2-way over the 2 test categories
    assert ep.support_x.shape == (2, 3, 16, 16) and ep.query_x.shape == (6, 3, 16, 16)
    assert ep.support_y.tolist() == [0, 1] and ep.query_y.tolist() == [0, 0, 0, 1, 1, 1]
    # every image of a class comes from its category: one grey level per category, within the category's range
    for x, y in ((ep.support_x, ep.support_y), (ep.query_x, ep.query_y)):
        for label in (0, 1):
            level = x[y == label].mean((1, 2, 3))
            assert float(level.max() - level.min()) < 0.3
    assert torch.equal(sampler.sample(5).query_x, ep.query_x)  # seeded


def test_spec_source_config_is_checked(tmp_path):
    spec = fewshot_spec(tmp_path)
    with pytest.raises(ValueError, match="set data.spec"):
        runconfig.load(runconfig.paper_config_path(), ["data.source=spec", "model.tasks=[class]"])
    with pytest.raises(ValueError, match="class labels only"):
        runconfig.load(runconfig.paper_config_path(), ["data.source=spec", f"data.spec={spec}"])


def test_nearest_class_mean_baseline():
    sx = torch.tensor([[0.0], [1.0], [10.0], [11.0]]).view(4, 1, 1, 1)
    sy = torch.tensor([0, 0, 1, 1])
    qx = torch.tensor([[2.0], [9.0], [5.0]]).view(3, 1, 1, 1)
    assert nearest_class_mean(sx, sy, qx).tolist() == [0, 1, 0]  # means 0.5 and 10.5


def test_miniplaces_grid_trains_evaluates_and_adds_the_pixel_baseline(tmp_path):
    spec = fewshot_spec(tmp_path, per_class=16)  # the preset tests on 15 queries per class
    for preset in reproduce_table2.PLACES_PRESETS.values():  # every preset is a valid config
        cfg = runconfig.load(runconfig.paper_config_path(), [*reproduce_table2.PLACES_COMMON, *preset["train"],
                                                             *reproduce_table2.entries(["pam"], [5])[0].overrides])
        assert cfg["data"]["source"] == "spec" and cfg["model"]["tasks"] == ["class"]
    over = ["model.input_hw=[16,16]", "model.filters=8", "model.n_way=2", f"data.spec={spec}", "train.steps=1",
            "train.val_episodes=2", "data.class_query=2", "train.threads=1", "train.max_minutes=null"]
    reproduce_table2.main(["--dataset", "miniplaces", "--methods", "anil", "--shots", "1", "--episodes", "3",
                           "--out", str(tmp_path / "grid"), "--no-progress", *sum((["--set", o] for o in over), [])])
    results = yaml.safe_load((tmp_path / "grid" / "results.json").read_text())
    assert sorted(results) == ["anil_1shot", "pixels_1shot"]
    assert results["anil_1shot"]["trained_steps"] == 1 and results["anil_1shot"]["k_shot"] == 1
    assert results["pixels_1shot"]["tasks"]["class"]["adapted"]["acc_pct"][2] == 3
    md = (tmp_path / "grid" / "table2.md").read_text()
    assert "| ANIL |" in md and "| Nearest class mean, raw pixels |" in md
    direct = pixel_baseline(config(spec, "model.n_way=2"), "test", 3, 1, 15)  # same episodes as the grid's
    assert direct["tasks"]["class"]["adapted"]["acc_pct"][0] == results["pixels_1shot"]["tasks"]["class"][
        "adapted"]["acc_pct"][0]
