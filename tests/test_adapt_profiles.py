"""Environment profile store: strict JSON schema (ValueError naming the field, never another exception), names,
size limits checked before reading, crash-safe saves under kill -9, clean-up of leftovers, older profiles."""

import copy
import importlib.util
import json
import os
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest

from mtml_core.adapt.profiles import MAX_JSON_BYTES, MAX_TENSORS_BYTES, NAME_RE, Profile, ProfileStore, check_name

ROOT = Path(__file__).resolve().parents[1]
SHA = "ab" * 32
SPEC = {"depth": {"w": [4, 3], "b": [4]}, "class": {"w": [3, 2]}}
M, D = 6, 5


def store(root):
    return ProfileStore(root, SHA, SPEC, M, D)


def make(name="lab", value=1.0, class_names=("door", "hall")):
    return Profile(name, {"depth": np.full(M, value, np.float32), "class": None},
                   {"depth": {"w": np.full((4, 3), value, np.float32), "b": np.zeros(4, np.float32)},
                    "class": {"w": np.ones((3, 2), np.float32)}},
                   tuple(class_names), np.full((2, D), value, np.float32),
                   {"depth": {"shots": 3, "loss_before": 0.5, "loss_after": 0.25, "loss_initial": float("inf")}})


@pytest.fixture
def saved(tmp_path):
    s = store(tmp_path)
    meta = s.save(make())
    return s, meta, json.loads(meta.read_text())


def test_round_trip_and_versioned_tensors_file(tmp_path):
    s = store(tmp_path)
    meta = s.save(make(value=1.0))
    doc = json.loads(meta.read_text())
    first = doc["tensors"]
    assert re.fullmatch(r"lab\.[0-9a-f]{16}\.safetensors", first) and doc["tensors_sha256"].startswith(first[4:20])
    assert doc["stats"]["depth"]["loss_initial"] is None  # non-finite numbers are stored as null (strict JSON)
    s.save(make(value=2.0))
    second = json.loads(meta.read_text())["tensors"]
    assert second != first and not (tmp_path / first).exists()  # the old tensors go once the new JSON is in place
    p = s.load("lab")
    assert np.all(p.multipliers["depth"] == 2.0) and p.multipliers["class"] is None
    assert p.class_names == ("door", "hall") and p.heads["class"]["w"].shape == (3, 2)
    assert s.summaries() == [{"name": "lab", "created": p.created, "tasks": ["class", "depth"],
                              "class_names": ["door", "hall"], "stats": p.stats}]
    s.delete("lab")
    assert sorted(x.name for x in tmp_path.iterdir()) == [".lock"]


BAD_FIELDS = [
    ("tasks", 5), ("tasks", None), ("tasks", ["vp"]), ("tasks", [1]), ("tasks", ["depth", "depth"]),
    ("tasks", {"depth": 1}),
    ("class_names", 5), ("class_names", None), ("class_names", [1]), ("class_names", [""]), ("class_names", [None]),
    ("class_names", ["x" * 65]), ("class_names", ["a\nb"]), ("class_names", ["bell\x07"]), ("class_names", [" pad"]),
    ("class_names", ["\ud800"]), ("class_names", ["same", "same"]), ("class_names", [f"c{i}" for i in range(300)]),
    ("class_names", [["nested"]]),
    ("stats", [1, 2]), ("stats", None), ("stats", {"depth": 5}), ("stats", {"depth": {"bogus": 1}}),
    ("stats", {"vp": {}}), ("stats", {"depth": {"shots": -1}}), ("stats", {"depth": {"shots": True}}),
    ("stats", {"depth": {"loss_before": "x"}}), ("stats", {"depth": {"loss_before": [1]}}),
    ("stats", {"depth": {"baseline": "guess"}}),
    ("format", "mtml-profile-0"), ("format", None), ("name", "other"), ("name", 5), ("created", 5),
    ("created", "x" * 100), ("model_sha256", 5), ("model_sha256", "cd" * 32), ("tensors", "../escape.safetensors"),
    ("tensors", None), ("tensors", "lab.0000000000000000.safetensors"), ("tensors_sha256", None),
    ("tensors_sha256", "zz" * 32),
]


