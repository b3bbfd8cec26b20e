"""mtml-eval: few-shot evaluation of trained runs on held-out environments / categories (test split by default).

For every episode and task: attention + head adaptation on the K-shot support set
(:func:`mtml_core.evaluation.evaluate_episode`), metrics on the query set; the same episodes are also scored with
no adaptation (identity multipliers, the meta-learnt head); MAML runs adapt the whole network for classification.
Classification adds NIL accuracy (cosine similarity to class prototypes of the support embeddings; modulated by
the attention when adapted). Results: mean ± 95% CI over episodes, printed and written as JSON + Markdown.
Several runs are evaluated on identical episodes.

    mtml-eval runs/am runs/anil --episodes 40 --shots 5 --out docs/eval_default
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call
from tqdm import tqdm

from mtml_core.checkpoint import load_checkpoint
from mtml_core.config import TASK_ADAPTATION
from mtml_core.evaluation import evaluate_episode, mean_ci, nil_episode, preserved_buffers
from mtml_core.losses import task_loss
from mtml_core.maml import BACKBONE, HEAD, MAMLLearner
from mtml_core.meta import MetaConfig
from mtml_core.metrics import task_metrics
from mtml_core.model import MultiTaskModel
from training import data as episodes
from training import runconfig
from training.train import config_from_run

VARIANTS = {"none": "no adaptation", "adapted": "adapted"}
HEADLINE = {"class": "acc_pct", "depth": "mse", "normals": "mse", "vp": "mse"}
LOWER_IS_BETTER = ("mse", "abs_rel", "rmse", "angle_mean", "angle_median", "loss")


def adaptation_settings(cfg: Mapping[str, Any], task: str, steps: int | None = None) -> tuple[int, float]:
    """Test-time inner steps k and rate α for ``task``: eval section, else the meta-training settings."""
    ev, meta = cfg["eval"], runconfig.meta_config(cfg)
    k = steps if steps is not None else ev["adapt_steps"] if ev["adapt_steps"] is not None else meta.inner_steps
    return k, float(ev["adapt_lr"].get(task, meta.lr_for(task)))


def maml_episode(model: MultiTaskModel, meta: MetaConfig, task: str, episode: Sequence[torch.Tensor], steps: int,
                 lr: float) -> dict[str, float]:
    """MAML's test-time adaptation (:meth:`MAMLLearner.adapt`: k SGD steps on backbone and head together), then
    metrics on the query set. The model's mode decides BatchNorm; MAML's own protocol is train mode (batch statistics
    of the support and of the query set), since it adapts BatchNorm's affine parameters too. Buffers are kept."""
    sx, sy, qx, qy = episode
    learner = MAMLLearner(model, dataclasses.replace(meta, inner_steps=steps, task_inner_lr={task: lr},
                                                     first_order=True))
    with preserved_buffers(model):
        params = {k: v[0].detach() for k, v in learner.adapt(task, sx[None], sy[None]).items()}
        backbone = {k[len(BACKBONE):]: v for k, v in params.items() if k.startswith(BACKBONE)}
        head = {k[len(HEAD):]: v for k, v in params.items() if k.startswith(HEAD)}
        with torch.no_grad():
            feats = functional_call(model.backbone, (backbone, dict(model.backbone.named_buffers())),
                                    (qx, model.task_multiplier(task)))
            pred = functional_call(model.heads[task], head, (model.head_input(task, feats),))
    return {"loss": float(task_loss(task, pred, qy)), **task_metrics(task, pred, qy)}


def score_episode(model: MultiTaskModel, task: str, episode: Sequence[torch.Tensor], steps: int,
                  lr: float, meta: MetaConfig | None = None) -> dict[str, dict[str, float]]:
    """Metrics of one episode per variant: ``none`` (no adaptation) and ``adapted`` (attention + k head steps;
    for a MAML run, ``meta.method == "maml"``, k steps on the whole network)."""
    sx, sy, qx, qy = episode
    out = {"none": evaluate_episode(model, task, sx, sy, qx, qy, 0, 0.0, use_attention=False)}
    if meta is not None and meta.method == "maml" and task in TASK_ADAPTATION:
        out["adapted"] = maml_episode(model, meta, task, episode, steps, lr)
        out["none"] = {k: v for k, v in out["none"].items() if not k.startswith("support_loss")}
    else:
        out["adapted"] = evaluate_episode(model, task, sx, sy, qx, qy, steps, lr, use_attention=True)
    if task == "class":
        out["none"]["nil_acc_pct"] = nil_episode(model, sx, sy, qx, qy, "prototype", use_attention=False)
        out["adapted"]["nil_acc_pct"] = nil_episode(model, sx, sy, qx, qy, "prototype", use_attention=True)
    return out


