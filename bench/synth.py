"""Synthetic world throughput: frames/s on one core at 96x128 and 240x320, and warm episode rate.

Usage: python bench/synth.py [--frames N]. Prints a table; writes bench/results/synth.json.
Target: >= 500 frames/s per core at 96x128.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import torch  # noqa: E402

from mtml_core.data.episodes import (  # noqa: E402
    ClassEpisodeSampler,
    DomainEpisodeSampler,
    FrameCache,
    SynthCategories,
)
from mtml_core.data.spec import builtin_envs  # noqa: E402
from mtml_core.data.synth import render_frame  # noqa: E402

TARGET_FPS_96x128 = 500.0


def frames_per_second(size: tuple[int, int], frames: int) -> dict:
    envs = builtin_envs()
    per_env = max(1, frames // len(envs))
    for spec in envs:  # warm-up
        render_frame(spec, 10_000, size)
    by_family: dict[str, list] = {}
    t_all = 0.0
    for spec in envs:
        t0 = time.process_time()
        for s in range(per_env):
            render_frame(spec, s, size)
        dt = time.process_time() - t0
        t_all += dt
        by_family.setdefault(spec.family, []).append(dt)
    n = per_env * len(envs)
    return {"size": list(size), "frames": n, "fps": n / t_all,
            "fps_by_family": {f: per_env * len(v) / sum(v) for f, v in by_family.items()}}


def episode_rate(iterations: int) -> dict:
    """Meta-iterations/s (one 5-way 1-shot 15-query class episode at 84x84 + depth, normals, vp
    episodes of 5+15 frames at 96x128) after the frame caches are warm."""
    cache = FrameCache((96, 128), pool=32)
    cls = ClassEpisodeSampler(SynthCategories("train", (84, 84), pool=20), 5, 1, 15, size=(84, 84))
    dom = [DomainEpisodeSampler("train", t, 5, 15, cache=cache) for t in ("depth", "normals", "vp")]
    t0 = time.perf_counter()
    for i in range(400):  # warm the caches
        cls.sample(i)
        dom[0].sample(i)
    warm = time.perf_counter() - t0
    t0 = time.process_time()
    for i in range(iterations):
        cls.sample(10_000 + i)
        for d in dom:
            d.sample(10_000 + i)
    return {"iterations_per_s": iterations / (time.process_time() - t0), "cache_warmup_s": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=960)
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    rows = [frames_per_second((96, 128), args.frames), frames_per_second((240, 320), args.frames // 4)]
    episodes = episode_rate(args.iterations)
    print(f"{'size':>9s} {'frames':>7s} {'frames/s/core':>14s}  per family")
    for r in rows:
        fam = " ".join(f"{k}={v:.0f}" for k, v in r["fps_by_family"].items())
        print(f"{r['size'][0]:>4d}x{r['size'][1]:<4d} {r['frames']:>7d} {r['fps']:>14.0f}  {fam}")
    print(f"episodes: {episodes['iterations_per_s']:.1f} meta-iterations/s/core (class 5w1s15q@84x84 + 3 domain "
          f"5+15@96x128), cache warm-up {episodes['cache_warmup_s']:.1f} s")
    ok = rows[0]["fps"] >= TARGET_FPS_96x128
    print(f"target >= {TARGET_FPS_96x128:.0f} frames/s/core at 96x128: {'met' if ok else 'NOT met'}")
    out = Path(__file__).resolve().parent / "results" / "synth.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"render": rows, "episodes": episodes, "target_fps_96x128": TARGET_FPS_96x128,
                               "target_met": ok, "cpu": platform.processor() or platform.machine(),
                               "timer": "process CPU time, 1 thread"}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
