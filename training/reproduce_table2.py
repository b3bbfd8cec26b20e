"""Table 2 analogue on Omniglot: 5-way 1-shot and 5-shot, MAML vs ANIL vs AM vs P-AM, CE head and NIL accuracy.

Splits by alphabet over the union of ``images_background_small1.zip`` and ``images_background_small2.zip``
(``../shared/data/omniglot``; they share Greek and Latin): tests on the alphabets only small2 holds, trains on
small1's alphabets with one held out for validation (``training.data.class_source``). Presets: ``small``
(about 30 min on 2 CPU cores: Conv-4-32, 28×28, short training) and ``paper`` (GPU-sized: Conv-4-64, 60k
meta-iterations, meta-batch 32, 600 test episodes).

    python -m training.reproduce_table2 --preset small --out runs/table2
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.grid import Entry, cell, parse_cli, run_preset

# eval.batchnorm=batch: the few-shot benchmarks' protocol (each support / query set's own BatchNorm statistics),
# the same for every method; MAML needs it, since it adapts BatchNorm's affine parameters too.
COMMON = ["data.source=omniglot", "model.tasks=[class]", "model.input_hw=[28,28]", "model.n_way=5",
          "meta.mode=literal", "train.val_episodes=8", "eval.batchnorm=batch"]
PRESETS = {
    "small": {"train": ["model.filters=32", "train.steps=150", "data.meta_batch=4", "data.class_query=5",
                        "train.val_every=50", "train.save_every=50", "meta.first_order=false"],
              "eval": {"episodes_n": 100, "query": 5}},
    "paper": {"train": ["model.filters=64", "train.steps=60000", "data.meta_batch=32", "data.class_query=15",
                        "train.val_every=1000", "train.save_every=1000", "meta.first_order=false"],
              "eval": {"episodes_n": 600, "query": 15}},
}
METHODS = {"maml": "MAML", "anil": "ANIL", "am": "AM", "pam": "P-AM"}


def entries(methods: Sequence[str], shots: Sequence[int]) -> list[Entry]:
    """One run per method × shot (trained with the shot it is tested on)."""
    return [Entry(f"{m}_{k}shot", [f"meta.method={m}", f"data.k_shot={k}", f"eval.k_shot={k}"])
            for k in shots for m in methods]


def table(results: dict, methods: Sequence[str], shots: Sequence[int]) -> str:
    """Markdown: per method, CE and NIL accuracy (%) for each shot, mean ± 95% CI."""
    head = "| Method | " + " | ".join(f"{k}-shot CE | {k}-shot NIL" for k in shots) + " |"
    lines = [head, "|---" * (1 + 2 * len(shots)) + "|"]
    for m in methods:
        row = [METHODS[m]]
        for k in shots:
            r = results.get(f"{m}_{k}shot", {})
            row += [cell(r, "class", "acc_pct"), cell(r, "class", "nil_acc_pct")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run (or continue) the grid, then print and write table2.md."""
    args, methods, shots = parse_cli(argv, "python -m training.reproduce_table2", __doc__.splitlines()[0], PRESETS,
                                     METHODS, "runs/table2", "shots", "1,5")
    results = run_preset(entries(methods, shots), args, PRESETS, COMMON)
    md = table(results, methods, shots)
    (Path(args.out) / "table2.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
