"""Inference latency of the four outputs at 96×128, batch 1, per backend; and the backbone alone folded vs
unfolded vs without attention (no multiplier input), side by side in one run.

Per backend, two serving states: ``base`` (meta-initialisation: every task shares the identity multiplier, one
backbone pass) and ``adapted`` (four distinct task multipliers, adapted head weights: the backbone runs as one
stacked batch of 4; ``unstacked`` times the same work as one backbone call per task, for comparison).
Variants are timed interleaved (blocks of calls in rotation) so that load from other processes on the shared
machine affects all alike. Targets: onnxruntime adapted p50 <= 5 ms; folded backbone p50 <= 1.02 × the
no-attention backbone.

``uncertainty``: the cost of P-AM's uncertainty (:mod:`mtml_core.uncertainty`, the node's ``uncertainty_samples``)
with onnxruntime, side by side with the same adapted prediction without it: S sampled multipliers per task (one
stacked backbone call and one head call per task), S = 1, 4, 8, 16 for all four tasks (what the node does) and S = 8
for depth alone. The cost does not depend on the distribution's values, so the model need not be P-AM: every task
gets a Gaussian around its adapted multiplier. ``--uncertainty-only`` times just that section (onnxruntime, the
shipped default through the node's export cache) and writes bench/results/inference_uncertainty.json.

    python bench/inference.py [--export DIR] [--rounds 30] [--block 20] [--threads 1]

Prints a table and writes bench/results/inference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file

from mtml_core.backends import load_backend
from mtml_core.backends.manifest import load_manifest
from mtml_core.config import ModelConfig
from mtml_core.export import BackboneGraph, export_graph, export_model
from mtml_core.model import MultiTaskModel
from mtml_core.uncertainty import MultiplierDistribution, estimate

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "mtml_core" / "assets" / "default"
UNCERTAINTY_SAMPLES = (1, 4, 8, 16)


def make_export(out: Path, rng: np.random.Generator) -> Path:
    """Export the shipped default model if present (else a random default-config one), folding a random multiplier
    vector in [0.5, 1] for every task, plus a backbone without the multiplier input (``backbone_plain.onnx``)."""
    if (DEFAULT_MODEL / "model.safetensors").is_file():
        from mtml_core.checkpoint import load_checkpoint

        model, _ = load_checkpoint(DEFAULT_MODEL)
        source = str(DEFAULT_MODEL)
    else:
        torch.manual_seed(0)
        model, source = MultiTaskModel(ModelConfig()).eval(), "random init (ModelConfig defaults)"
    fold = torch.from_numpy(rng.uniform(0.5, 1.0, model.cfg.multiplier_size).astype(np.float32))
    export_model(model, out, fold={t: fold for t in model.cfg.tasks})
    blocks = load_manifest(out).doc["backbone"]["blocks"]
    h, w = model.cfg.input_hw
    export_graph(BackboneGraph(model.backbone, blocks), (torch.randn(2, 3, h, w),), out / "backbone_plain.onnx",
                 ["images"], [f"feat_{b}" for b in blocks], {"images": {0: torch.export.Dim("batch")}}, 18)
    return Path(source)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, block: int) -> dict[str, dict[str, float]]:
    """p50/p99/mean (ms) per function, timed in rotating blocks of ``block`` calls."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        for _ in range(5):
            f()
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            f = fns[name]
            for _ in range(block):
                t = time.perf_counter()
                f()
                times[name].append((time.perf_counter() - t) * 1e3)
    return {k: {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99)),
                "mean_ms": float(np.mean(v)), "calls": len(v)} for k, v in times.items()}


