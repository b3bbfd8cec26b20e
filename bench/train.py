"""Meta-train steps/s of multi-task AM (joint, literal) vs ANIL vs MAML on the built-in world, as mtml-train runs.

Setup = the shipped default config (training/configs/default.yaml): 4 tasks, 96×128, Conv-4-32, 5-shot, the same
meta-batches of real built-in-world episodes for every method (rendered before timing; the data time per step is
reported separately). Each step is ``training.train.train_step``, the step mtml-train runs (with the config's bf16
autocast). Methods run interleaved (one step each, rotating order) so that a noisy shared machine affects
all alike; the figure is the median step time. Freed memory stays in the heap, as in mtml-train (train.retain_heap).

    python bench/train.py [--rounds 6] [--warmup 1] [--threads N] [--meta-batch 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from mtml_core.meta import MetaLearner, build_learner
from mtml_core.model import MultiTaskModel
from training import data, runconfig
from training.distributed import Context
from training.heap import retain_freed_memory
from training.train import train_step

VARIANTS = (  # name, method, mode, first_order
    ("AM joint", "am", "joint", True),
    ("AM literal", "am", "literal", True),
    ("ANIL", "anil", "literal", True),
    ("MAML-1st", "maml", "literal", True),
    ("MAML-2nd", "maml", "literal", False),
)
RESULTS = Path(__file__).resolve().parent / "results" / "train.json"


def build(cfg: dict, method: str, mode: str, first_order: bool) -> MetaLearner:
    """A learner on a fresh, identically initialised model of the default config."""
    cfg = runconfig.resolve(runconfig.merge(cfg, {"meta": {"method": method, "mode": mode,
                                                           "first_order": first_order}}))
    torch.manual_seed(0)
    return build_learner(MultiTaskModel(runconfig.model_config(cfg)).train(), runconfig.meta_config(cfg))


def main() -> None:
    """Run the interleaved benchmark, print a table, write bench/results/train.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per method first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--meta-batch", type=int, default=1, help="episodes per task per step")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = runconfig.load(None, [f"data.meta_batch={args.meta_batch}"])
    heap = "retain" if cfg["train"]["retain_heap"] and retain_freed_memory() else "system"
    samplers = data.samplers(cfg, "train")
    total = args.warmup + args.rounds
    start = time.perf_counter()
    batches = [data.make_batch(samplers, data.step_seeds(0, r, args.meta_batch)) for r in range(total)]
    warm = time.perf_counter() - start
    start = time.perf_counter()
    data.make_batch(samplers, data.step_seeds(0, total, args.meta_batch))
    data_s = time.perf_counter() - start  # one meta-batch from the warm frame cache
    learners = {name: build(cfg, method, mode, fo) for name, method, mode, fo in VARIANTS}
    names = list(learners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(total):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            train_step(learners[name], batches[r], Context(), bf16=cfg["train"]["bf16"])
            if r >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    rows = {name: {"median_s": statistics.median(ts), "steps_per_s": 1.0 / statistics.median(ts),
                   "min_s": min(ts), "max_s": max(ts)} for name, ts in times.items()}
    ratios = {f"{name}_time_vs_ANIL": rows[name]["median_s"] / rows["ANIL"]["median_s"] for name in names}
    print(f"{'method':<12}{'steps/s':>9}{'median s':>10}{'min s':>8}{'max s':>8}{'vs ANIL':>9}")
    for name, row in rows.items():
        print(f"{name:<12}{row['steps_per_s']:>9.3f}{row['median_s']:>10.3f}{row['min_s']:>8.3f}"
              f"{row['max_s']:>8.3f}{ratios[name + '_time_vs_ANIL']:>8.2f}x")
    print(f"data: {data_s:.3f} s per meta-batch from the warm cache ({warm:.1f} s to render the pool first)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "setup": {"config": "training/configs/default.yaml", "tasks": cfg["model"]["tasks"],
                  "input": cfg["model"]["input_hw"], "filters": cfg["model"]["filters"],
                  "k_shot": cfg["data"]["k_shot"], "class_query": cfg["data"]["class_query"],
                  "domain_query": cfg["data"]["domain_query"], "meta_batch": args.meta_batch,
                  "inner_steps": cfg["meta"]["inner_steps"], "bf16": cfg["train"]["bf16"], "rounds": args.rounds,
                  "warmup": args.warmup,
                  "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "heap": heap,
                  "machine": platform.processor() or platform.machine()},
        "methods": rows, "ratios": ratios, "data_s_per_batch": data_s, "render_warmup_s": warm}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
