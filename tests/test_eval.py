"""mtml-eval: held-out episodes only, adapted vs no adaptation, mean ± 95% CI, JSON + Markdown."""

import json
import math

import pytest
import torch

from mtml_core.checkpoint import load_checkpoint
from mtml_core.evaluation import mean_ci
from mtml_core.losses import task_loss
from training import data as episodes
from training import runconfig
from training.attention_report import compare, report
from training.evaluate import adaptation_settings, evaluate_runs, main, maml_episode, summarise
from training.train import train

TINY = ["model.input_hw=[32,32]", "model.filters=8", "model.attention_dim=16", "model.attention_layers=1",
        "data.pool=6", "data.k_shot=2", "data.class_query=1", "data.domain_query=2", "train.val_episodes=1",
        "train.val_every=5", "train.save_every=5", "train.threads=1", "meta.inner_steps=2", "train.steps=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = runconfig.load(runconfig.paper_config_path(),
                         TINY + ["model.tasks=[class,vp]", "meta.task_inner_lr={vp: 0.02}",
                                 "model.attention_init_bias=-2.0"])
    return train(cfg, tmp_path_factory.mktemp("eval") / "run", progress=False)


def test_adaptation_settings_precedence():
    cfg = runconfig.load(runconfig.paper_config_path(),
                         TINY + ["meta.task_inner_lr={depth: 0.02}", "eval.adapt_lr={vp: 0.5}"])
    assert adaptation_settings(cfg, "depth") == (2, 0.02)
    assert adaptation_settings(cfg, "vp") == (2, 0.5)
    assert adaptation_settings(cfg, "class", steps=7) == (7, 0.1)


def test_summarise_matches_mean_ci_and_skips_nan():
    rows = [{"a": 1.0, "b": math.nan}, {"a": 2.0, "b": 4.0}, {"a": 4.0, "b": 6.0}]
    out = summarise(rows)
    mean, half = mean_ci([1.0, 2.0, 4.0])
    assert out["a"] == [mean, half, 3]
    assert out["b"][0] == 5.0 and out["b"][2] == 2


def test_evaluate_scores_adapted_and_unadapted_on_test_episodes(run, tmp_path):
    res = evaluate_runs([run], "test", episodes_n=3, k_shot=2, query=2, progress=False)
    tasks = res["runs"][str(run)]["tasks"]
    assert set(tasks) == {"class", "vp"}
    cls = tasks["class"]
    assert {"acc_pct", "nil_acc_pct", "loss"} <= set(cls["adapted"])
    for variant in ("none", "adapted"):
        mean, half, n = cls[variant]["acc_pct"]
        assert 0 <= mean <= 100 and half >= 0 and n == 3
    # no adaptation: the head is not touched, so the support loss does not move
    before, after = cls["none"]["support_loss_before"][0], cls["none"]["support_loss_after"][0]
    assert before == pytest.approx(after)
    assert tasks["vp"]["adapt_lr"] == 0.02
    assert {"mse", "angle_mean", "within_1deg_pct", "within_2deg_pct", "within_10deg_pct",
            "within_1e-3_pct"} <= set(tasks["vp"]["adapted"])
    # adaptation runs SGD on the support loss: it goes down (small rate)
    assert tasks["vp"]["adapted"]["support_loss_after"][0] < tasks["vp"]["adapted"]["support_loss_before"][0]


def test_train_split_is_refused(run):
    with pytest.raises(ValueError, match="held-out"):
        evaluate_runs([run], "train", episodes_n=1, progress=False)


def test_cli_writes_json_and_markdown(run, tmp_path, capsys):
    out = tmp_path / "ev"
    main([str(run), str(run), "--episodes", "2", "--shots", "1", "--query", "1", "--split", "val", "--no-progress",
          "--out", str(out)])
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["split"] == "val" and doc["runs"][str(run)]["k_shot"] == 1
    md = out.with_suffix(".md").read_text()
    assert "### class" in md and "### vp" in md and "nil_acc_pct" in md and " ± " in md
    assert "adapted" in capsys.readouterr().out


def test_attention_comparison_measures_deviation_from_one():
    fitted = torch.tensor([1.5, 0.5, 1.0, 1.2])
    same_direction = 1.0 + 0.1 * (fitted - 1.0)
    r = compare(same_direction, fitted)
    assert r["cosine_deviation"] == pytest.approx(1.0)
    assert r["sign_agreement_pct"] == 100.0 and r["channels_compared"] == 3  # channel 3 has no deviation
    r = compare(torch.tensor([0.5, 0.5, 1.0, 0.8]), fitted)
    assert r["sign_agreement_pct"] == pytest.approx(100 / 3)
    assert r["cosine_deviation"] < 0


def test_attention_report_fits_multipliers_that_beat_identity(run, tmp_path):
    r = report(run, "vp", "corridor_neon", shots=2, frames=6, steps=30, lr=0.05, out=tmp_path / "att")
    assert r["env_split"] == "test"
    assert r["loss"]["fitted"] < r["loss"]["identity"]  # the fit optimises exactly this loss
    assert -1.0 <= r["cosine_deviation"] <= 1.0 and 0 <= r["sign_agreement_pct"] <= 100
    assert (tmp_path / "att.png").stat().st_size > 1000 and (tmp_path / "att.json").is_file()
    with pytest.raises(ValueError, match="task must be one of"):
        report(run, "class", "corridor_neon")


def test_maml_runs_adapt_the_whole_network_and_zero_steps_change_nothing(tmp_path):
    cfg = runconfig.load(runconfig.paper_config_path(), TINY + ["model.tasks=[class]", "meta.method=maml"])
    run = train(cfg, tmp_path / "maml", progress=False)
    model, _ = load_checkpoint(run)
    model.train()  # MAML's protocol: batch statistics
    sampler = episodes.samplers(cfg, "test", k_shot=2, class_query=2)["class"]
    ep = [t[0] for t in episodes.make_batch({"class": sampler}, [7])["class"]]
    meta = runconfig.meta_config(cfg)
    zero = maml_episode(model, meta, "class", ep, 0, 0.1)
    assert "support_loss_after" not in zero  # the whole-network path, not the head-only one
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # zero steps: the meta-init with batch statistics of the query set
        expected = float(task_loss("class", model(ep[2])["class"], ep[3]))
    model.load_state_dict(state)
    assert zero["loss"] == pytest.approx(expected, rel=1e-5)
    moved = maml_episode(model, meta, "class", ep, 3, 0.1)
    assert moved["loss"] != pytest.approx(expected)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # the model is left untouched


def test_rates_are_tuned_on_val_and_the_best_one_is_used(run):
    res = evaluate_runs([run], "test", episodes_n=2, k_shot=2, query=2, progress=False, tune_rates=[0.0, 0.05],
                        tune_episodes=2)
    vp = res["runs"][str(run)]["tasks"]["vp"]
    by_lr = vp["val_loss_by_lr"]
    assert set(by_lr) == {"0.0", "0.05"}
    assert vp["adapt_lr"] == float(min(by_lr, key=by_lr.get))
    with pytest.raises(ValueError, match="tuned on the val split"):
        evaluate_runs([run], "val", episodes_n=1, progress=False, tune_rates=[0.1])
