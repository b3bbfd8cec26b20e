"""Fit the attention prior w̄ of a run (mean attention output over training-split episodes) and save it.

``python -m training.prior RUN [--episodes N]`` refits an existing run in place; ``mtml-train`` does the same at
every save. See :func:`mtml_core.adaptation.estimate_prior_weights`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from mtml_core.adaptation import estimate_prior_weights
from mtml_core.checkpoint import load_checkpoint, save_checkpoint
from mtml_core.model import MultiTaskModel
from training import data as episodes

PRIOR_SEED_OFFSET = 104_729  # keeps the prior's episodes apart from the training and validation streams


def fit_prior(model: MultiTaskModel, cfg: Mapping[str, Any], n_episodes: int = 8,
              tasks: Sequence[str] | None = None) -> None:
    """Set the attention priors of ``tasks`` (default: all) from ``n_episodes`` fixed train-split episodes per task
    (eval-mode BatchNorm)."""
    tasks = [t for t in (model.cfg.tasks if tasks is None else tasks) if t in model.attention]
    if not tasks:
        return
    device = next(model.parameters()).device
    batch = episodes.fixed_batch(cfg, "train", int(cfg["train"]["seed"]) + PRIOR_SEED_OFFSET, n_episodes, tasks,
                                 device)
    was_training = model.training
    model.eval()
    try:
        estimate_prior_weights(model, {t: list(zip(sx, sy)) for t, (sx, sy, _, _) in batch.items()})
    finally:
        model.train(was_training)


def main(argv: Sequence[str] | None = None) -> None:
    """Refit the prior of a run folder and rewrite its checkpoint."""
    p = argparse.ArgumentParser(prog="python -m training.prior", description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder (model.safetensors + config.yaml)")
    p.add_argument("--episodes", type=int, default=8, help="train-split episodes per task (default 8)")
    args = p.parse_args(argv)
    model, doc = load_checkpoint(args.run)
    fit_prior(model, doc, args.episodes)
    save_checkpoint(model, args.run, {k: v for k, v in doc.items() if k != "model"})
    for task in model.cfg.tasks:
        if task not in model.attention:
            continue
        w = model.attention[task].prior
        print(f"{task:8s} mean w̄ {float(w.mean()):.4f}  max {float(w.max()):.4f}")


if __name__ == "__main__":
    main()
