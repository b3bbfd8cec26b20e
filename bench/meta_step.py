"""Meta-train steps/s of AM, P-AM (literal and joint), ANIL, MAML-2nd and MAML-1st, side by side in one process.

Identical episodes for every method: 5-way 1-shot, 84×84, Conv-4-32, 4 episodes per meta-batch, 5 inner steps,
15 queries per class, classification only, BatchNorm in train mode (per-episode statistics for every method).
Methods run interleaved (one step each, in a rotating order, per round) so that a noisy shared machine affects all
alike; the figure is the median step time. Targets (joint mode): AM >= 3x MAML-2nd steps/s, AM time <= 1.25x ANIL.
One torch thread by default: on a 2-core machine shared with other jobs, OpenMP threads that spin-wait for a busy
core make timings erratic (seconds of jitter per step); ``--threads 2`` measures absolute throughput on a quiet one.
Each step is :meth:`MetaLearner.step`, the optimiser step mtml-train runs (``training.train.train_step`` only passes
it the rate schedule, bf16 autocast and multi-rank averaging). The process keeps freed memory in its heap as
``mtml-train`` does (:mod:`training.heap`); ``--heap system`` leaves glibc's defaults, under which every step re-faults
its large activation buffers from the OS (that result goes to ``meta_step_system_heap.json``). Peak resident memory
is recorded with the timings.

    python bench/meta_step.py [--rounds 12] [--warmup 2] [--threads 1] [--heap retain|system]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from mtml_core.config import ModelConfig
from mtml_core.meta import MetaConfig, MetaLearner, build_learner, model_config_for
from mtml_core.model import MultiTaskModel
from training.heap import retain_freed_memory

WAY, SHOT, QUERY, EPISODES, STEPS, SIZE = 5, 1, 15, 4, 5, 84
VARIANTS = (  # name, method, mode, first_order
    ("AM joint", "am", "joint", False),
    ("AM literal", "am", "literal", False),
    ("P-AM joint", "pam", "joint", False),
    ("P-AM literal", "pam", "literal", False),
    ("ANIL", "anil", "literal", False),
    ("MAML-2nd", "maml", "literal", False),
    ("MAML-1st", "maml", "literal", True),
)
RESULTS = Path(__file__).resolve().parent / "results"


def make_batch(generator: torch.Generator) -> dict[str, tuple[torch.Tensor, ...]]:
    """One meta-batch of random 5-way 1-shot episodes (timing does not depend on the pixel values)."""
    def labels(per_class: int) -> torch.Tensor:
        return torch.arange(WAY).repeat_interleave(per_class).expand(EPISODES, -1).clone()

    sx = torch.randn(EPISODES, WAY * SHOT, 3, SIZE, SIZE, generator=generator)
    qx = torch.randn(EPISODES, WAY * QUERY, 3, SIZE, SIZE, generator=generator)
    return {"class": (sx, labels(SHOT), qx, labels(QUERY))}


def build(method: str, mode: str, first_order: bool) -> MetaLearner:
    """A learner on a fresh, identically initialised class-only Conv-4-32 model."""
    torch.manual_seed(0)
    base = ModelConfig(tasks=("class",), blocks=4, filters=32, input_hw=(SIZE, SIZE), n_way=WAY)
    model = MultiTaskModel(model_config_for(method, base)).train()
    cfg = MetaConfig(method=method, mode=mode, inner_steps=STEPS, inner_lr=0.1, first_order=first_order)
    return build_learner(model, cfg)


def main() -> None:
    """Run the interleaved benchmark, print a table, write bench/results/meta_step.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per method first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--heap", choices=("retain", "system"), default="retain",
                        help="retain: keep freed memory for reuse, as mtml-train does (default); system: glibc's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    heap = args.heap
    if heap == "retain" and not retain_freed_memory():
        print("this C library has no mallopt: measuring with its own heap settings")
        heap = "system"
    load_before = os.getloadavg()[0]
    batch = make_batch(torch.Generator().manual_seed(0))
    learners = {name: build(method, mode, fo) for name, method, mode, fo in VARIANTS}
    times: dict[str, list[float]] = {name: [] for name in learners}
    names = list(learners)
    for r in range(args.warmup + args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            start = time.perf_counter()
            learners[name].step(batch)
            if r >= args.warmup:
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    rows = {name: {"median_s": median[name], "steps_per_s": 1.0 / median[name],
                   "min_s": min(times[name]), "max_s": max(times[name])} for name in names}
    ratios = {
        "AM_joint_speedup_vs_MAML2": median["MAML-2nd"] / median["AM joint"],
        "AM_joint_time_vs_ANIL": median["AM joint"] / median["ANIL"],
        "AM_literal_speedup_vs_MAML2": median["MAML-2nd"] / median["AM literal"],
        "AM_literal_time_vs_ANIL": median["AM literal"] / median["ANIL"],
    }
    targets = {"AM_joint_speedup_vs_MAML2 >= 3": ratios["AM_joint_speedup_vs_MAML2"] >= 3.0,
               "AM_joint_time_vs_ANIL <= 1.25": ratios["AM_joint_time_vs_ANIL"] <= 1.25}
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"heap: {heap}; peak resident memory {peak_rss_mb:.0f} MB")
    print(f"1-min load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)")
    print(f"{'method':<14}{'steps/s':>9}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name, row in rows.items():
        print(f"{name:<14}{row['steps_per_s']:>9.3f}{row['median_s']:>10.3f}{row['min_s']:>8.3f}{row['max_s']:>8.3f}")
    for key, value in ratios.items():
        print(f"{key:<30}{value:>8.2f}")
    for key, ok in targets.items():
        print(f"target {key:<32}{'met' if ok else 'MISSED'}")
    out = RESULTS / ("meta_step.json" if heap == "retain" else "meta_step_system_heap.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "setup": {"way": WAY, "shot": SHOT, "query_per_class": QUERY, "episodes": EPISODES, "inner_steps": STEPS,
                  "input": [SIZE, SIZE], "backbone": "Conv-4-32", "rounds": args.rounds, "warmup": args.warmup,
                  "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "heap": heap,
                  "peak_rss_mb": peak_rss_mb,
                  "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                  "load_avg_1min": [load_before, os.getloadavg()[0]]},
        "methods": rows, "ratios": ratios, "targets_met": targets}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