def summarise(rows: Sequence[Mapping[str, float]]) -> dict[str, list[float]]:
    """Per metric: [mean, 95% CI half-width, n] over the episodes with a finite value."""
    out = {}
    for name in rows[0]:
        values = [r[name] for r in rows if math.isfinite(r[name])]
        if values:
            mean, half = mean_ci(values)
            out[name] = [mean, half, len(values)]
    return out


def tune_lr(model: MultiTaskModel, cfg: Mapping[str, Any], task: str, steps: int, rates: Sequence[float],
            episodes_n: int, k_shot: int, query: int) -> tuple[float, dict[str, float]]:
    """The test-time rate α with the lowest mean adapted query loss on ``episodes_n`` val episodes."""
    sampler = episodes.samplers(cfg, "val", k_shot=k_shot, class_query=query, domain_query=query)[task]
    meta = runconfig.meta_config(cfg)
    losses = {}
    for lr in rates:
        vals = []
        for i in range(episodes_n):
            seed = episodes.episode_seed(cfg["eval"]["seed"], i)
            ep = [t[0] for t in episodes.make_batch({task: sampler}, [seed])[task]]
            vals.append(score_episode(model, task, ep, steps, lr, meta)["adapted"]["loss"])
        losses[str(lr)] = sum(vals) / len(vals)
    best = min(rates, key=lambda r: losses[str(r)])
    return float(best), losses


def evaluate_runs(run_dirs: Sequence[str | Path], split: str = "test", episodes_n: int | None = None,
                  k_shot: int | None = None, query: int | None = None, steps: int | None = None,
                  overrides: Sequence[str] = (), progress: bool = True, tune_rates: Sequence[float] = (),
                  tune_episodes: int = 10) -> dict[str, Any]:
    """Evaluate runs on the same seeded episodes of ``split``; returns the JSON-ready results.

    ``tune_rates``: pick each run's test-time rate α per task among these, by the adapted query loss on
    ``tune_episodes`` episodes of the val split (never the evaluated split).
    """
    if not run_dirs:
        raise ValueError("mtml-eval: no run folder given")
    if split == "train":
        raise ValueError("mtml-eval evaluates held-out data only: split must be val or test")
    if tune_rates and split == "val":
        raise ValueError("mtml-eval: rates are tuned on the val split, so evaluate on test")
    results: dict[str, Any] = {"split": split, "runs": {}}
    for run_dir in run_dirs:
        cfg = config_from_run(run_dir, overrides)
        model, _ = load_checkpoint(run_dir)
        ev = cfg["eval"]
        model.train(ev["batchnorm"] == "batch")  # BatchNorm statistics: the running ones, or each set's own
        n = episodes_n or ev["episodes"]
        k, q = k_shot or ev["k_shot"], query or ev["query"]
        samplers = episodes.samplers(cfg, split, k_shot=k, class_query=q, domain_query=q)
        per_task: dict[str, Any] = {}
        for task, sampler in samplers.items():
            t_steps, lr = adaptation_settings(cfg, task, steps)
            tuned = {}
            if tune_rates:
                lr, tuned = tune_lr(model, cfg, task, t_steps, tune_rates, tune_episodes, k, q)
            rows: dict[str, list] = {v: [] for v in VARIANTS}
            seeds = [episodes.episode_seed(ev["seed"], i) for i in range(n)]
            for seed in tqdm(seeds, desc=f"{Path(run_dir).name} {task}", disable=not progress, leave=False):
                batch = episodes.make_batch({task: sampler}, [seed])[task]
                scored = score_episode(model, task, [t[0] for t in batch], t_steps, lr, runconfig.meta_config(cfg))
                for v in VARIANTS:
                    rows[v].append(scored[v])
            per_task[task] = {"adapt_steps": t_steps, "adapt_lr": lr, **({"val_loss_by_lr": tuned} if tuned else {}),
                              **{v: summarise(rows[v]) for v in VARIANTS}}
        results["runs"][str(run_dir)] = {"method": cfg["meta"]["method"], "episodes": n, "k_shot": k,
                                         "query": q, "batchnorm": ev["batchnorm"], "tasks": per_task}
        results.setdefault("n_way", cfg["model"]["n_way"])
    return results


def nearest_class_mean(support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                       pool: tuple[int, int] | None = None) -> torch.Tensor:
    """The trivial few-shot baseline: each query image takes the label of the nearest class mean of the support
    images on raw (normalised) pixels, Euclidean; ``pool``: area-pooled to this size first."""
    x = torch.cat([support_x, query_x])
    if pool is not None:
        x = torch.nn.functional.adaptive_avg_pool2d(x, pool)
    x = x.flatten(1)
    s, q = x[: len(support_x)], x[len(support_x):]
    labels = torch.unique(support_y)
    centres = torch.stack([s[support_y == c].mean(0) for c in labels])
    return labels[torch.cdist(q, centres).argmin(1)]