@pytest.mark.parametrize(("key", "value"), BAD_FIELDS, ids=[f"{k}={str(v)[:20]!r}" for k, v in BAD_FIELDS])
def test_wrong_fields_raise_value_error_naming_the_field(saved, key, value):
    s, meta, doc = saved
    doc[key] = value
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=key if key != "model_sha256" or value == 5 else "another model"):
        s.load("lab")
    (entry,) = s.summaries()
    assert entry["name"] == "lab" and "error" in entry


@pytest.mark.parametrize("text", ["[]", "5", "null", '"x"', "{}", '{"format": "mtml-profile-1"}', "[" * 100_000,
                                  "{\"a\": " * 50_000, b"\xff\xfe".decode("latin-1"), "NaN"])
def test_malformed_json_documents_raise_value_error(saved, text):
    s, meta, doc = saved
    meta.write_text(text, encoding="latin-1")
    with pytest.raises(ValueError):
        s.load("lab")
    assert "error" in s.summaries()[0]


def test_extra_and_missing_fields_are_refused(saved):
    s, meta, doc = saved
    meta.write_text(json.dumps({**doc, "surprise": 1}))
    with pytest.raises(ValueError, match="unknown fields"):
        s.load("lab")
    meta.write_text(json.dumps({k: v for k, v in doc.items() if k != "stats"}))
    with pytest.raises(ValueError, match="missing fields"):
        s.load("lab")


JSON_VALUES = [None, True, False, 0, -1, 7, 2**70, 0.5, -1e308, "", "depth", "x" * 300, "\x00", [], [1], ["depth"],
               ["class", "depth"], [[]], {}, {"depth": {}}, {"depth": {"shots": 1}}, {"x": None}]


def test_random_mutations_only_ever_raise_value_error(saved):
    """Seeded fuzz: any value in any place of the JSON (also nested) gives a profile or a ValueError."""
    s, meta, doc = saved
    rng = random.Random(12)
    for _ in range(300):
        bad = copy.deepcopy(doc)
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(sorted(bad))
            target = bad[key]
            if isinstance(target, dict) and target and rng.random() < 0.5:
                inner = rng.choice(sorted(target))
                if isinstance(target[inner], dict) and target[inner] and rng.random() < 0.5:
                    target[inner][rng.choice(sorted(target[inner]))] = rng.choice(JSON_VALUES)
                else:
                    target[inner] = rng.choice(JSON_VALUES)
            elif isinstance(target, list) and target and rng.random() < 0.5:
                target[rng.randrange(len(target))] = rng.choice(JSON_VALUES)
            else:
                bad[key] = rng.choice(JSON_VALUES)
        meta.write_text(json.dumps(bad))
        try:
            s.load("lab")
        except ValueError:
            pass
        for entry in s.summaries():  # never raises
            assert entry["name"] == "lab"


def test_wrong_tensors_are_refused(saved):
    s, meta, doc = saved
    from safetensors.numpy import save

    for tensors, message in [({"multiplier.depth": np.ones(M, np.float64)}, "dtype"),
                             ({"multiplier.depth": np.ones(M + 1, np.float32)}, "does not fit"),
                             ({"head.class.w": np.ones((3, 2), np.float32)}, "'tasks'"),
                             ({"bogus": np.ones(1, np.float32)}, "does not fit")]:
        blob = save(tensors)
        import hashlib

        digest = hashlib.sha256(blob).hexdigest()
        name = f"lab.{digest[:16]}.safetensors"
        (s.root / name).write_bytes(blob)
        tasks = ["depth"] if "class" not in next(iter(tensors)) else []
        meta.write_text(json.dumps({**doc, "tensors": name, "tensors_sha256": digest, "tasks": tasks,
                                    "stats": {}}))
        with pytest.raises(ValueError, match=message):
            s.load("lab")


def test_class_head_needs_class_names(saved):
    s, meta, doc = saved
    with pytest.raises(ValueError, match="class_names"):
        s.save(make(class_names=()))
    meta.write_text(json.dumps({**doc, "class_names": []}))  # checked against the tensors: on load, not in lists
    with pytest.raises(ValueError, match="class_names"):
        s.load("lab")


