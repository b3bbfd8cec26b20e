"""Quality of what the node publishes, beside trivial baselines computed from the same support frames.

Held-out test environments (the hand-written test environments, styles neon / sandstone, alternating with random
draws from the test palettes, see mtml_core/data/sampler.py), 5-shot, N episodes, mean ± 95% CI over episodes:

- the shipped model served (attention prior, meta-trained heads: what the node publishes before any adaptation);
- the shipped model adapted (AM: support-set attention + head steps, what ``~/adapt`` serves);
- prior + head (the attention prior and the same head steps: does the attention earn its place?), with paired
  per-episode differences against AM;
- the ANIL multi-head baseline (``--anil RUN``, trained with the same recipe), adapted;
- trivial baselines on the same query frames: per-pixel median of the support depths, the support's constant
  median depth, per-pixel mean of the support normals, the upright forward-looking camera for VP; for the scene
  class, chance for place types and nearest class mean on raw pixels for novel categories.

VP at camera resolution (what the node publishes from a 480×640 camera): frames rendered at 480×640, the model
input area-resized from them, the head's directions refined on the camera frame's line segments
(mtml_core/vp_lines.py, at the node's default width); beside the head alone, the upright camera, and the upright
camera refined on the same segments (the lines without the head).

Also in-domain: new environments drawn from the training distribution (frames never trained on). Scene class:
place type named before any adaptation (new styles, known place types), and 5-way 5-shot novel categories
(the test categories family/neon, family/sandstone; new rows imprinted from the support, then head steps).

    python bench/quality.py [--model DIR] [--anil RUN] [--episodes 60] [--split test|val] [--depth-optimizer adam]
    python bench/quality.py --tune [--episodes 12]   # test-time rates per task on VALIDATION environments

Writes bench/results/quality.json (quality_val.json for --split val; _adam before .json with --depth-optimizer
adam) and PNG panels in docs/quality/ (per task:
RGB | ground truth | served | adapted).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mtml_core.adapt.engine import ADAM_LR, EngineConfig  # noqa: E402
from mtml_core.adaptation import adapt_task  # noqa: E402
from mtml_core.checkpoint import load_checkpoint  # noqa: E402
from mtml_core.data.categories import categories  # noqa: E402
from mtml_core.data.sampler import sample_spec  # noqa: E402
from mtml_core.data.spec import EnvSpec, builtin_envs, category_spec  # noqa: E402
from mtml_core.data.synth import render_frame  # noqa: E402
from mtml_core.data.world import PLACE_TYPES, WorldEpisodes  # noqa: E402
from mtml_core.evaluation import mean_ci  # noqa: E402
from mtml_core.inner_loop import OPTIMIZERS  # noqa: E402
from mtml_core.metrics import depth_metrics, normals_metrics, vp_metrics  # noqa: E402
from mtml_core.model import MultiTaskModel  # noqa: E402
from mtml_core.preprocess import to_tensor  # noqa: E402
from mtml_core.vp_lines import DEFAULT_WIDTH, refined_vps, segment_planes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "mtml_core" / "assets" / "default"
RESULTS = ROOT / "bench" / "results"
PANELS = ROOT / "docs" / "quality"
DOMAIN = ("depth", "normals", "vp")
UPRIGHT = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
CAMERA_HW = (480, 640)
VP_CAMERA_KEYS = ("angle_mean", "angle_median", "within_2deg_pct")
IN_DOMAIN_SEED = 10 ** 8  # far beyond any seed a training run draws
HEADLINE = {"depth": ("abs_rel", "delta_1.25_pct", "rmse"), "normals": ("angle_mean", "angle_median"),
            "vp": ("angle_mean", "angle_median")}
METRICS: dict[str, Callable] = {"depth": depth_metrics, "normals": normals_metrics, "vp": vp_metrics}


def test_envs(split: str, n: int) -> list[EnvSpec]:
    """``n`` environments alternating hand-written ones of ``split`` and random draws from its palettes."""
    written = builtin_envs(split)
    return [written[i // 2 % len(written)] if i % 2 == 0 else sample_spec(i, split) for i in range(n)]


def served(model: MultiTaskModel, task: str, x: torch.Tensor) -> torch.Tensor:
    """What the node publishes before adapting: the attention prior's multiplier, the meta-trained head."""
    return model(x, {task: model.prior_multiplier(task)}, tasks=[task])[task]