def time_uncertainty(ort_b: object, x: np.ndarray, adapted_m: dict, adapted_h: dict, man: object,
                     args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """The adapted prediction without ("off") and with the P-AM uncertainty estimate, interleaved."""
    urng = np.random.default_rng(1)
    dists = {t: MultiplierDistribution(np.log(1.0 - adapted_m[t]) - np.log(adapted_m[t]),  # mean = adapted_m[t]
                                       np.full(man.multiplier_size, np.log(0.5), np.float32)) for t in man.tasks}
    n_classes = len(man.class_names) or None
    fns: dict[str, Callable[[], object]] = {"off": lambda: ort_b.predict(x, adapted_m, adapted_h)}
    for s in UNCERTAINTY_SAMPLES:
        fns[f"S={s}, all tasks"] = lambda s=s: (ort_b.predict(x, adapted_m, adapted_h),
                                                estimate(ort_b, x, dists, adapted_h, s, urng, n_classes=n_classes))
    fns["S=8, depth only"] = lambda: (ort_b.predict(x, adapted_m, adapted_h),
                                      estimate(ort_b, x, dists, adapted_h, 8, urng, tasks=["depth"]))
    out = interleaved(fns, args.rounds, max(1, args.block // 4))
    for v in out.values():
        v["added_p50_ms"] = v["p50_ms"] - out["off"]["p50_ms"]
    return out


def print_uncertainty(uncertainty: dict[str, dict[str, float]], h: int, w: int) -> None:
    """The uncertainty rows of the table."""
    print(f"\nP-AM uncertainty (onnxruntime adapted + S sampled multipliers per task), {h}x{w}, batch 1; load "
          f"average {os.getloadavg()[0]:.1f}")
    print(f"{'samples':<30}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}")
    for k, v in uncertainty.items():
        print(f"{k:<30}{v['p50_ms']:>9.2f}{v['p99_ms']:>9.2f}{v['added_p50_ms']:>9.2f}")


def setup(h: int, w: int, source: str, args: argparse.Namespace) -> dict[str, object]:
    """The run's set-up for the JSON."""
    return {"input": [h, w], "batch": 1, "model": source, "rounds": args.rounds, "block": args.block,
            "threads": args.threads or "default", "torch": torch.__version__, "onnxruntime": ort.__version__,
            "cpus": len(os.sched_getaffinity(0)), "machine": platform.processor() or platform.machine(),
            "load_average_1min": os.getloadavg()[0]}


def main() -> None:
    """Run, print the table, write bench/results/inference.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", type=Path, help="use this export instead of making one")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--block", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1,
                    help="onnxruntime/torch threads (default 1, the node's setting; 0: one per core)")
    ap.add_argument("--uncertainty-only", action="store_true",
                    help="time only the P-AM uncertainty section (writes inference_uncertainty.json)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    tmp = tempfile.TemporaryDirectory(prefix="mtml-bench-")
    out = args.export or Path(tmp.name)
    if args.uncertainty_only and not args.export:
        from mtml_core.export_cache import resolve_export

        out = resolve_export(DEFAULT_MODEL, Path("~/.cache/mtml/exports").expanduser(), print)
        source = str(DEFAULT_MODEL)
    else:
        source = str(args.export) if args.export else str(make_export(out, rng))
    man = load_manifest(out)
    h, w = man.input_hw
    x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
    size = man.multiplier_size
    model = man.load_model()
    adapted_m = {t: rng.uniform(0.5, 1.0, size).astype(np.float32) for t in man.tasks}
    adapted_h = {t: {k: (v + 0.01 * torch.randn_like(v)).detach().numpy() for k, v in
                     model.heads[t].named_parameters()} for t in man.tasks}

    if args.uncertainty_only:
        ort_b = load_backend("onnxruntime", out, threads=args.threads)
        uncertainty = time_uncertainty(ort_b, x, adapted_m, adapted_h, man, args)
        print_uncertainty(uncertainty, h, w)
        path = RESULTS.with_name("inference_uncertainty.json")
        path.write_text(json.dumps({"setup": setup(h, w, source, args), "uncertainty": uncertainty}, indent=2))
        print(f"wrote {path}")
        return
    fold = load_file(str(out / man.doc["folded_multipliers"]))["folded_0"]
    backends = {"torch": load_backend("torch", out),
                "onnxruntime": load_backend("onnxruntime", out, threads=args.threads)}
    try:
        backends["tensorrt"] = load_backend("tensorrt", out, cache_dir=out / "trt")
    except RuntimeError as exc:
        print(f"tensorrt: skipped ({exc})")
    fns: dict[str, Callable[[], object]] = {}
    for name, b in backends.items():
        fns[f"{name} base"] = lambda b=b: b.predict(x)
        fns[f"{name} adapted"] = lambda b=b: b.predict(x, adapted_m, adapted_h)
    ort_b = backends["onnxruntime"]  # the same work without stacking: one backbone call per task multiplier
    fns["onnxruntime adapted, unstacked"] = lambda: [ort_b.predict(x, adapted_m, adapted_h, tasks=[t])
                                                      for t in man.tasks]
    results = interleaved(fns, args.rounds, args.block)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    folded_file = man.folded[0]["file"] if man.folded else None
    sessions = {"unfolded (multiplier input)": ("backbone.onnx", {"images": x, "multipliers": fold[None].numpy()}),
                "no attention (plain)": ("backbone_plain.onnx", {"images": x})}
    if folded_file:
        sessions["folded"] = (folded_file, {"images": x})
    bb_fns = {}
    for name, (file, feeds) in sessions.items():
        if (out / file).is_file():
            s = ort.InferenceSession(str(out / file), opts, providers=["CPUExecutionProvider"])
            bb_fns[name] = lambda s=s, feeds=feeds: s.run(None, feeds)
    backbone = interleaved(bb_fns, args.rounds, args.block)
    uncertainty = time_uncertainty(ort_b, x, adapted_m, adapted_h, man, args)

    print(f"\nall four outputs, {h}x{w}, batch 1 ({source}); load average {os.getloadavg()[0]:.1f} on "
          f"{len(os.sched_getaffinity(0))} CPUs")
    print(f"{'backend / state':<34}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for k, v in results.items():
        print(f"{k:<34}{v['p50_ms']:>9.2f}{v['p99_ms']:>9.2f}{v['mean_ms']:>9.2f}")
    print(f"\nbackbone only (onnxruntime), {h}x{w}, batch 1")
    for k, v in backbone.items():
        print(f"{k:<30}{v['p50_ms']:>9.3f}{v['p99_ms']:>9.3f}{v['mean_ms']:>9.3f}")
    print_uncertainty(uncertainty, h, w)
    targets = {"onnxruntime adapted p50 <= 5 ms": results["onnxruntime adapted"]["p50_ms"] <= 5.0}
    ratios = {}
    if "folded" in backbone and "no attention (plain)" in backbone:
        plain = backbone["no attention (plain)"]["p50_ms"]
        ratios = {"folded / plain": backbone["folded"]["p50_ms"] / plain,
                  "unfolded / plain": backbone["unfolded (multiplier input)"]["p50_ms"] / plain}
        targets["folded p50 <= 1.02 x plain"] = ratios["folded / plain"] <= 1.02
    for k, v in ratios.items():
        print(f"{k:<30}{v:>9.3f}")
    for k, ok in targets.items():
        print(f"target {k:<40}{'met' if ok else 'MISSED'}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "setup": setup(h, w, source, args),
        "outputs": results, "backbone": backbone, "uncertainty": uncertainty, "ratios": ratios,
        "targets_met": targets}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
