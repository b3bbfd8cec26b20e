"""kill -9 during profile saves: a forked process saves profiles in a loop (three names, each save a new version)
and, once one or two saves are done, is killed with SIGKILL at a random moment; then a store is opened on the
directory (which cleans up) and every profile must load cleanly in the version it had before the interrupted save
or in the new one, never be lost, and no temporary or orphaned file may remain. ``tests/test_adapt_profiles.py``
runs a few seeded trials.

    python bench/profile_kill.py [--trials 200] [--seed 0]

Prints a summary and writes bench/results/profile_kill.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mtml_core.adapt.profiles import Profile, ProfileStore
from mtml_core.backends.manifest import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "profile_kill.json"
NAMES = ("lab", "hall", "yard")
SHA = "ab" * 32
SPEC = {"depth": {"w": [64, 32], "b": [64]}}
MULTIPLIER = 256
EMBEDDING = 512
SIGNATURE_ROWS = 200  # ~0.4 MiB of tensors per save, so a kill often lands inside the write


def open_store(root: Path) -> ProfileStore:
    """The store every trial uses (opening it cleans the directory)."""
    return ProfileStore(root, SHA, SPEC, MULTIPLIER, EMBEDDING)


def profile(version: int) -> Profile:
    """Save number ``version``: name NAMES[version % 3], every value equal to ``version``."""
    v = float(version)
    return Profile(NAMES[version % len(NAMES)], {"depth": np.full(MULTIPLIER, v, np.float32)},
                   {"depth": {"w": np.full((64, 32), v, np.float32), "b": np.full(64, v, np.float32)}},
                   signature=np.full((SIGNATURE_ROWS, EMBEDDING), v, np.float32),
                   stats={"depth": {"shots": version, "loss_before": v, "loss_after": v, "loss_initial": v}})


def _saver(root: str, start: int, done: Any) -> None:
    store = open_store(Path(root))
    version = start
    while True:
        store.save(profile(version))
        done.value = version
        version += 1


def trial(root: Path, rng: random.Random, max_delay: float, start: int,
          before: dict[str, int | None]) -> dict[str, Any]:
    """One kill: saves numbered from ``start`` in a forked process, SIGKILL after a random delay, then check every
    profile against ``before`` (the version each name had) and the saves that completed. Returns what was found
    per name and whether it was allowed ({'ok': bool, ...})."""
    done = mp.get_context("fork").Value("q", start - 1, lock=False)
    proc = mp.get_context("fork").Process(target=_saver, args=(str(root), start, done), daemon=True)
    proc.start()
    wait_for = start + rng.randint(0, 1)  # one or two saves done first, however slow the machine is
    limit = time.monotonic() + 30.0
    while done.value < wait_for and time.monotonic() < limit and proc.is_alive():
        time.sleep(0.001)
    time.sleep(rng.uniform(0.0, max_delay))
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    last = int(done.value)
    tmp_left = sorted(p.name for p in root.iterdir() if p.name.endswith(".tmp")) if root.is_dir() else []
    store = open_store(root)
    problems, found = [], {}
    for i, name in enumerate(NAMES):
        completed = [v for v in range(start, last + 1) if v % len(NAMES) == i]
        allowed = {completed[-1] if completed else before[name]}
        if (last + 1) % len(NAMES) == i:
            allowed.add(last + 1)  # the save in flight may have committed before the kill
        try:
            p = store.load(name)
            got = int(p.stats["depth"]["shots"])
            if not (np.all(p.signature == got) and np.all(p.heads["depth"]["w"] == got)):
                problems.append(f"{name}: tensors of another version than its JSON")
        except FileNotFoundError:
            got = None
        except ValueError as exc:
            got = None
            problems.append(f"{name}: {exc}")
        found[name] = got
        if got not in allowed:
            problems.append(f"{name}: version {got}, expected one of {sorted(allowed, key=str)}")
    referenced = set()
    for name in NAMES:
        try:
            referenced.add(json.loads((root / f"{name}.json").read_text())["tensors"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    stray = sorted(p.name for p in root.iterdir() if p.name.endswith((".tmp", ".safetensors"))
                   and p.name not in referenced) if root.is_dir() else []
    if stray:
        problems.append(f"left after opening the store: {stray}")
    return {"ok": not problems, "problems": problems, "start": start, "last_completed": last, "found": found,
            "tmp_before_open": tmp_left}


def run(trials: int, seed: int, max_delay: float = 0.05) -> dict[str, Any]:
    """``trials`` kills in one directory, each continuing from what the last left; summary with the failures."""
    rng = random.Random(seed)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "profiles"
        found: dict[str, int | None] = dict.fromkeys(NAMES)
        start = 0
        for _ in range(trials):
            results.append(trial(root, rng, max_delay, start, found))
            found, start = results[-1]["found"], results[-1]["last_completed"] + 2
    return {"trials": trials, "seed": seed, "failures": [r for r in results if not r["ok"]],
            "kills_with_tmp_left": sum(bool(r["tmp_before_open"]) for r in results),
            "saves_completed": sum(r["last_completed"] + 1 - r["start"] for r in results)}


def main() -> None:
    """Run the trials, print a summary, write bench/results/profile_kill.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = run(args.trials, args.seed)
    out.update(seconds=round(time.perf_counter() - t0, 1), machine=platform.machine(), python=platform.python_version())
    print(f"{out['trials']} kills, {out['saves_completed']} saves, {out['kills_with_tmp_left']} left temp files "
          f"(cleaned on open), {len(out['failures'])} failures")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS, out)


if __name__ == "__main__":
    main()
