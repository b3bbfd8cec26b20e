"""Metrics log (``metrics.csv``: step, split, name, value) and validation-curve plots per task (paper Fig. 5)."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

METRICS = "metrics.csv"
FIELDS = ("step", "split", "name", "value")


class MetricsLog:
    """Appends rows to ``run_dir/metrics.csv``; on resume, rows after ``keep_until`` are dropped first."""

    def __init__(self, run_dir: str | Path, keep_until: int | None = None) -> None:
        self.path = Path(run_dir) / METRICS
        rows = read_metrics(self.path) if self.path.is_file() else []
        if keep_until is not None:
            rows = [r for r in rows if r["step"] <= keep_until]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, step: int, split: str, values: Mapping[str, float]) -> None:
        """One row per value."""
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            for name, value in values.items():
                writer.writerow([step, split, name, f"{float(value):.6g}"])


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a metrics.csv with typed step and value."""
    with Path(path).open(newline="") as f:
        return [{"step": int(r["step"]), "split": r["split"], "name": r["name"], "value": float(r["value"])}
                for r in csv.DictReader(f)]


def plot_curves(run_dir: str | Path, tasks: list[str], out: str | Path | None = None) -> Path:
    """``validation.png``: per task, the validation loss (and class accuracy) against the step, with the
    training loss (moving average) for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for r in read_metrics(run_dir / METRICS):
        series[(r["split"], r["name"])].append((r["step"], r["value"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        train = series.get(("train", f"{task}/loss"), [])
        if train:
            window = max(1, len(train) // 50)
            xs = [s for s, _ in train][window - 1:]
            vals = [v for _, v in train]
            ys = [sum(vals[i - window + 1:i + 1]) / window for i in range(window - 1, len(vals))]
            ax.plot(xs, ys, color="0.7", lw=1, label="train loss (avg)")
        val = series.get(("val", f"{task}/loss"), [])
        if val:
            ax.plot(*zip(*val), "o-", ms=3, color="C0", label="val loss")
        acc = series.get(("val", f"{task}/acc"), [])
        if acc:
            twin = ax.twinx()
            twin.plot(*zip(*acc), "s--", ms=3, color="C1", label="val acc")
            twin.set_ylabel("accuracy")
            twin.legend(loc="upper right", fontsize=7)
        ax.set_title(task)
        ax.set_xlabel("meta-iteration")
        ax.set_ylabel("loss")
        ax.legend(loc="upper left" if acc else "best", fontsize=7)
    fig.tight_layout()
    out = Path(out) if out is not None else run_dir / "validation.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