def adapted(model: MultiTaskModel, task: str, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, steps: int,
            lr: float, attention: bool, optimizer: str = "sgd") -> torch.Tensor:
    """Query predictions after test-time adaptation (AM with attention, or the prior + head steps)."""
    result = adapt_task(model, task, sx, sy, steps, lr, use_attention=attention, optimizer=optimizer)
    feats = model.features(qx, result.multiplier)
    return torch.func.functional_call(model.heads[task], result.params, (model.head_input(task, feats),))


def baselines(task: str, sy: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    """Trivial predictions from the support labels alone, repeated for ``n`` query frames."""
    if task == "depth":
        per_pixel = torch.nanmedian(sy, dim=0, keepdim=True).values
        constant = torch.nanmedian(sy[torch.isfinite(sy)]) * torch.ones_like(per_pixel)
        fill = torch.nan_to_num(per_pixel, nan=float(constant.flatten()[0]))
        return {"per-pixel median of support": fill.expand(n, -1, -1, -1),
                "support's constant median": constant.expand(n, -1, -1, -1)}
    if task == "normals":
        mean = torch.nan_to_num(sy).sum(0, keepdim=True)
        mean = F.normalize(torch.where(mean.abs().sum(1, keepdim=True) > 0, mean, torch.tensor([0.0, 0.0, -1.0])
                                       .view(1, 3, 1, 1)), dim=1)
        return {"per-pixel mean of support": mean.expand(n, -1, -1, -1)}
    return {"upright forward camera": UPRIGHT.expand(n, -1, -1)}


def summary(values: list[float]) -> dict[str, float]:
    """mean, 95% CI half-width and n of per-episode values."""
    mean, half = mean_ci(values)
    return {"mean": round(mean, 4), "ci95": None if math.isnan(half) else round(half, 4), "n": len(values)}


def paired_loss(task: str, pred: torch.Tensor, y: torch.Tensor) -> float:
    """The task's loss on a query set for paired comparisons (depth: log-MSE over valid pixels; else the MSE)."""
    if task != "depth":
        return METRICS[task](pred, y)["mse"]
    valid = torch.isfinite(y) & (y > 0)
    return float(((pred[valid].log() - y[valid].log()) ** 2).mean())


def domain_eval(models: dict[str, MultiTaskModel], rates: dict[str, float], steps: int, envs: list[EnvSpec],
                k: int, q: int, size: tuple[int, int], mean: tuple, std: tuple, max_depth: float,
                panels: bool, optimizers: dict[str, str]) -> dict:
    """Depth, normals and VP over one environment episode per spec: every model variant and baseline
    (``optimizers``: each task's test-time inner loop, as ``EngineConfig.optimizer_of``)."""
    data = WorldEpisodes("test", k, q, size, mean, std, seed=77, specs=envs, length=len(envs), max_depth=max_depth)
    per: dict[str, dict[str, dict[str, list[float]]]] = {t: {} for t in DOMAIN}
    paired: dict[str, list[float]] = {t: [] for t in DOMAIN}
    main = models["shipped"]
    for e in range(len(envs)):
        ep = data[e]
        sx, qx = ep["x"][:k], ep["x"][k:]
        for task in DOMAIN:
            if task not in main.cfg.tasks:
                continue
            sy, qy = ep[task][:k], ep[task][k:]
            preds = {"served": served(main, task, qx),
                     "adapted (AM)": adapted(main, task, sx, sy, qx, steps, rates[task], True, optimizers[task]),
                     "prior + head": adapted(main, task, sx, sy, qx, steps, rates[task], False, optimizers[task])}
            if "anil" in models:
                preds["ANIL adapted"] = adapted(models["anil"], task, sx, sy, qx, steps, rates[task], False,
                                                optimizers[task])
            preds.update(baselines(task, sy, q))
            for name, pred in preds.items():
                for key, value in METRICS[task](pred.detach(), qy).items():
                    per[task].setdefault(name, {}).setdefault(key, []).append(value)
            paired[task].append(paired_loss(task, preds["prior + head"].detach(), qy)
                                - paired_loss(task, preds["adapted (AM)"].detach(), qy))
            if panels and e == 0:
                panel(task, ep["x"][k], qy[0], preds["served"][0].detach(), preds["adapted (AM)"][0].detach(),
                      envs[e].name, mean, std)
    out = {}
    for task, rows in per.items():
        if rows:
            out[task] = {name: {key: summary(v) for key, v in vals.items() if key in HEADLINE[task] or key == "mse"}
                         for name, vals in rows.items()}
            out[task]["paired: prior+head loss minus AM loss"] = summary(paired[task])
    return out


def vp_camera_eval(model: MultiTaskModel, rate: float, steps: int, envs: list[EnvSpec], k: int, q: int,
                   size: tuple[int, int], mean: tuple, std: tuple, width: int = DEFAULT_WIDTH) -> dict:
    """VP from camera-resolution frames as the node publishes it: head (served and adapted) with and without the
    line-segment refinement, the upright camera, and the upright camera refined on the same segments."""
    per: dict[str, dict[str, list[float]]] = {}
    seconds = []
    for e, spec in enumerate(envs):
        seeds = np.random.default_rng([0x7B, e]).choice(1 << 30, k + q, replace=False)
        frames = [render_frame(spec, int(s), CAMERA_HW) for s in seeds]
        x = to_tensor(np.stack([f.rgb for f in frames]), size, mean, std)
        y = torch.from_numpy(np.stack([f.vp_dirs for f in frames]))
        qy = y[k:]
        t0 = time.perf_counter()
        segments = [segment_planes(f.rgb, f.K, width) for f in frames[k:]]
        seconds.append((time.perf_counter() - t0) / q)
        heads = {"served": served(model, "vp", x[k:]).detach(),
                 "adapted (AM)": adapted(model, "vp", x[:k], y[:k], x[k:], steps, rate, True).detach(),
                 "upright forward camera": UPRIGHT.expand(q, -1, -1)}
        preds = {}
        for name, head in heads.items():
            preds[name] = head
            preds[f"{name} + lines"] = torch.from_numpy(np.stack([refined_vps(seg, d) for seg, d in
                                                                  zip(segments, head.numpy(), strict=True)]))
        for name, pred in preds.items():
            for key, value in vp_metrics(pred, qy).items():
                per.setdefault(name, {}).setdefault(key, []).append(value)
    out = {name: {key: summary(v) for key, v in vals.items() if key in VP_CAMERA_KEYS}
           for name, vals in per.items()}
    out["line segments, ms per frame"] = summary([1e3 * s for s in seconds])
    return out


def tune(model: MultiTaskModel, steps: int, grid: list[float], episodes: int, size: tuple[int, int], mean: tuple,
         std: tuple, max_depth: float) -> dict:
    """Mean query loss of AM adaptation per task and test-time rate on validation environments."""
    envs = test_envs("val", episodes)
    data = WorldEpisodes("val", 5, 5, size, mean, std, seed=33, specs=envs, length=len(envs), max_depth=max_depth)
    losses: dict[str, dict[float, list[float]]] = {t: {lr: [] for lr in grid} for t in DOMAIN if t in model.cfg.tasks}
    for e in range(len(envs)):
        ep = data[e]
        for task, per_rate in losses.items():
            sy, qy = ep[task][:5], ep[task][5:]
            for lr in grid:
                pred = adapted(model, task, ep["x"][:5], sy, ep["x"][5:], steps, lr, True)
                per_rate[lr].append(paired_loss(task, pred.detach(), qy))
    table = {t: {str(lr): summary(v) for lr, v in per_rate.items()} for t, per_rate in losses.items()}
    best = {t: min(per_rate, key=lambda lr: float(np.mean(per_rate[lr]))) for t, per_rate in losses.items()}
    return {"val_query_loss": table, "best_rate": best}


def class_eval(model: MultiTaskModel, steps: int, lr: float, episodes: int, split: str, size: tuple[int, int],
               mean: tuple, std: tuple) -> dict:
    """Place type named before adaptation (new styles) and 5-way 5-shot novel categories, against baselines."""
    rng = np.random.default_rng(5)
    envs = test_envs(split, episodes)
    data = WorldEpisodes(split, 1, 5, size, mean, std, seed=91, specs=envs, length=len(envs))
    named = len(model.cfg.class_names)
    place_hits = []
    for e in range(len(envs)):
        ep = data[e]
        with torch.no_grad():
            logits = served(model, "class", ep["x"])[:, :named]
        place_hits.append(float((logits.argmax(1) == ep["class"]).float().mean()) * 100)
    cats = categories(split)
    fewshot: dict[str, list[float]] = {"adapted (AM)": [], "prior + head": [], "nearest class mean, raw pixels": []}
    for e in range(episodes):
        chosen = [cats[i] for i in rng.choice(len(cats), 5, replace=False)]
        specs = [category_spec(c, split) for c in chosen]
        frames = WorldEpisodes(split, 5, 5, size, mean, std, seed=1000 + e, specs=specs, length=5)
        eps = [frames[j] for j in range(5)]
        sx = torch.cat([ep["x"][:5] for ep in eps])
        qx = torch.cat([ep["x"][5:] for ep in eps])
        labels = torch.arange(5).repeat_interleave(5)
        rows = labels + named  # novel categories take the free rows
        for name, attention in (("adapted (AM)", True), ("prior + head", False)):
            result = adapt_task(model, "class", sx, rows, steps, lr, use_attention=attention)
            feats = model.features(qx, result.multiplier)
            logits = torch.func.functional_call(model.heads["class"], result.params,
                                                (model.head_input("class", feats),))
            fewshot[name].append(float((logits[:, named:named + 5].argmax(1) == labels).float().mean()) * 100)
        small = F.adaptive_avg_pool2d(torch.cat([sx, qx]), (24, 32)).flatten(1)
        centres = small[:25].view(5, 5, -1).mean(1)
        pred = torch.cdist(small[25:], centres).argmin(1)
        fewshot["nearest class mean, raw pixels"].append(float((pred == labels).float().mean()) * 100)
    return {"place type named before adaptation, acc %": {"served": summary(place_hits),
                                                          "chance": 100.0 / len(PLACE_TYPES)},
            "5-way 5-shot novel categories, acc %": {k: summary(v) for k, v in fewshot.items()}}


def _img(x: torch.Tensor, mean: tuple, std: tuple) -> np.ndarray:
    return np.clip(x.permute(1, 2, 0).numpy() * np.array(std) + np.array(mean), 0, 1)


def panel(task: str, x: torch.Tensor, gt: torch.Tensor, before: torch.Tensor, after: torch.Tensor, env: str,
          mean: tuple, std: tuple) -> None:
    """RGB | ground truth | served | adapted for one query frame, saved as docs/quality/<task>.png."""
    PANELS.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 4, figsize=(12, 2.6))
    rgb = _img(x, mean, std)
    if task == "vp":
        views = [rgb] * 4
    elif task == "depth":
        views = [rgb] + [v[0].numpy() for v in (gt, before, after)]
    else:
        views = [rgb] + [np.nan_to_num(v.permute(1, 2, 0).numpy() * 0.5 + 0.5) for v in (gt, before, after)]
    vmax = float(np.nanpercentile(gt.numpy(), 98)) if task == "depth" else None
    for ax, view, title in zip(axes, views, ("RGB", "ground truth", "served (prior)", "adapted (AM, 5-shot)")):
        ax.imshow(view, cmap="turbo" if task == "depth" else None, vmin=0 if vmax else None, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    if task == "vp":
        h, w = rgb.shape[:2]
        for ax, dirs, colour in ((axes[1], gt, "lime"), (axes[2], before, "orange"), (axes[3], after, "cyan")):
            for d in dirs:  # direction drawn from the image centre, as its image-plane component
                ax.plot([w / 2, w / 2 + 40 * float(d[0])], [h / 2, h / 2 + 40 * float(d[1])], color=colour, lw=2)
    fig.suptitle(f"{task} — {env}", fontsize=10)
    fig.tight_layout()
    fig.savefig(PANELS / f"{task}.png", dpi=80)
    plt.close(fig)


def _cell(v: dict) -> str:
    return f"{v['mean']:.3g} ± {v['ci95']:.2g}" if v.get("ci95") is not None else f"{v['mean']:.3g}"


def markdown(report: dict) -> str:
    """The report as Markdown tables (one per scope and task; rows: models and baselines)."""
    lines = []
    for scope, title in (("held_out", "Held-out test environments"), ("in_domain", "In-domain (training styles, "
                                                                                  "new environments)")):
        for task, rows in report.get(scope, {}).items():
            keys = [k for k in HEADLINE[task]]
            lines += [f"**{title}, {task}** ({report['episodes'] if scope == 'held_out' else '≥10'} episodes, "
                      "5-shot, mean ± 95% CI)", "", "| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
            for name, vals in rows.items():
                if "mean" in vals:
                    lines.append(f"| {name} | {_cell(vals)} (paired loss difference) |" + " |" * (len(keys) - 1))
                else:
                    lines.append(f"| {name} | " + " | ".join(_cell(vals[k]) for k in keys) + " |")
            lines.append("")
    if "vp_camera" in report:
        cam = report["vp_camera"]
        lines += [f"**Held-out test environments, VP from {cam['hw'][0]}×{cam['hw'][1]} camera frames** "
                  f"({report['episodes']} episodes × 5 query frames; lines at {cam['lines_width']} px wide, "
                  f"{_cell(cam['line segments, ms per frame'])} ms per frame)", "",
                  "| | " + " | ".join(VP_CAMERA_KEYS) + " |", "|---" * (len(VP_CAMERA_KEYS) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(_cell(vals[k]) for k in VP_CAMERA_KEYS) + " |"
                  for name, vals in cam.items() if isinstance(vals, dict) and "angle_mean" in vals]
        lines.append("")
    for title, rows in report.get("class", {}).items():
        lines += [f"**Scene class: {title}**", "", "| | accuracy % |", "|---|---|"]
        lines += [f"| {k} | {_cell(v) if isinstance(v, dict) else f'{v:.3g}'} |" for k, v in rows.items()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    """Run every evaluation, print the headline table, write the JSON and the panels."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="run or asset folder (default: shipped)")
    ap.add_argument("--anil", type=Path, help="ANIL run trained with the same recipe")
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--split", choices=("test", "val"), default="test", help="val: for tuning (rates, steps)")
    ap.add_argument("--steps", type=int, help="test-time head steps (default: the model's meta.inner_steps)")
    ap.add_argument("--rate", action="append", default=[], metavar="TASK=LR", help="override a test-time rate")
    ap.add_argument("--depth-optimizer", choices=OPTIMIZERS, default="sgd",
                    help="the depth head's test-time inner loop (node parameter depth_optimizer; adam: ADAM_LR)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tune", action="store_true", help="choose test-time rates on validation environments")
    ap.add_argument("--grid", default="0.001,0.003,0.01,0.03,0.1", help="--tune: comma-separated rates")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.monotonic()
    model, doc = load_checkpoint(args.model)
    model.eval()
    models = {"shipped": model}
    if args.anil:
        models["anil"] = load_checkpoint(args.anil)[0].eval()
    meta = doc.get("meta", {})
    steps = args.steps if args.steps is not None else int(meta.get("inner_steps", 5))
    rates = {t: float(meta.get("task_inner_lr", {}).get(t, meta.get("inner_lr", 0.01))) for t in model.cfg.tasks}
    optimizers = {t: EngineConfig(depth_optimizer=args.depth_optimizer).optimizer_of(t) for t in model.cfg.tasks}
    if args.depth_optimizer == "adam":
        rates["depth"] = ADAM_LR
    rates.update({k: float(v) for k, v in (r.split("=") for r in args.rate)})
    max_depth = float(doc.get("data", {}).get("max_depth", 80.0))
    cfg = model.cfg
    common = (tuple(cfg.input_hw), cfg.mean, cfg.std)
    if args.tune:
        result = tune(model, steps, [float(v) for v in args.grid.split(",")], args.episodes, *common, max_depth)
        (RESULTS / "quality_tune.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
        return
    report = {"model": str(args.model), "anil": str(args.anil) if args.anil else None, "split": args.split,
              "episodes": args.episodes, "shots": 5, "query_frames": 5, "steps": steps, "rates": rates,
              "optimizers": optimizers,
              "max_depth_m": max_depth, "machine": platform.processor() or platform.machine()}
    report["held_out"] = domain_eval(models, rates, steps, test_envs(args.split, args.episodes), 5, 5, *common,
                                     max_depth, panels=args.split == "test", optimizers=optimizers)
    if "vp" in cfg.tasks:
        report["vp_camera"] = {"hw": list(CAMERA_HW), "lines_width": DEFAULT_WIDTH, **vp_camera_eval(
            model, rates["vp"], steps, test_envs(args.split, args.episodes), 5, 5, *common)}
    in_domain = [sample_spec(IN_DOMAIN_SEED + i, "train") for i in range(max(10, args.episodes // 3))]
    report["in_domain"] = domain_eval({"shipped": model}, rates, steps, in_domain, 5, 5, *common, max_depth,
                                      panels=False, optimizers=optimizers)
    if "class" in cfg.tasks and cfg.arch == "unet":
        report["class"] = class_eval(model, steps, rates["class"], args.episodes, args.split, *common)
    report["seconds"] = round(time.monotonic() - start, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "quality" + ("" if args.split == "test" else "_val") + ("" if args.depth_optimizer == "sgd" else "_adam")
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report))
    for scope in ("held_out", "in_domain"):
        for task, rows in report[scope].items():
            for name, vals in rows.items():
                cells = "  ".join(f"{k} {v['mean']:.4g}±{v['ci95'] or 0:.2g}" for k, v in
                                  (vals.items() if "mean" not in vals else [("diff", vals)]))
                print(f"{scope:9s} {task:8s} {name:38s} {cells}")
    for name, vals in report.get("vp_camera", {}).items():
        if isinstance(vals, dict) and "angle_mean" in vals:
            print(f"vp_camera {name:38s} " + "  ".join(f"{k} {vals[k]['mean']:.4g}±{vals[k]['ci95'] or 0:.2g}"
                                                       for k in VP_CAMERA_KEYS))
    if "class" in report:
        print(json.dumps(report["class"], indent=1))
    print(f"wrote {out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
