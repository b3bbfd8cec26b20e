"""mtml-train: config overrides, run folder, resume, --init/--freeze-backbone, refusal of bad checkpoints."""

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mtml_core.checkpoint import load_checkpoint
from mtml_core.model import MultiTaskModel
from training import runconfig
from training.curves import read_metrics
from training.state import TRAIN_STATE
from training.train import config_from_run, main, train

TINY = ["model.input_hw=[32,32]", "model.filters=8", "model.attention_dim=16", "model.attention_layers=1",
        "data.pool=6", "data.k_shot=2", "data.class_query=1", "data.domain_query=2", "train.val_episodes=1",
        "train.val_every=2", "train.save_every=2", "train.threads=1", "meta.inner_steps=2"]


def tiny(*extra):
    return runconfig.load(runconfig.paper_config_path(), TINY + list(extra))


def weights(run):
    return load_file(str(run / "model.safetensors"))


def test_overrides_parse_yaml_and_reach_the_config():
    cfg = tiny("meta.inner_steps=5", "model.tasks=[class,vp]", "meta.method=anil", "meta.task_weights={vp: 3}")
    assert cfg["meta"]["inner_steps"] == 5
    assert cfg["model"]["tasks"] == ["class", "vp"]
    assert cfg["model"]["use_attention"] is False  # follows the method
    assert cfg["meta"]["task_weights"] == {"vp": 3.0}


@pytest.mark.parametrize("override, message", [
    ("meta.inner_stepz=5", "inner_stepz"),
    ("train.stepz=5", "stepz"),
    ("optim.lr=1", "optim"),
    ("meta.method=sgd", "method"),
    ("data.source=imagenet", "data.source"),
    ("data.pool=3", "data.pool"),
    ("train.retain_heap=sometimes", "train.retain_heap"),
    ("inner_steps=5", "section.key=value"),
])
def test_bad_overrides_are_refused_by_name(override, message):
    with pytest.raises(ValueError, match=message):
        tiny(override)


