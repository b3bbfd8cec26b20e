"""Data specs (a dataset of datasets): parsing, validation errors, domains per split, tasks per source."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rgbd_helpers import write_sequence

from mtml_core.data.sources import LOADERS, SpecError, category_name, load_sources, task_domains

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _places(root: Path) -> None:
    lines = []
    for k, cat in enumerate(("b/bedroom", "k/kitchen", "o/office", "t/track/outdoor")):
        folder = root / "images" / "train" / cat
        folder.mkdir(parents=True)
        for j in range(5):
            assert cv2.imwrite(str(folder / f"{j + 1:08d}.jpg"), np.full((16, 16, 3), 10 * k, np.uint8))
        lines.append(f"/{cat} {k}")
    (root / "categories.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def data(tmp_path):
    write_sequence(tmp_path / "data" / "rooms" / "seq-01", 20)
    write_sequence(tmp_path / "data" / "rooms" / "seq-02", 6)
    write_sequence(tmp_path / "data" / "rooms" / "seq-03", 6)
    _places(tmp_path / "data" / "places")
    return tmp_path


def _spec(tmp_path: Path, sources: list, root: str = "data") -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"root": root, "sources": sources}))
    return path


ROOMS = {"name": "rooms", "loader": "rgbd_sequence", "path": "rooms", "tasks": ["depth"],
         "split": {"by": "frame", "train": 0.5, "val": 0.25, "test": 0.25, "gap": 2}}
PLACES = {"name": "places", "loader": "places", "path": "places", "tasks": ["class"], "weight": 2,
          "split": {"by": "item", "train": 0.6, "val": 0.4}}


def test_frame_split_blocks_with_gaps_and_tasks_per_source(data):
    rooms, places = load_sources(_spec(data, [ROOMS, PLACES]))
    assert rooms.weight == 1.0 and places.weight == 2.0 and rooms.tasks == ("depth",)
    train, val, test = (rooms.domains(s) for s in ("train", "val", "test"))
    assert [d.name for d in train] == ["seq-01", "seq-02", "seq-03"]  # one domain per sequence folder
    # seq-01: 20 frames, 2 gaps of 2 -> 16 usable: frames 0-7 train, 10-13 val, 16-19 test
    values = {s: [int(round(d.frame(i).depth[0, 0] * 1000)) - 1000 for i in range(len(d))]
              for s, d in (("train", train[0]), ("val", val[0]), ("test", test[0]))}
    assert values == {"train": list(range(8)), "val": [10, 11, 12, 13], "test": [16, 17, 18, 19]}
    fr = train[0].frame(0)
    assert fr.normals is None and fr.K is not None and fr.env == "rooms/seq-01"  # normals not asked for
    # 6 frames -> 2 usable (largest remainder): frame 0 train, frame 3 val, no test: no test domain
    assert [len(d) for d in train[1:]] == [1, 1] and [len(d) for d in val] == [4, 1, 1] and len(test) == 1
    assert int(round(val[1].frame(0).depth[0, 0] * 1000)) == 1003
    # the same data labelled with normals: pseudo ground truth derived on access
    rooms_n = load_sources(_spec(data, [{**ROOMS, "tasks": ["depth", "normals"]}]))[0]
    n = rooms_n.domains("train")[0].frame(0).normals
    assert n.shape == (24, 32, 3) and np.allclose(n[12, 16], [0, 0, -1], atol=1e-4)


def test_class_sources_split_by_item_and_by_category(data):
    places = load_sources(_spec(data, [PLACES]))[0]
    train, val = places.classes("train"), places.classes("val")
    assert train.class_names() == val.class_names() == ["b/bedroom", "k/kitchen", "o/office", "t/track/outdoor"]
    assert train.num_items("k/kitchen") == 3 and val.num_items("k/kitchen") == 2 and places.classes("test") is None
    assert not {str(p) for p in train.items["k/kitchen"]} & {str(p) for p in val.items["k/kitchen"]}
    (dom,) = places.domains("val")
    fr = dom.frame(2)  # class-major: the kitchen's first val image
    assert (fr.category, fr.category_name, fr.depth) == (1, "kitchen", None) and fr.rgb[0, 0, 0] == 10
    assert dom.category_names[3] == "track/outdoor" and category_name("abbey") == "abbey"
    by_cat = load_sources(_spec(data, [{**PLACES, "split": {"by": "category", "train": 0.5, "val": 0.25,
                                                             "test": 0.25}}]))[0]
    names = [set(by_cat.classes(s).class_names()) for s in ("train", "val", "test")]
    assert sum(map(len, names)) == 4 and not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])


def test_split_by_domain_and_whole_source_and_weights(data):
    rooms = {**ROOMS, "split": {"by": "domain", "train": 0.34, "val": 0.33, "test": 0.33, "seed": 1}}
    held = {**ROOMS, "name": "held", "split": "test", "weight": 3}
    a, b = load_sources(_spec(data, [rooms, held]))
    names = [[d.name for d in a.domains(s)] for s in ("train", "val", "test")]
    assert sorted(sum(names, [])) == ["seq-01", "seq-02", "seq-03"] and all(len(n) == 1 for n in names)
    assert b.domains("train") == [] and len(b.domains("test")) == 3
    weights = task_domains([a, b], "depth", "test")
    assert [w for _, w in weights] == [1.0, 1.0, 1.0, 1.0]  # `held`: weight 3 shared by its 3 domains
    assert task_domains([a, b], "normals", "test") == []
    with pytest.raises(ValueError, match="split must be one of"):
        a.domains("training")


def test_builtin_world_source(tmp_path):
    spec = _spec(tmp_path, [{"name": "world", "loader": "synth", "tasks": ["depth", "vp"],
                             "options": {"frames": 2, "size": [24, 32]}}])
    (world,) = load_sources(spec)
    doms = world.domains("test")
    assert doms and all(len(d) == 2 for d in doms)
    fr = doms[0].frame(1)
    assert fr.rgb.shape == (24, 32, 3) and fr.depth.shape == (24, 32) and fr.normals is None
    assert fr.vp_dirs.shape == (3, 3) and fr.category is None
    assert {d.name for d in world.domains("train")}.isdisjoint(d.name for d in doms)


@pytest.mark.parametrize("entry,message", [
    ({**ROOMS, "weigth": 1}, r"sources\[0\] \(rooms\): unknown key\(s\) \['weigth'\]"),
    ({**ROOMS, "loader": "nope"}, r"sources\[0\] \(rooms\)\.loader: 'nope' is not one of"),
    ({**ROOMS, "tasks": ["depth", "vp"]}, r"\.tasks: loader 'rgbd_sequence' does not label \['vp'\]"),
    ({**ROOMS, "tasks": []}, r"\.tasks: required"),
    ({**ROOMS, "weight": 0}, r"\.weight: a positive number"),
    ({**ROOMS, "split": {"by": "frame", "train": 0.5, "val": 0.2}}, r"\.split: train \+ val \+ test must be 1"),
    ({**ROOMS, "split": {"by": "category", "train": 1}}, r"\.split\.by: must be one of \['domain', 'frame'\]"),
    ({**ROOMS, "split": "training"}, r"\.split: 'training' is not one of"),
    ({**ROOMS, "split": None}, r"\.split: required"),
    ({**ROOMS, "options": {"scale": 1}}, r"\.options\.scale: unknown for loader 'rgbd_sequence'"),
    ({**ROOMS, "options": {"K": [[1, 0], [0, 1]]}}, r"\.options\.K: expected a 3x3 list"),
    ({"name": "w", "loader": "synth", "tasks": ["vp"], "split": "test"}, r"\(w\)\.split: the built-in world"),
    ({k: v for k, v in ROOMS.items() if k != "path"}, r"\(rooms\)\.path: required"),
])
def test_spec_errors_name_the_source_and_key(data, entry, message):
    with pytest.raises(SpecError, match=message):
        load_sources(_spec(data, [entry]))


def test_missing_or_malformed_datasets_name_the_path(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="data spec not found"):
        load_sources(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("sources: [\n")
    with pytest.raises(SpecError, match="bad.yaml: not valid YAML"):
        load_sources(tmp_path / "bad.yaml")
    with pytest.raises(SpecError, match="repeated: \\['rooms'\\]"):
        load_sources(_spec(data, [ROOMS, ROOMS]))
    with pytest.raises(FileNotFoundError, match=r"source 'rooms' \(rgbd_sequence\) at .*nowhere: .*7-Scenes"):
        load_sources(_spec(data, [{**ROOMS, "path": "nowhere"}]))
    (data / "data" / "places" / "categories.txt").write_text("/b/bedroom zero\n")
    with pytest.raises(SpecError, match=r"source 'places' \(places\) at .*malformed .*categories.txt line 1"):
        load_sources(_spec(data, [PLACES]))
    with pytest.raises(SpecError, match="split by domain needs several domains"):
        load_sources(_spec(data, [{**ROOMS, "path": "rooms/seq-01", "split": {"by": "domain", "train": 1}}]))
    # `root` given to load_sources overrides the spec's
    assert len(load_sources(_spec(data, [ROOMS], root="elsewhere"), root=data / "data")[0].domains("train")) == 3


def test_every_loader_is_documented():
    assert all(spec.doc and spec.labels for spec in LOADERS.values())
    assert {"synth", "rgbd_sequence", "nyu_sync", "diode", "depth_annotations", "places", "yorkurban"} <= set(LOADERS)


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real sample data not present at {DATA}")
def test_example_spec_opens_the_real_samples():
    sources = {s.name: s for s in load_sources(ROOT / "training" / "configs" / "data_real.yaml")}
    assert set(sources) == {"world", "miniplaces", "nyu", "kitti", "redkitchen", "yorkurban"}
    places = sources["miniplaces"]
    assert len(places.classes("train").class_names()) == 100 and places.classes("train").num_items("k/kitchen") == 80
    kitchen = places.classes("val")
    assert kitchen.num_items("k/kitchen") == 20 and kitchen.rgb("k/kitchen", 0).shape == (128, 128, 3)
    (room,) = sources["redkitchen"].domains("test")
    assert len(room) == 500 and sources["redkitchen"].domains("train") == []
    fr = room.frame(0)
    assert fr.depth.shape == (480, 640) and np.isfinite(fr.normals).all(-1).mean() > 0.5 and fr.vp_dirs is None
    (york,) = sources["yorkurban"].domains("test")
    assert len(york) == 21 and np.isfinite(york.frame(0).vp_dirs[0]).all() and york.frame(0).depth is None
    nyu = sources["nyu"].domains("train")[0].frame(0)
    assert nyu.depth is not None and nyu.normals is not None
    assert sources["kitti"].domains("train")[0].frame(0).normals is None
