"""``mtml-export RUN --out DIR``: export a checkpoint for the runtime backends (ONNX graphs + manifest + model copy),
optionally folding an environment profile's multipliers into extra backbones and pre-building TensorRT engines.

Examples:
    mtml-export runs/am --out exports/am
    mtml-export runs/am --out exports/am-lab --fold-env ~/.ros/mtml/profiles/lab.json
    mtml-export runs/am --out exports/am --trt --trt-precision fp16      # on a GPU box / Jetson
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mtml_core.adapt.profiles import ProfileStore
from mtml_core.backends import load_backend
from mtml_core.backends.manifest import sha256_file
from mtml_core.checkpoint import WEIGHTS, load_checkpoint
from mtml_core.export import OPSET, export_run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="mtml-export", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="checkpoint directory (model.safetensors + config.yaml)")
    p.add_argument("--out", type=Path, required=True, help="export directory (created)")
    p.add_argument("--fold-env", type=Path, metavar="PROFILE",
                   help="environment profile (<name>.json) whose multipliers are folded into extra backbones; "
                        "it is copied to OUT/profiles/")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (>= 17, default {OPSET})")
    p.add_argument("--no-check", action="store_true", help="skip the torch vs onnxruntime parity check")
    p.add_argument("--trt", action="store_true", help="also build (and cache) TensorRT engines")
    p.add_argument("--trt-precision", choices=("fp16", "fp32"), default="fp16")
    p.add_argument("--trt-cache", type=Path, help="engine cache directory (default OUT/trt)")
    p.add_argument("--force-rebuild", action="store_true", help="rebuild TensorRT engines even when cached")
    return p.parse_args(argv)


def profile_store(run: Path, profile_json: Path) -> ProfileStore:
    """The profile store holding ``profile_json``, checked against the model in ``run`` as the engine checks it."""
    if profile_json.suffix != ".json" or not profile_json.is_file():
        raise FileNotFoundError(f"--fold-env: profile JSON not found: {profile_json}")
    model, _ = load_checkpoint(run)
    spec = {t: {k: list(v.shape) for k, v in model.heads[t].named_parameters()} for t in model.cfg.tasks}
    return ProfileStore(profile_json.parent, sha256_file(run / WEIGHTS), spec, model.cfg.multiplier_size,
                        model.embedding_size)


def load_fold(run: Path, profile_json: Path) -> dict[str, torch.Tensor | None]:
    """Per-task multipliers of a profile made for the model in ``run`` (verified like the engine does)."""
    profile = profile_store(run, profile_json).load(profile_json.stem)
    return {t: None if m is None else torch.from_numpy(m) for t, m in profile.multipliers.items()}


def parity(out: Path) -> dict[str, float]:
    """Max |onnxruntime - torch| per output on a random batch of 2 with random multipliers."""
    ref, ort_backend = load_backend("torch", out), load_backend("onnxruntime", out)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *ref.input_hw)).astype(np.float32)
    m = {t: rng.uniform(0.5, 1.0, ref.multiplier_size).astype(np.float32) for t in ref.tasks}
    a, b = ref.predict(x, m), ort_backend.predict(x, m)
    diffs = {t: float(np.abs(a[t] - b[t]).max()) for t in a}
    diffs["embed"] = float(np.abs(ref.embed(x) - ort_backend.embed(x)).max())
    return diffs


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mtml-export``."""
    args = parse_args(argv)
    try:
        fold = load_fold(args.run, args.fold_env) if args.fold_env else None
        manifest = export_run(args.run, args.out, fold=fold,
                              fold_source=None if args.fold_env is None else str(args.fold_env.resolve()),
                              opset=args.opset)
    except (FileNotFoundError, ValueError) as exc:
        print(f"mtml-export: {exc}", file=sys.stderr)
        return 2
    print(f"exported {args.run} -> {manifest}")
    if args.fold_env:
        dest = profile_store(args.run, args.fold_env).copy(args.fold_env.stem, args.out / "profiles")
        print(f"folded profile {args.fold_env.stem!r}; copied to {dest.parent}")
    if not args.no_check:
        diffs = parity(args.out)
        print("parity onnxruntime vs torch (max abs): " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
        if max(diffs.values()) > 1e-4:
            print("mtml-export: parity check failed (> 1e-4)", file=sys.stderr)
            return 1
    if args.trt:
        try:
            backend = load_backend("tensorrt", args.out, precision=args.trt_precision,
                                   cache_dir=args.trt_cache or args.out / "trt", force_rebuild=args.force_rebuild)
        except RuntimeError as exc:
            print(f"mtml-export: TensorRT engines not built: {exc}", file=sys.stderr)
            return 3
        print("TensorRT engines: " + ", ".join(f"{k} {v}" for k, v in backend.precisions.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
