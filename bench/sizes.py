"""Quality against node latency for three sizes of the product preset, trained with the same recipe and budget.

The sizes differ in backbone widths and decoder filters (:data:`SIZES`); everything else is the shipped default's
architecture. Each is trained from scratch with ``training/configs/default.yaml`` for the same number of steps:

    for s in small default large; do mtml-train --out runs/sizes/$s --set model.widths=... \\
        --set model.decoder_filters=... --set train.steps=300; done          # the values below, see docs/results.md

Latency: each model exported to ONNX and timed with ONNX Runtime (one thread, the node's setting), all four outputs
adapted (four distinct multipliers, perturbed head weights), batch 1, the models interleaved in rotating blocks so
that load on the shared machine affects all alike. Quality: VALIDATION environments (sizes are a choice, so the
test environments stay untouched), 5-shot, the same episodes for every model: depth AbsRel / δ<1.25, normals and
VP mean angle after AM adaptation, the place type named before adapting, beside the trivial baselines of the same
frames. Without trained runs (e.g. a clean clone) only the latency of randomly initialised models is measured.

    python bench/sizes.py [--runs runs/sizes] [--episodes 24] [--rounds 20]

Writes bench/results/sizes.json and docs/sizes.png (quality against p50 latency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout
sys.path.insert(0, str(ROOT / "bench"))

from inference import interleaved  # noqa: E402
from quality import class_eval, domain_eval, test_envs  # noqa: E402

from mtml_core.backends import load_backend  # noqa: E402
from mtml_core.backends.manifest import load_manifest  # noqa: E402
from mtml_core.checkpoint import load_checkpoint  # noqa: E402
from mtml_core.config import ModelConfig  # noqa: E402
from mtml_core.export import export_model  # noqa: E402
from mtml_core.model import MultiTaskModel  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "sizes.json"
FIGURE = ROOT / "docs" / "sizes.png"
SIZES = {"small": {"widths": [16, 32, 48, 64], "decoder_filters": [32, 16, 8]},
         "default": {"widths": [24, 48, 64, 96], "decoder_filters": [64, 32, 16]},
         "large": {"widths": [32, 64, 96, 128], "decoder_filters": [96, 48, 24]}}
HEADLINE = (("depth", "abs_rel"), ("depth", "delta_1.25_pct"), ("normals", "angle_mean"), ("vp", "angle_mean"))


def models(runs: Path) -> dict[str, tuple[MultiTaskModel, dict]]:
    """The trained run of every size under ``runs`` if all exist, else randomly initialised models (latency only)."""
    if all((runs / name / "model.safetensors").is_file() for name in SIZES):
        return {name: load_checkpoint(runs / name) for name in SIZES}
    print(f"{runs}: no trained run of every size ({', '.join(SIZES)}); timing randomly initialised models only")
    out = {}
    for name, size in SIZES.items():
        torch.manual_seed(0)
        cfg = ModelConfig(arch="unet", tasks=("class", "depth", "normals", "vp"), n_way=16, **size)
        out[name] = (MultiTaskModel(cfg).eval(), {})
    return out


def latency(named: dict[str, MultiTaskModel], rounds: int, block: int, workdir: Path) -> dict[str, dict]:
    """ONNX Runtime p50/p99 of the adapted four-output prediction per model, interleaved."""
    rng = np.random.default_rng(0)
    fns = {}
    for name, model in named.items():
        out = workdir / name
        export_model(model, out)
        man = load_manifest(out)
        backend = load_backend("onnxruntime", out, threads=1)
        h, w = man.input_hw
        x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
        mult = {t: rng.uniform(0.5, 1.0, man.multiplier_size).astype(np.float32) for t in man.tasks}
        heads = {t: {k: (v + 0.01 * torch.randn_like(v)).detach().numpy() for k, v in
                     model.heads[t].named_parameters()} for t in man.tasks}
        fns[name] = lambda b=backend, x=x, m=mult, hd=heads: b.predict(x, m, hd)
    return interleaved(fns, rounds, block)


def quality(model: MultiTaskModel, doc: dict, episodes: int) -> dict:
    """Validation-environment quality of one model (and the trivial baselines of the same frames)."""
    meta = doc.get("meta", {})
    steps = int(meta.get("inner_steps", 5))
    rates = {t: float(meta.get("task_inner_lr", {}).get(t, 0.03)) for t in model.cfg.tasks}
    cfg = model.cfg
    common = (tuple(cfg.input_hw), cfg.mean, cfg.std)
    held = domain_eval({"shipped": model}, rates, steps, test_envs("val", episodes), 5, 5, *common,
                       float(doc.get("data", {}).get("max_depth", 80.0)), panels=False,
                       optimizers={t: "sgd" for t in cfg.tasks})
    places = class_eval(model, steps, rates["class"], episodes, "val", *common)
    return {"held_out_val": held, "class": places}


def figure(report: dict) -> None:
    """Quality against p50 latency, one panel per headline metric, the best trivial baseline dashed."""
    fig, axes = plt.subplots(1, len(HEADLINE), figsize=(4 * len(HEADLINE), 3.4))
    for ax, (task, key) in zip(axes, HEADLINE, strict=True):
        for name, row in report["sizes"].items():
            value = row["quality"]["held_out_val"][task]["adapted (AM)"][key]["mean"]
            ax.scatter(row["latency"]["p50_ms"], value)
            ax.annotate(f"{name} ({row['parameters'] / 1e6:.2f} M)", (row["latency"]["p50_ms"], value), fontsize=8)
        base = [v[key]["mean"] for n, v in next(iter(report["sizes"].values()))["quality"]["held_out_val"][task]
                .items() if n not in ("served", "adapted (AM)", "prior + head") and key in v]
        if base:
            best = max(base) if key.endswith("pct") else min(base)
            ax.axhline(best, ls="--", c="grey", label="best trivial baseline")
            ax.legend(fontsize=7)
        ax.set_xlabel("ONNX Runtime p50 ms (4 outputs, adapted)")
        ax.set_title(f"{task} {key} (val, 5-shot)", fontsize=9)
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=110)


def main() -> None:
    """Time and evaluate every size, print the table, write the JSON and the figure."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "sizes", help="folder with small/ default/ large/")
    ap.add_argument("--episodes", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--block", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the quality evaluation")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.monotonic()
    loaded = models(args.runs)
    trained = bool(next(iter(loaded.values()))[1])
    with tempfile.TemporaryDirectory(prefix="mtml-sizes-") as tmp:
        lat = latency({n: m for n, (m, _) in loaded.items()}, args.rounds, args.block, Path(tmp))
    report = {"setup": {"runs": str(args.runs) if trained else None, "episodes": args.episodes, "split": "val",
                        "shots": 5, "onnxruntime_threads": 1, "machine": platform.processor() or platform.machine(),
                        "load_average_1min": os.getloadavg()[0]}, "sizes": {}}
    for name, (model, doc) in loaded.items():
        row = {**SIZES[name], "parameters": sum(p.numel() for p in model.parameters()), "latency": lat[name],
               "training": {k: doc.get("train", {}).get(k) for k in ("steps", "seed")} if trained else None}
        if trained:
            row["quality"] = quality(model.eval(), doc, args.episodes)
        report["sizes"][name] = row
    report["seconds"] = round(time.monotonic() - start, 1)
    RESULTS.write_text(json.dumps(report, indent=1))
    print(f"{'size':<9}{'params':>9}{'p50 ms':>8}{'p99 ms':>8}" + ("".join(f"{t[:5]} {k[:9]:>10}" for t, k in
                                                                       HEADLINE) + "  place %" if trained else ""))
    for name, row in report["sizes"].items():
        line = f"{name:<9}{row['parameters']:>9}{row['latency']['p50_ms']:>8.2f}{row['latency']['p99_ms']:>8.2f}"
        if trained:
            held = row["quality"]["held_out_val"]
            line += "".join(f"{held[t]['adapted (AM)'][k]['mean']:>16.4g}" for t, k in HEADLINE)
            line += f"{row['quality']['class']['place type named before adaptation, acc %']['served']['mean']:>9.1f}"
        print(line)
    if trained:
        figure(report)
        print(f"wrote {FIGURE}")
    print(f"wrote {RESULTS} in {report['seconds']} s")


if __name__ == "__main__":
    main()
