"""Real named categories in a world run: a data spec's class sources become named class rows after the place types."""

import numpy as np
import pytest
import torch
import yaml
from places_helpers import places_spec as write_places_spec

from mtml_core.checkpoint import load_checkpoint
from mtml_core.config import ModelConfig
from mtml_core.data.named_images import NamedImages
from mtml_core.data.sources import load_sources
from mtml_core.data.world import PLACE_TYPES
from mtml_core.model import MultiTaskModel
from training import data as episodes
from training import runconfig
from training.train import imprint_named_rows, train, transplant

CATEGORIES = ("c/corridor", "k/kitchen", "t/track/outdoor")


def coloured_square(i: int, j: int) -> np.ndarray:
    img = np.full((40, 40, 3), 60 * i + 10 * j, np.uint8)
    img[: 10 * (i + 1)] = 250  # a category-specific bright band at the top
    return img


def places_spec(tmp_path, per_class: int = 5) -> str:
    """MiniPlaces-layout coloured squares, every category's items split in order 60 / 40."""
    return write_places_spec(tmp_path, CATEGORIES, per_class, coloured_square, {"by": "item", "train": 0.6,
                                                                                  "val": 0.4}, ".jpg")


def test_named_images_join_rows_by_name_and_are_cropped_to_the_camera_aspect(tmp_path):
    sources = load_sources(places_spec(tmp_path))
    train_set = NamedImages.from_sources(sources, "train", (24, 32), PLACE_TYPES)
    val_set = NamedImages.from_sources(sources, "val", (24, 32), train_set.names)
    # id order, letter folder dropped; "corridor" joins the place type's row
    assert train_set.names == [*PLACE_TYPES, "kitchen", "track/outdoor"]
    assert len(train_set) == 9 and len(val_set) == 6  # items 1-3 train, 4-5 val of each category
    assert train_set.images.shape == (9, 32, 32, 3)  # width scaled to 32, height kept square for cropping
    x, y = val_set.batch(np.arange(6))
    corridor = PLACE_TYPES.index("corridor")
    assert x.shape == (6, 3, 24, 32) and sorted(y.tolist()) == sorted([corridor] * 2 + [6, 6, 7, 7])
    centre = val_set.crops(np.array([0]))[0]
    assert np.array_equal(centre, val_set.images[0, 4:28])  # the centre crop without a generator
    rng = np.random.default_rng(0)
    assert val_set.crops(np.arange(6), rng).shape == (6, 24, 32, 3)


def test_world_run_with_a_spec_names_places_and_real_categories(tmp_path):
    spec = places_spec(tmp_path)
    cfg = runconfig.load(runconfig.default_config_path(), [
        "model.widths=[8,16,16,24]", "model.decoder_filters=[16,8,8]", "model.input_hw=[32,48]", "model.n_way=12",
        "model.attention_dim=16", "model.attention_heads=2", "model.attention_layers=1", f"data.spec={spec}",
        "data.class_images=4", "data.envs_per_step=2", "data.k_shot=1", "data.domain_query=1", "data.workers=0",
        "train.steps=2", "train.val_every=2", "train.save_every=2", "train.val_episodes=2", "train.threads=1",
        "train.bf16=false", "train.max_minutes=null"])
    batch = next(episodes.train_batches({**cfg, "model": {**cfg["model"], "class_names": episodes.named_classes(cfg)}},
                                        ["class"], 0))
    _, _, qx, qy = batch["class"]
    assert qx.shape[1] == 2 + 4  # 2 world queries + 4 real images
    run = train(cfg, tmp_path / "run", progress=False)
    model, doc = load_checkpoint(run)
    assert list(model.cfg.class_names) == [*PLACE_TYPES, "kitchen", "track/outdoor"]
    assert doc["classes"]["val"] == list(model.cfg.class_names)
    wider = type(model)(type(model.cfg).from_dict({**model.cfg.to_dict(), "n_way": 16}))  # 12 → 16 rows
    fresh = transplant(wider, model)
    # the named rows and label columns carry over; the new free rows and their one-hot columns start fresh
    assert sorted(fresh) == ["attention.class.embed.weight (kept [:16, :140])",
                             "heads.class.prototypes (kept [:12, :128])"]
    assert torch.equal(wider.heads["class"].prototypes[:12], model.heads["class"].prototypes)
    assert torch.equal(wider.attention["class"].embed.weight[:, :140], model.attention["class"].embed.weight)


def test_a_spec_with_depth_sources_or_without_the_world_is_refused(tmp_path):
    with pytest.raises(ValueError, match="data.spec"):
        runconfig.load(runconfig.paper_config_path(), [f"data.spec={places_spec(tmp_path)}"])
    spec = tmp_path / "depth.yaml"
    spec.write_text(yaml.safe_dump({"root": str(tmp_path), "sources": [
        {"name": "seq", "loader": "rgbd_sequence", "path": "nope", "tasks": ["depth"], "split": "train"}]}))
    cfg = runconfig.load(runconfig.default_config_path(), [f"data.spec={spec}"])
    with pytest.raises(FileNotFoundError, match="seq"):
        episodes.named_classes(cfg)


def test_imprinting_aims_new_rows_at_their_images_and_leaves_the_others(tmp_path):
    sources = load_sources(places_spec(tmp_path))
    cfg = ModelConfig(arch="unet", widths=(8, 16, 16, 24), decoder_filters=(16, 8, 8), input_hw=(24, 32), n_way=12,
                      class_names=(*PLACE_TYPES, "kitchen", "track/outdoor"), attention_dim=16, attention_heads=2,
                      attention_layers=1)
    torch.manual_seed(0)
    model = MultiTaskModel(cfg).eval()
    images = NamedImages.from_sources(sources, "train", (24, 32), cfg.class_names)
    before = model.heads["class"].prototypes.detach().clone()
    imprint_named_rows(model, images, ["kitchen", "track/outdoor"])
    after = model.heads["class"].prototypes.detach()
    assert torch.equal(after[:6], before[:6]) and torch.equal(after[8:], before[8:])  # place types, free rows kept
    for row in (6, 7):
        x, _ = images.batch(np.flatnonzero(images.labels == row), None, cfg.mean, cfg.std)
        with torch.no_grad():
            emb = model.heads["class"].embed(model.head_input("class", model.features(x, model.prior_multiplier(
                "class"))))
        centre = torch.nn.functional.normalize(emb.mean(0), dim=0)
        assert torch.allclose(after[row], centre, atol=1e-5)
    imprint_named_rows(model, images, [])  # a further stage from a model that already names every category
    assert torch.equal(model.heads["class"].prototypes.detach(), after)
