"""Table 1 analogue on the built-in world: single vs multi meta-task × baseline (ANIL) vs AM (and P-AM) × 32/64
filters, evaluated on the test environments / categories (5-shot, adapted).

Presets: ``small`` fits in about 30 min on 2 CPU cores (48×64 input, short training: a smoke-level reproduction,
its numbers are noisy); ``paper`` is the GPU-sized setting (96×128, 20k meta-iterations, meta-batch 4).

    python -m training.reproduce_table1 --preset small --out runs/table1
    python -m training.reproduce_table1 --preset paper --out runs/table1_paper   # GPU
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtml_core.config import TASKS
from training.grid import Entry, cell, parse_cli, run_preset

PRESETS = {
    "small": {"train": ["model.input_hw=[48,64]", "train.steps=300", "data.pool=16", "data.class_query=3",
                        "data.domain_query=3", "train.val_every=100", "train.save_every=100", "train.val_episodes=2"],
              "eval": {"episodes_n": 20, "k_shot": 5, "query": 3}},
    "paper": {"train": ["model.input_hw=[96,128]", "train.steps=20000", "data.pool=64", "data.meta_batch=4",
                        "data.class_query=5", "data.domain_query=10", "train.val_every=500", "train.save_every=500",
                        "train.val_episodes=16"],
              "eval": {"episodes_n": 600, "k_shot": 5, "query": 10}},
}
METHOD_NAMES = {"anil": "Baseline (ANIL)", "am": "AM", "pam": "P-AM"}


def entries(methods: Sequence[str], filters: Sequence[int]) -> list[Entry]:
    """Multi meta-task runs (all four tasks) and single meta-task runs (one per task) for each method × filters."""
    out = []
    for f in filters:
        for m in methods:
            common = [f"meta.method={m}", f"model.filters={f}"]
            out.append(Entry(f"multi_{m}_{f}", [*common, f"model.tasks=[{','.join(TASKS)}]"]))
            out += [Entry(f"single_{t}_{m}_{f}", [*common, f"model.tasks=[{t}]"]) for t in TASKS]
    return out


def table(results: dict, methods: Sequence[str], filters: Sequence[int]) -> str:
    """The Markdown table: classification acc (CE, NIL), and % within 1e-3 / MSE for depth, VP, normals."""
    head = ("| Tasks | Method | Filters | Class acc % | Class NIL % | Depth within 1e-3 % | Depth MSE | "
            "VP within 1e-3 % | VP MSE | Normals within 1e-3 % | Normals MSE |")
    lines = [head, "|---" * 11 + "|"]
    for regime in ("single", "multi"):
        for m in methods:
            for f in filters:
                row = [regime + " meta-task", METHOD_NAMES[m], str(f)]
                for task, metrics in (("class", ("acc_pct", "nil_acc_pct")), ("depth", ("within_1e-3_pct", "mse")),
                                      ("vp", ("within_1e-3_pct", "mse")), ("normals", ("within_1e-3_pct", "mse"))):
                    name = f"multi_{m}_{f}" if regime == "multi" else f"single_{task}_{m}_{f}"
                    row += [cell(results.get(name, {}), task, metric) for metric in metrics]
                lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run (or continue) the grid, then print and write table1.md."""
    args, methods, filters = parse_cli(argv, "python -m training.reproduce_table1", __doc__.splitlines()[0], PRESETS,
                                       METHOD_NAMES, "runs/table1", "filters", "32,64")
    results = run_preset(entries(methods, filters), args, PRESETS)
    md = table(results, methods, filters)
    (Path(args.out) / "table1.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