def pixel_baseline(cfg: Mapping[str, Any], split: str = "test", episodes_n: int | None = None,
                   k_shot: int | None = None, query: int | None = None) -> dict[str, Any]:
    """Nearest class mean on raw pixels over the class episodes :func:`evaluate_runs` draws with the same settings
    (same seeds, sampler and input size), in its result layout (``tasks.class.adapted.acc_pct``)."""
    ev = cfg["eval"]
    n, k, q = episodes_n or ev["episodes"], k_shot or ev["k_shot"], query or ev["query"]
    sampler = episodes.samplers(cfg, split, k_shot=k, class_query=q)["class"]
    acc = []
    for i in range(n):
        batch = episodes.make_batch({"class": sampler}, [episodes.episode_seed(ev["seed"], i)])["class"]
        sx, sy, qx, qy = (t[0] for t in batch)
        acc.append(float((nearest_class_mean(sx, sy, qx) == qy).float().mean()) * 100)
    return {"method": "nearest class mean, raw pixels", "episodes": n, "k_shot": k, "query": q,
            "tasks": {"class": {"adapted": summarise([{"acc_pct": a} for a in acc])}}}


def _fmt(entry: Sequence[float] | None) -> str:
    if entry is None:
        return "–"
    mean, half = entry[0], entry[1]
    scale = 3 if abs(mean) >= 0.1 or mean == 0 else 4
    return f"{mean:.{scale}g} ± {half:.2g}" if math.isfinite(half) else f"{mean:.{scale}g}"


def to_markdown(results: Mapping[str, Any]) -> str:
    """Per task, a table: metric × (run, variant), mean ± 95% CI."""
    runs = results["runs"]
    bn = sorted({r.get("batchnorm", "running") for r in runs.values()})
    lines = [f"Split: **{results['split']}**. Mean ± 95% CI over episodes (Student t). "
             "`none`: no adaptation; `adapted`: attention + head adaptation on the support set "
             f"(MAML: the whole network). BatchNorm statistics: {', '.join(bn)}.", ""]
    tasks = list(dict.fromkeys(t for r in runs.values() for t in r["tasks"]))
    for task in tasks:
        cols = [(name, v) for name, r in runs.items() if task in r["tasks"] for v in VARIANTS]
        first = next(r for r in runs.values() if task in r["tasks"])
        lines.append(f"### {task} ({first['k_shot']}-shot, {first['episodes']} episodes)")
        rates = ", ".join(f"{Path(name).name}: k={r['tasks'][task]['adapt_steps']}, α={r['tasks'][task]['adapt_lr']:g}"
                          for name, r in runs.items() if task in r["tasks"])
        lines += [f"Test-time adaptation: {rates}.", ""]
        header = " | ".join(f"{Path(name).name} ({runs[name]['method']}) {v}" for name, v in cols)
        lines += [f"| metric | {header} |", "|---" * (len(cols) + 1) + "|"]
        metrics = list(dict.fromkeys(m for name, v in cols for m in runs[name]["tasks"][task][v]))
        for m in metrics:
            cells = " | ".join(_fmt(runs[name]["tasks"][task][v].get(m)) for name, v in cols)
            lines.append(f"| {m} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of mtml-eval."""
    p = argparse.ArgumentParser(prog="mtml-eval", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folder(s) written by mtml-train (or mtml_core/assets/default)")
    p.add_argument("--split", default="test", choices=("val", "test"), help="held-out split (default test)")
    p.add_argument("--episodes", type=int, help="episodes per task (default eval.episodes)")
    p.add_argument("--shots", type=int, help="K support examples (per class for class; default eval.k_shot)")
    p.add_argument("--query", type=int, help="query examples (per class for class; default eval.query)")
    p.add_argument("--steps", type=int, help="test-time inner steps (default eval.adapt_steps / meta.inner_steps)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override the runs' config, e.g. eval.adapt_lr={depth: 0.01}")
    p.add_argument("--tune-lr", help="comma-separated test-time rates α to choose from per run and task, by the "
                   "adapted query loss on val episodes (e.g. 0.01,0.03,0.1)")
    p.add_argument("--tune-episodes", type=int, default=10, help="val episodes per rate for --tune-lr")
    p.add_argument("--out", help="output path prefix for .json and .md (default: <first run>/eval_<split>)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``mtml-eval``."""
    args = parse_args(argv)
    try:
        results = evaluate_runs(args.runs, args.split, args.episodes, args.shots, args.query, args.steps,
                                args.overrides, progress=not args.no_progress,
                                tune_rates=[float(r) for r in args.tune_lr.split(",")] if args.tune_lr else (),
                                tune_episodes=args.tune_episodes)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"mtml-eval: error: {exc}") from None
    out = Path(args.out) if args.out else Path(args.runs[0]) / f"eval_{args.split}"
    out.parent.mkdir(parents=True, exist_ok=True)
    md = to_markdown(results)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(md + "\n")
    print(md)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