@pytest.mark.parametrize("name", ["lab\n", "lab.v2", "x" * 65, "", ".lab", "-lab", "a b", "ä", "lab/..", None, 3])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="environment name"):
        check_name(name)
    with pytest.raises(ValueError, match="environment name"):
        store(tmp_path).save(make(name=name))
    assert not tmp_path.exists() or not list(tmp_path.glob("*.json"))


def test_name_rule_and_srv_comments_agree():
    assert check_name("x" * 64) and check_name("Lab_2-b") and NAME_RE.pattern.startswith("[A-Za-z0-9]")
    srv = ROOT / "ros2_ws" / "src" / "mtml_interfaces" / "srv"
    for file in ("Adapt.srv", "Collect.srv", "Profile.srv"):
        text = (srv / file).read_text()
        assert "1-64 letters, digits, '_' or '-', starting with a letter or digit (no '.')" in text, file


def test_oversized_and_special_files_are_refused_before_reading(saved):
    s, meta, doc = saved
    data = s.root / doc["tensors"]
    with open(data, "r+b") as fh:
        fh.truncate(3 * 2**30)  # sparse: instant to make, 3 GiB to read
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=f"more than the {MAX_TENSORS_BYTES}-byte limit"):
        s.load("lab")
    assert "error" in s.summaries()[0]
    assert time.perf_counter() - t0 < 1.0  # nothing was hashed or read
    with open(meta, "r+b") as fh:
        fh.truncate(3 * 2**30)
    with pytest.raises(ValueError, match=f"more than the {MAX_JSON_BYTES}-byte limit"):
        s.read_meta("lab")
    meta.unlink()
    os.mkfifo(meta)  # would block a plain open() forever
    with pytest.raises(ValueError, match="not a regular file"):
        s.load("lab")
    assert "error" in s.summaries()[0]


def test_leftovers_are_cleaned_when_a_store_is_opened(saved):
    s, meta, doc = saved
    root = s.root
    junk = ["lab.json.tmp", "lab.0123456789abcdef.safetensors.tmp", "lab.0123456789abcdef.safetensors",
            "gone.fedcba9876543210.safetensors", ".recognition.json.tmp"]
    keep = ["notes.txt", "other.tmp", "broken.0123456789abcdef.safetensors", "broken.json"]
    for name in junk + keep:
        (root / name).write_text("x")
    store(root)
    left = sorted(p.name for p in root.iterdir())
    assert left == sorted([".lock", "lab.json", doc["tensors"], *keep])  # an unreadable JSON keeps its files
    assert store(root).load("lab").name == "lab"


def test_a_json_naming_another_profiles_tensors_never_removes_them(saved):
    s, meta, doc = saved
    yard = json.loads(s.save(make("yard", value=3.0)).read_text())
    meta.write_text(json.dumps({**doc, "tensors": yard["tensors"]}))  # hand-edited: points at yard's file
    s.save(make("lab", value=4.0))
    s.delete("lab")
    store(s.root)
    assert s.load("yard").multipliers["depth"][0] == 3.0


def test_copy_takes_the_json_and_the_tensors_it_names(saved, tmp_path):
    s, meta, doc = saved
    out = s.copy("lab", tmp_path / "elsewhere")
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["lab.json", doc["tensors"]])
    assert store(out.parent).load("lab").class_names == ("door", "hall")


def test_older_profiles_still_load_and_migrate(saved):
    s, meta, doc = saved
    legacy = s.root / "lab.safetensors"
    (s.root / doc["tensors"]).rename(legacy)
    text = json.dumps({**doc, "tensors": "lab.safetensors"}).replace("null", "Infinity")
    meta.write_text(text)  # the old writer's file names and its inf loss
    p = store(s.root).load("lab")
    assert p.stats["depth"]["loss_initial"] is None and legacy.exists()
    s.save(p)
    assert not legacy.exists() and s.load("lab").name == "lab"


def test_kill_9_during_saves_never_loses_a_profile():
    """20 seeded SIGKILLs at random moments of repeated saves (bench/profile_kill.py runs 200)."""
    spec = importlib.util.spec_from_file_location("profile_kill", ROOT / "bench" / "profile_kill.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.run(20, seed=3)
    assert out["failures"] == [], out["failures"][:3]
    assert out["saves_completed"] >= 20  # every kill came after at least one completed save
