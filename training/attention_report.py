"""Attention report (paper §5.3, Fig. 3): predicted vs "optimal" channel multipliers for a held-out environment.

For a domain task (depth, normals, vp) and a test environment: the attention module predicts m = 1 − w from a K-shot
support set; the "optimal" multipliers are fitted alone by gradient descent (Adam) on the task loss of many frames
of that environment, with every network parameter frozen and m initialised at 1. Compared on the deviation from
the identity, d = m − 1: cosine similarity, and the share of channels where the signs of d agree (over the channels
whose fitted |d| exceeds ``--min-dev``). Writes a PNG (both multiplier vectors per block) and a JSON.

    python -m training.attention_report mtml_core/assets/default --task depth --env corridor_neon
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mtml_core import preprocess
from mtml_core.adaptation import support_weights
from mtml_core.checkpoint import load_checkpoint
from mtml_core.data.episodes import FrameCache
from mtml_core.data.spec import builtin_envs, get_env
from mtml_core.losses import task_loss
from mtml_core.model import MultiTaskModel

DOMAIN = ("depth", "normals", "vp")


def env_tensors(model: MultiTaskModel, task: str, env: str, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and ``task`` labels of the first ``frames`` frames of built-in environment ``env``."""
    cfg = model.cfg
    cache = FrameCache(cfg.input_hw, frames)
    items = [cache.get(get_env(env), i) for i in range(frames)]
    return (preprocess.frames_to_tensor(items, None, cfg.mean, cfg.std), preprocess.frame_labels(task, items))


def predicted_multiplier(model: MultiTaskModel, task: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """m = 1 − w from the attention module on a support set (x, y)."""
    with torch.no_grad():
        return model.task_multiplier(task, support_weights(model, task, x, y))


def fit_multiplier(model: MultiTaskModel, task: str, x: torch.Tensor, y: torch.Tensor, steps: int = 200,
                   lr: float = 0.01) -> tuple[torch.Tensor, list[float]]:
    """The multipliers minimising the task loss on (x, y) with everything else frozen; returns (m, loss curve)."""
    for p in model.parameters():
        p.requires_grad_(False)
    m = torch.ones(model.cfg.multiplier_size, requires_grad=True)
    opt = torch.optim.Adam([m], lr=lr)
    curve = []
    for _ in range(steps):
        opt.zero_grad()
        loss = task_loss(task, model.heads[task](model.head_input(task, model.features(x, m))), y)
        loss.backward()
        opt.step()
        curve.append(float(loss.detach()))
    return m.detach(), curve


def compare(pred: torch.Tensor, fitted: torch.Tensor, min_dev: float = 1e-3) -> dict[str, float]:
    """Cosine similarity of the deviations from 1 and their sign agreement (%, over |fitted − 1| > min_dev)."""
    dp, df = pred - 1.0, fitted - 1.0
    mask = df.abs() > min_dev
    agree = (torch.sign(dp[mask]) == torch.sign(df[mask])).double().mean() if mask.any() else torch.tensor(float("nan"))
    return {"cosine_deviation": float(F.cosine_similarity(dp, df, dim=0)),
            "cosine_raw": float(F.cosine_similarity(pred, fitted, dim=0)),
            "sign_agreement_pct": 100.0 * float(agree), "channels_compared": int(mask.sum()),
            "pred_mean_abs_dev": float(dp.abs().mean()), "fitted_mean_abs_dev": float(df.abs().mean())}


def plot(pred: torch.Tensor, fitted: torch.Tensor, blocks: int, title: str, out: Path) -> None:
    """Both multiplier vectors per block (one panel per block), like the paper's Fig. 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = pred.numel() // blocks
    fig, axes = plt.subplots(1, blocks, figsize=(3.2 * blocks, 2.6), squeeze=False, sharey=True)
    for b, ax in enumerate(axes[0]):
        ax.plot(fitted[b * c:(b + 1) * c].numpy(), "o-", ms=2, lw=0.8, label="fitted (optimal)")
        ax.plot(pred[b * c:(b + 1) * c].numpy(), "s-", ms=2, lw=0.8, label="predicted")
        ax.axhline(1.0, color="0.6", lw=0.6)
        ax.set_title(f"block {b + 1}")
        ax.set_xlabel("channel")
    axes[0][0].set_ylabel("multiplier m")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def report(run: str | Path, task: str, env: str, shots: int = 5, frames: int = 24, steps: int = 200,
           lr: float = 0.01, min_dev: float = 1e-3, out: str | Path | None = None) -> dict[str, Any]:
    """Predicted vs fitted multipliers of ``task`` on test environment ``env``; writes <out>.png and <out>.json."""
    if task not in DOMAIN:
        raise ValueError(f"attention report: task must be one of {list(DOMAIN)}, got {task!r}")
    if shots >= frames:
        raise ValueError(f"attention report: shots ({shots}) must be below frames ({frames})")
    model, _ = load_checkpoint(run)
    model.eval()
    if task not in model.attention:
        raise ValueError(f"attention report: the model has no attention module for {task!r} "
                         f"(use_attention={model.cfg.use_attention}, tasks={list(model.cfg.tasks)})")
    x, y = env_tensors(model, task, env, frames)
    pred = predicted_multiplier(model, task, x[:shots], y[:shots])
    fitted, curve = fit_multiplier(model, task, x, y, steps, lr)
    with torch.no_grad():
        losses = {name: float(task_loss(task, model.heads[task](model.head_input(task, model.features(x, m))), y))
                  for name, m in (("identity", None), ("predicted", pred), ("fitted", fitted))}
    result = {"run": str(run), "task": task, "env": env, "env_split": get_env(env).split, "shots": shots,
              "frames": frames, "fit_steps": steps,
              **compare(pred, fitted, min_dev), "loss": losses, "fit_curve_first_last": [curve[0], curve[-1]]}
    out = Path(out) if out is not None else Path(run) / f"attention_{task}_{env}"
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(pred, fitted, model.cfg.blocks, f"{task} on {env}: cos(d)={result['cosine_deviation']:.2f}, "
         f"sign agreement {result['sign_agreement_pct']:.0f}%", out.with_suffix(".png"))
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: one report per (task, env)."""
    p = argparse.ArgumentParser(prog="python -m training.attention_report", description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder (or mtml_core/assets/default)")
    p.add_argument("--task", action="append", choices=DOMAIN, help="task(s) (default: all domain tasks)")
    p.add_argument("--env", action="append", help="test environment(s) (default: the first test environment)")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--frames", type=int, default=24, help="frames the multipliers are fitted on")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--out-dir", help="where to write (default: the run folder)")
    args = p.parse_args(argv)
    envs = args.env or [builtin_envs("test")[0].name]
    try:
        for task in args.task or DOMAIN:
            for env in envs:
                out = Path(args.out_dir) / f"attention_{task}_{env}" if args.out_dir else None
                r = report(args.run, task, env, args.shots, args.frames, args.steps, args.lr, out=out)
                print(f"{task:8s} {env:22s} cos(d)={r['cosine_deviation']:+.3f} sign agreement "
                      f"{r['sign_agreement_pct']:.1f}% loss identity {r['loss']['identity']:.4g} predicted "
                      f"{r['loss']['predicted']:.4g} fitted {r['loss']['fitted']:.4g}")
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"attention report: error: {exc}") from None


if __name__ == "__main__":
    main()