def test_run_folder_holds_a_rebuildable_model_and_logs(tmp_path):
    run = train(tiny("model.tasks=[class,depth]", "train.steps=2"), tmp_path / "r", progress=False)
    for name in ("model.safetensors", "config.yaml", TRAIN_STATE, "metrics.csv", "validation.png"):
        assert (run / name).is_file(), name
    model, doc = load_checkpoint(run)
    assert model.cfg.tasks == ("class", "depth") and model.cfg.input_hw == (32, 32)
    assert doc["state"]["step"] == 2 and doc["meta"]["method"] == "am"
    assert doc["classes"]["test"] and not set(doc["classes"]["train"]) & set(doc["classes"]["test"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights(run)[k])
    rows = read_metrics(run / "metrics.csv")
    assert {(r["step"], r["split"]) for r in rows if r["name"] == "depth/loss"} == {
        (1, "train"), (2, "train"), (2, "val")}
    # the same config and seed give the same run
    again = train(tiny("model.tasks=[class,depth]", "train.steps=2"), tmp_path / "r2", progress=False)
    assert all(torch.equal(v, weights(again)[k]) for k, v in weights(run).items())


def test_resume_continues_exactly(tmp_path):
    base = ("model.tasks=[class,vp]",)
    full = train(tiny(*base, "train.steps=4"), tmp_path / "full", progress=False)
    part = train(tiny(*base, "train.steps=2"), tmp_path / "part", progress=False)
    train(config_from_run(part, ["train.steps=4"]), part, resume=True, progress=False)
    a, b = weights(full), weights(part)
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    steps = [r["step"] for r in read_metrics(part / "metrics.csv") if r["split"] == "train" and r["name"] == "loss"]
    assert steps == [1, 2, 3, 4]


def test_init_freeze_backbone_adds_and_drops_tasks_without_touching_others(tmp_path):
    src = train(tiny("model.tasks=[class,depth]", "train.steps=1"), tmp_path / "src", progress=False)
    before = weights(src)
    added = train(config_from_run(src, ["model.tasks=[class,depth,vp]", "train.steps=2"]), tmp_path / "add",
                  init=src, freeze_backbone=True, progress=False)
    after = weights(added)
    for k, v in before.items():  # backbone (incl. BN statistics), class and depth: bit-identical
        assert torch.equal(after[k], v), k
    vp_keys = [k for k in after if ".vp." in k]
    assert vp_keys and not set(vp_keys) & set(before)
    cfg = config_from_run(added, [])
    torch.manual_seed(cfg["train"]["seed"])  # how the run built its model before copying the init run's tensors
    initial = MultiTaskModel(runconfig.model_config(cfg)).state_dict()
    assert any(not torch.equal(after[k], initial[k]) for k in vp_keys)  # the new task did train
    assert doc_state(added)["trained_tasks"] == ["vp"] and doc_state(added)["frozen_tasks"] == ["class", "depth"]
    dropped = train(config_from_run(src, ["model.tasks=[class]"]), tmp_path / "drop", init=src,
                    freeze_backbone=True, progress=False)
    kept = weights(dropped)
    assert set(kept) == {k for k in before if ".depth." not in k}
    assert all(torch.equal(kept[k], before[k]) for k in kept)


def doc_state(run):
    return yaml.safe_load((run / "config.yaml").read_text())["state"]


def test_init_refuses_a_different_architecture(tmp_path):
    src = train(tiny("model.tasks=[vp]", "train.steps=1"), tmp_path / "src", progress=False)
    with pytest.raises(ValueError, match="filters: 8 in the init run vs 16"):
        train(config_from_run(src, ["model.filters=16"]), tmp_path / "x", init=src, freeze_backbone=True,
              progress=False)


def test_corrupt_or_mismatched_checkpoints_are_refused_by_name(tmp_path):
    run = train(tiny("model.tasks=[vp]", "train.steps=2"), tmp_path / "r", progress=False)
    doc = yaml.safe_load((run / "config.yaml").read_text())
    # config says 16 filters, the weights have 8
    doc["model"]["filters"] = 16
    (run / "config.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match=r"shape mismatch backbone\.blocks\.0\.0\.weight"):
        load_checkpoint(run)
    doc["model"]["filters"] = 8
    doc["model"]["tasks"] = ["vp", "depth"]
    (run / "config.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match=r"missing tensors \['attention\.depth"):
        load_checkpoint(run)
    doc["model"]["tasks"] = ["vp"]
    (run / "config.yaml").write_text(yaml.safe_dump(doc))
    # resume with a changed model setting, or with a train state of another step
    with pytest.raises(ValueError, match=r"model settings \['filters'\]"):
        train(config_from_run(run, ["model.filters=16"]), run, resume=True, progress=False)
    doc["state"]["step"] = 1
    (run / "config.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match="step 2 does not match step 1"):
        train(config_from_run(run, []), run, resume=True, progress=False)
    # resume with another method: the optimiser state does not fit
    doc["state"]["step"] = 2
    (run / "config.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match="use_attention"):
        train(config_from_run(run, ["meta.method=anil"]), run, resume=True, progress=False)
    raw = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(run)
    (run / TRAIN_STATE).write_bytes(b"\x00" * 64)
    (run / "model.safetensors").write_bytes(raw)
    with pytest.raises(ValueError, match="train state .* corrupt"):
        train(config_from_run(run, []), run, resume=True, progress=False)


def test_cli_refuses_to_overwrite_a_run(tmp_path):
    train(tiny("model.tasks=[vp]", "train.steps=1"), tmp_path / "r", progress=False)
    with pytest.raises(SystemExit, match="already holds a run"):
        main(["--out", str(tmp_path / "r"), "--no-progress", *sum((["--set", s] for s in TINY), [])])


def test_reproduction_grids_cover_the_tables():
    from training import reproduce_table1, reproduce_table2

    t1 = reproduce_table1.entries(["anil", "am"], [32, 64])
    assert len(t1) == 2 * 2 * 5  # per filters × method: one multi-task run and four single-task runs
    assert sum("model.tasks=[class,depth,normals,vp]" in e.overrides for e in t1) == 4
    fake = {"tasks": {"class": {"adapted": {"acc_pct": [41.0, 2.5, 10]}}}}
    md = reproduce_table1.table({"multi_am_32": fake}, ["am"], [32])
    assert "41 ± 2.5" in md and md.count("\n") == 3  # header, rule, single row, multi row
    t2 = reproduce_table2.entries(["maml", "pam"], [1, 5])
    assert [e.name for e in t2] == ["maml_1shot", "pam_1shot", "maml_5shot", "pam_5shot"]
    for preset in reproduce_table2.PRESETS.values():  # every preset is a valid config
        cfg = runconfig.load(runconfig.paper_config_path(), reproduce_table2.COMMON + preset["train"] + t2[0].overrides)
        assert cfg["data"]["source"] == "omniglot" and cfg["model"]["tasks"] == ["class"]
    for preset in reproduce_table1.PRESETS.values():
        runconfig.load(runconfig.paper_config_path(), preset["train"] + t1[0].overrides)


def test_time_limit_stops_and_saves_a_resumable_run(tmp_path):
    run = train(tiny("model.tasks=[vp]", "train.steps=50", "train.max_minutes=1e-9"), tmp_path / "r", progress=False)
    assert doc_state(run)["step"] == 1
    assert {r["step"] for r in read_metrics(run / "metrics.csv") if r["split"] == "val"} == {1}
