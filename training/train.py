"""mtml-train: meta-train a multi-task model (AM, P-AM, ANIL multi-head, MAML) and write a run folder.

Run folder: ``model.safetensors`` + ``config.yaml`` (the full run config, class names per split, the step) via
:mod:`mtml_core.checkpoint`; ``train_state.safetensors`` (optimisers, balancer, RNG: resumable, no pickle);
``metrics.csv``; ``validation.png`` (validation curves per task). Validation runs on the val split every
``train.val_every`` steps. Under ``torchrun`` each rank trains on its share of the meta-batch (see distributed.py).

    mtml-train --out runs/am --set meta.inner_steps=5 --set model.tasks=[class,depth]
    mtml-train --resume runs/am --set train.steps=2000
    mtml-train --init runs/am --freeze-backbone --out runs/am_novp --set model.tasks=[class,depth,normals]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mtml_core.adaptation import imprint_prototypes
from mtml_core.checkpoint import load_checkpoint, load_config, save_checkpoint
from mtml_core.data.named_images import NamedImages
from mtml_core.meta import Batch, MetaLearner, build_learner
from mtml_core.model import MultiTaskModel
from training import data as episodes
from training import distributed as dist_utils
from training import runconfig
from training.curves import MetricsLog, plot_curves
from training.heap import retain_freed_memory
from training.prior import fit_prior
from training.state import load_train_state, save_train_state

OWNED_PREFIXES = ("heads.", "attention.", "label_encoders.", "masks.")
PER_CATEGORY = ("heads.class.", "attention.class.embed.")  # sized by n_way: prototype rows, one-hot label columns


def task_of(name: str) -> str | None:
    """The task a parameter/buffer name belongs to (``heads.depth.…`` → depth), or None for shared ones."""
    for prefix in OWNED_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):].split(".")[0]
    return None


def transplant(model: MultiTaskModel, source: MultiTaskModel) -> list[str]:
    """Copy every tensor of ``source`` whose name and shape exist in ``model`` (of the class task's tensors sized by the
    number of categories, the part both have); returns the names not (fully) copied."""
    state, fresh = model.state_dict(), []
    src = source.state_dict()
    with torch.no_grad():
        for name, value in state.items():
            if name in src and src[name].shape == value.shape:
                value.copy_(src[name])
            elif name.startswith(PER_CATEGORY) and name in src and src[name].ndim == value.ndim:
                common = tuple(slice(0, min(a, b)) for a, b in zip(value.shape, src[name].shape, strict=True))
                value[common].copy_(src[name][common])  # more (or fewer) categories: the common part carries over
                fresh.append(f"{name} (kept [{', '.join(f':{c.stop}' for c in common)}])")
            else:
                fresh.append(name)
    return fresh


def imprint_named_rows(model: MultiTaskModel, images: NamedImages, names: Sequence[str], per_class: int = 16) -> None:
    """Weight imprinting at the start of a run: the class rows of ``names`` become the mean unit embedding of (up to
    ``per_class`` centre crops of) their training images under the served class multiplier. Without it, Adam pushes
    100 randomly initialised rows away from the few images each sees and none is ever predicted."""
    head, cfg = model.heads["class"], model.cfg
    rows = [cfg.class_names.index(n) for n in names]
    idx = np.concatenate([np.flatnonzero(images.labels == r)[:per_class] for r in rows] + [np.empty(0)]).astype(int)
    if idx.size == 0:  # every category already named by the init run (e.g. a further stage from the shipped model)
        return
    x, y = images.batch(idx, None, cfg.mean, cfg.std)
    with torch.no_grad():
        feats = model.features(x, model.prior_multiplier("class"))
        head.prototypes.copy_(imprint_prototypes(head, head.prototypes, model.head_input("class", feats), y,
                                                 min(rows)))


def check_compatible(model_cfg: Mapping[str, Any], init_cfg: Mapping[str, Any]) -> None:
    """Refuse ``--init`` when the architectures differ in anything but the task list (names the keys)."""
    ignore = {"tasks", "multiscale_heads", "class_names"} | ({"n_way"} if model_cfg.get("arch") == "unet" else set())
    diff = sorted(k for k in model_cfg if k not in ignore and model_cfg[k] != init_cfg.get(k))
    if diff:
        details = "; ".join(f"{k}: {init_cfg.get(k)!r} in the init run vs {model_cfg[k]!r}" for k in diff)
        raise ValueError(f"--init: the new model differs from the init run beyond its tasks: {details}")


def freeze(model: MultiTaskModel, keep_tasks: Sequence[str]) -> None:
    """Freeze the backbone and every parameter of the tasks in ``keep_tasks`` (their values stay bit-identical)."""
    for name, p in model.named_parameters():
        owner = task_of(name)
        if owner is None or owner in keep_tasks:
            p.requires_grad_(False)


def set_train_mode(model: MultiTaskModel, frozen_backbone: bool) -> None:
    """Train mode; a frozen backbone stays in eval mode so its BatchNorm statistics are not updated."""
    model.train()
    if frozen_backbone:
        model.backbone.eval()


def lr_factor(step: int, steps: int, schedule: str, warmup: int = 50) -> float:
    """Rate multiplier at ``step``: 1 (constant), or a linear warm-up then a cosine decay to 5 % (cosine). A pure
    function of the step, so a resumed run continues the same schedule."""
    if schedule == "constant" or steps <= 0:
        return 1.0
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_step(learner: MetaLearner, batch: Batch, ctx: dist_utils.Context, lr_scale: float = 1.0,
               bf16: bool = False) -> dict[str, float]:
    """One meta-update of ``mtml-train``: :meth:`MetaLearner.step` with rates scaled by ``lr_scale``, the forward pass
    under bfloat16 autocast if ``bf16`` (CPU with AVX512-BF16, or CUDA), and the gradients and BatchNorm statistics
    averaged over ranks."""
    stats = learner.step(batch, lr_scale=lr_scale, bf16=bf16,
                         reduce_gradients=lambda params: dist_utils.average_gradients(params, ctx))
    dist_utils.average_buffers(learner.model, ctx)
    return stats


def validate(learner: MetaLearner, batch: Batch, frozen_backbone: bool) -> dict[str, float]:
    """Meta-objective figures on fixed val episodes, in eval mode (running BN statistics), no update."""
    learner.model.eval()
    try:
        with torch.no_grad():
            _, stats = learner.meta_loss(batch)
    finally:
        set_train_mode(learner.model, frozen_backbone)
    return stats


class Run:
    """Everything one training run holds: config, model, learner, samplers, run folder and step."""

    def __init__(self, cfg: dict[str, Any], run_dir: Path, ctx: dist_utils.Context, *, init: Path | None = None,
                 freeze_backbone: bool = False, resume: bool = False) -> None:
        self.cfg, self.run_dir, self.ctx = cfg, run_dir, ctx
        self.step, self.init = 0, str(init) if init else None
        self.frozen_tasks: list[str] = []
        self.freeze_backbone = freeze_backbone
        torch.manual_seed(cfg["train"]["seed"])
        if resume:
            self._resume()
        else:
            self.model = MultiTaskModel(runconfig.model_config(cfg))
            if init is not None:
                self._init_from(init)
            self.learner = build_learner(self.model.to(ctx.device), runconfig.meta_config(cfg))
        dist_utils.broadcast_module(self.model, ctx)
        set_train_mode(self.model, self.freeze_backbone)
        self.tasks = [t for t in self.model.cfg.tasks if t not in self.frozen_tasks]

    def _init_from(self, init: Path) -> None:
        source, _ = load_checkpoint(init)
        check_compatible(self.model.cfg.to_dict(), source.cfg.to_dict())
        transplant(self.model, source)
        images = episodes.named_images(self.cfg, "train")
        if images is not None:  # categories the init model did not name start at their images' mean embedding
            imprint_named_rows(self.model, images, [n for n in self.model.cfg.class_names
                                                    if n not in source.cfg.class_names])
        if self.freeze_backbone:
            self.frozen_tasks = [t for t in self.model.cfg.tasks if t in source.cfg.tasks]
            freeze(self.model, self.frozen_tasks)

    def _resume(self) -> None:
        doc = load_config(self.run_dir)
        state = doc.get("state") or {}
        if "step" not in state:
            raise ValueError(f"cannot resume {self.run_dir}: config.yaml has no state.step (not a training run)")
        self.model, _ = load_checkpoint(self.run_dir)
        if self.model.cfg.to_dict() != self.cfg["model"]:
            diff = sorted(k for k, v in self.cfg["model"].items() if self.model.cfg.to_dict().get(k) != v)
            raise ValueError(f"cannot resume {self.run_dir}: model settings {diff} differ from the checkpoint")
        self.step, self.init = int(state["step"]), state.get("init")
        self.freeze_backbone = bool(state.get("freeze_backbone", False))
        self.frozen_tasks = list(state.get("frozen_tasks", []))
        if self.frozen_tasks or self.freeze_backbone:
            freeze(self.model, self.frozen_tasks)
        self.learner = build_learner(self.model.to(self.ctx.device), runconfig.meta_config(self.cfg))
        saved = load_train_state(self.run_dir, self.step)
        try:
            self.learner.load_state_dict(saved["learner"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ValueError(f"cannot resume {self.run_dir}: optimiser state does not fit this model/method "
                             f"({type(exc).__name__}: {exc})") from exc
        torch.set_rng_state(saved["rng"])

    def save(self) -> None:
        """Train state first, then weights + config (config.yaml's step says which state is complete)."""
        save_train_state(self.run_dir, {"learner": self.learner.state_dict(), "rng": torch.get_rng_state()},
                         self.step)
        extra = {k: v for k, v in self.cfg.items() if k != "model"}
        extra["classes"] = episodes.class_names(self.cfg)
        extra["state"] = {"step": self.step, "init": self.init, "freeze_backbone": self.freeze_backbone,
                          "frozen_tasks": self.frozen_tasks, "trained_tasks": self.tasks}
        fit_prior(self.model, self.cfg, tasks=self.tasks)  # frozen tasks keep theirs
        save_checkpoint(self.model, self.run_dir, extra)


def _log_values(stats: Mapping[str, float], tasks: Sequence[str]) -> dict[str, float]:
    keep = ("loss", "acc", "modulated", "served", "kl", "w", "weight")
    return {k: v for k, v in stats.items() if k == "loss" or (k.split("/")[0] in tasks and k.split("/")[-1] in keep)}


def train(cfg: dict[str, Any], run_dir: str | Path, *, init: str | Path | None = None, freeze_backbone: bool = False,
          resume: bool = False, device: str | None = None, progress: bool = True) -> Path:
    """Train (or resume) a run into ``run_dir``; returns the run folder."""
    ctx = dist_utils.init(device)
    run_dir = Path(run_dir)
    if cfg["train"]["threads"]:
        torch.set_num_threads(cfg["train"]["threads"])
    if cfg["train"]["retain_heap"] and ctx.device.type == "cpu":
        retain_freed_memory()
    try:
        if not resume and cfg["data"]["source"] == "world" and cfg["model"]["arch"] == "unet" \
                and "class" in cfg["model"]["tasks"]:
            cfg["model"]["class_names"] = episodes.named_classes(cfg)  # the place types, then the spec's categories
        run = Run(cfg, run_dir, ctx, init=Path(init) if init else None, freeze_backbone=freeze_backbone,
                  resume=resume)
        steps = cfg["train"]["steps"] if run.tasks else run.step
        tr = cfg["train"]
        batches = episodes.train_batches(cfg, run.tasks, run.step, ctx.rank, ctx.world, ctx.device)
        val_batch = None
        if ctx.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            log = MetricsLog(run_dir, keep_until=run.step)
            if run.tasks:
                val_batch = episodes.fixed_batch(cfg, "val", tr["seed"] + 7919, tr["val_episodes"], run.tasks,
                                                 ctx.device)
        start, bar = time.monotonic(), None
        if ctx.main and progress and run.step < steps:
            bar = tqdm(total=steps, initial=run.step, desc=f"{cfg['meta']['method']} train", dynamic_ncols=True,
                       mininterval=1.0)
        while run.step < steps:
            stats = train_step(run.learner, next(batches), ctx, lr_factor(run.step, steps, tr["lr_schedule"]),
                               tr["bf16"])
            run.step += 1
            if run.step % tr["log_every"] == 0 or run.step == steps:
                values = {k: dist_utils.all_mean(v, ctx) for k, v in _log_values(stats, run.tasks).items()}
                if ctx.main:
                    log.write(run.step, "train", values)
                    if bar is not None:
                        bar.set_postfix({k.replace("/loss", ""): f"{v:.3g}" for k, v in values.items()
                                         if k.endswith("loss")}, refresh=False)
            if bar is not None:
                bar.update(1)
            out_of_time = tr["max_minutes"] is not None and time.monotonic() - start > 60 * tr["max_minutes"]
            if tr["max_minutes"] is not None:  # every rank stops at the same step
                out_of_time = dist_utils.all_mean(float(out_of_time), ctx) > 0
            if ctx.main and (run.step % tr["val_every"] == 0 or run.step == steps or out_of_time):
                log.write(run.step, "val", _log_values(validate(run.learner, val_batch, run.freeze_backbone),
                                                       run.tasks))
            if ctx.main and (run.step % tr["save_every"] == 0 or run.step == steps or out_of_time):
                run.save()
            if out_of_time:
                break
        if bar is not None:
            bar.close()
        if ctx.main:
            if not (run_dir / "config.yaml").is_file() or run.step == 0 or not run.tasks:
                run.save()
            if run.tasks and (run_dir / "metrics.csv").stat().st_size > 40:
                plot_curves(run_dir, run.tasks)
    finally:
        dist_utils.shutdown(ctx)
    return run_dir


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of mtml-train."""
    p = argparse.ArgumentParser(prog="mtml-train", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML run config (default: the shipped training/configs/default.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (YAML syntax), e.g. meta.inner_steps=5; repeatable")
    p.add_argument("--method", choices=("am", "pam", "anil", "maml"), help="shortcut for --set meta.method=…")
    p.add_argument("--tasks", help="shortcut for --set model.tasks=[…], comma-separated")
    p.add_argument("--out", help="run folder (default: runs/<method>-<time>)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN (its config.yaml, plus --set)")
    p.add_argument("--init", metavar="RUN", help="start from RUN's weights (its config, plus --set)")
    p.add_argument("--freeze-backbone", action="store_true",
                   help="with --init: train only the tasks RUN does not have; everything else stays bit-identical")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: CUDA when present)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.freeze_backbone and not args.init:
        p.error("--freeze-backbone needs --init RUN")
    if args.resume and (args.init or args.config):
        p.error("--resume takes the run's own config; use --set to change it")
    if args.method:
        args.overrides.append(f"meta.method={args.method}")
    if args.tasks:
        args.overrides.append(f"model.tasks=[{args.tasks}]")
    return args


def config_from_run(run_dir: str | Path, overrides: Sequence[str]) -> dict[str, Any]:
    """A run's config.yaml (its run sections) with ``--set`` overrides applied, resolved."""
    doc = load_config(run_dir)
    base = {k: v for k, v in doc.items() if k in runconfig.SECTIONS}
    return runconfig.resolve(runconfig.merge(base, runconfig.parse_overrides(overrides)))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``mtml-train``."""
    args = parse_args(argv)
    try:
        if args.resume:
            cfg, out = config_from_run(args.resume, args.overrides), Path(args.resume)
        elif args.init:
            overrides = list(args.overrides)
            cfg = config_from_run(args.init, overrides) if not args.config else runconfig.load(args.config, overrides)
            out = Path(args.out or f"runs/{cfg['meta']['method']}-{time.strftime('%Y%m%d-%H%M%S')}")
        else:
            cfg = runconfig.load(args.config, args.overrides)
            out = Path(args.out or f"runs/{cfg['meta']['method']}-{time.strftime('%Y%m%d-%H%M%S')}")
        if not args.resume and (out / "config.yaml").exists():
            raise ValueError(f"{out} already holds a run; use --resume {out} or another --out")
        run_dir = train(cfg, out, init=args.init, freeze_backbone=args.freeze_backbone, resume=bool(args.resume),
                        device=args.device, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"mtml-train: error: {exc}") from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run folder: {run_dir}")


if __name__ == "__main__":
    main()
