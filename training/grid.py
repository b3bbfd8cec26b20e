"""A grid of training runs, each evaluated on the test split: the engine of the reproduce_table*.py scripts.

Every entry trains into ``<out>/<name>`` (a finished run is kept, an interrupted one resumed), then is evaluated
with :func:`training.evaluate.evaluate_runs`; results go to ``<out>/results.json`` after every entry.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training import runconfig
from training.evaluate import evaluate_runs
from training.train import config_from_run, train


@dataclass
class Entry:
    """One run of a grid: a name (its folder) and its ``--set`` overrides."""

    name: str
    overrides: list[str] = field(default_factory=list)


def finished(run_dir: Path, steps: int) -> bool:
    """True when ``run_dir`` holds a run trained for ``steps`` steps."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return False
    return int((yaml.safe_load(path.read_text()).get("state") or {}).get("step", -1)) >= steps


def run_grid(entries: Sequence[Entry], out: str | Path, base: Sequence[str] = (), config: str | Path | None = None,
             eval_overrides: Sequence[str] = (), eval_kwargs: dict[str, Any] | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Train and evaluate every entry; returns ``{name: evaluation of that run}``. The ``eval.*`` overrides of
    ``base`` and of the entry apply at evaluation time too (also to runs trained before they were added)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for entry in entries:
        run_dir = out / entry.name
        cfg = runconfig.load(config or runconfig.paper_config_path(), [*base, *entry.overrides])
        if not finished(run_dir, cfg["train"]["steps"]):
            resume = (run_dir / "config.yaml").is_file()
            if resume:
                cfg = config_from_run(run_dir, [f"train.steps={cfg['train']['steps']}"])
            print(f"== training {entry.name}: {' '.join(entry.overrides)}", flush=True)
            train(cfg, run_dir, resume=resume, progress=progress)
        if entry.name not in results:
            print(f"== evaluating {entry.name}", flush=True)
            evals = [o for o in [*base, *entry.overrides] if o.startswith("eval.")] + list(eval_overrides)
            res = evaluate_runs([run_dir], "test", overrides=evals, progress=progress, **(eval_kwargs or {}))
            results[entry.name] = res["runs"][str(run_dir)]
            results_path.write_text(json.dumps(results, indent=1))
    return results


def cell(result: dict[str, Any], task: str, metric: str, variant: str = "adapted", digits: int = 3) -> str:
    """``mean ± CI`` of one metric of one evaluated run, or '–'."""
    entry = result.get("tasks", {}).get(task, {}).get(variant, {}).get(metric)
    if entry is None:
        return "–"
    return f"{entry[0]:.{digits}g} ± {entry[1]:.2g}"


def parse_cli(argv: Sequence[str] | None, prog: str, description: str, presets: Mapping[str, Any],
              methods: Mapping[str, str], out: str | None, axis: str, axis_default: str,
              datasets: Sequence[str] = ()) -> tuple[argparse.Namespace, list[str], list[int]]:
    """Parse a reproduce_table* command line; returns (args, chosen methods, the integers of ``--<axis>``).
    ``datasets``: the choices of ``--dataset`` (the first is the default); none: no such option."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--preset", choices=tuple(presets), default="small")
    if datasets:
        p.add_argument("--dataset", choices=tuple(datasets), default=datasets[0])
    p.add_argument("--out", default=out, help=f"run folder (default {out})" if out else "run folder")
    p.add_argument("--methods", default=",".join(methods), help=f"comma-separated subset of {','.join(methods)}")
    p.add_argument(f"--{axis}", default=axis_default, help="comma-separated")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra training overrides")
    p.add_argument("--episodes", type=int, help="test episodes per task (default: the preset's)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    chosen = [m for m in args.methods.split(",") if m]
    bad = sorted(set(chosen) - set(methods))
    if bad:
        p.error(f"--methods: unknown {bad}")
    return args, chosen, [int(v) for v in getattr(args, axis).split(",") if v]


def run_preset(entries: Sequence[Entry], args: argparse.Namespace, presets: Mapping[str, Any],
               common: Sequence[str] = ()) -> dict[str, Any]:
    """:func:`run_grid` with the chosen preset's training overrides and evaluation settings (``--episodes`` wins)."""
    preset = presets[args.preset]
    eval_kwargs = {**preset["eval"], **({"episodes_n": args.episodes} if args.episodes else {})}
    return run_grid(entries, args.out, [*common, *preset["train"], *args.overrides],
                    eval_kwargs=eval_kwargs, progress=not args.no_progress)
