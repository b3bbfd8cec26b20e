"""Table 2 analogue on Omniglot or MiniPlaces: 5-way 1-/5-shot, MAML, ANIL, AM, P-AM, CE head and NIL accuracy.

MiniPlaces is the right-hand (mini-Places) half of the paper's table, on real scene categories.

``--dataset omniglot`` (default): split by alphabet over the union of ``images_background_small1.zip`` and
``images_background_small2.zip`` (``../shared/data/omniglot``; they share Greek and Latin): tests on the alphabets
only small2 holds, trains on small1's alphabets with one held out for validation (``training.data.class_source``).
``--dataset miniplaces``: ``../shared/data/scenes/miniplaces`` split by category with
``training/configs/data_places_fewshot.yaml`` (64 train / 16 val / 20 test categories, seeded; ``data.source=spec``).
Presets: ``small`` (CPU: Omniglot Conv-4-32 at 28×28, about 10 min; MiniPlaces Conv-4-32 at 42×42, about 30 min
on 2 cores) and ``paper`` (GPU-sized: 60k meta-iterations, 600 test episodes). Beside the methods, the trivial
baseline on the same test episodes: nearest class mean on raw pixels.

    python -m training.reproduce_table2 --preset small --out runs/table2
    python -m training.reproduce_table2 --dataset miniplaces --preset small --out runs/table2_miniplaces
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import yaml

from training import runconfig
from training.evaluate import pixel_baseline
from training.grid import Entry, cell, parse_cli, run_preset

# eval.batchnorm=batch: the few-shot benchmarks' protocol (each support / query set's own BatchNorm statistics),
# the same for every method; MAML needs it, since it adapts BatchNorm's affine parameters too.
PROTOCOL = ["model.tasks=[class]", "model.n_way=5", "meta.mode=literal", "train.val_episodes=8",
            "eval.batchnorm=batch"]
COMMON = ["data.source=omniglot", "model.input_hw=[28,28]", *PROTOCOL]
PRESETS = {
    "small": {"train": ["model.filters=32", "train.steps=150", "data.meta_batch=4", "data.class_query=5",
                        "train.val_every=50", "train.save_every=50", "meta.first_order=false"],
              "eval": {"episodes_n": 100, "query": 5}},
    "paper": {"train": ["model.filters=64", "train.steps=60000", "data.meta_batch=32", "data.class_query=15",
                        "train.val_every=1000", "train.save_every=1000", "meta.first_order=false"],
              "eval": {"episodes_n": 600, "query": 15}},
}
PLACES_SPEC = Path(runconfig.paper_config_path()).parent / "data_places_fewshot.yaml"
# MiniPlaces: 128×128 scene photographs, downscaled. small: 42×42 (Conv-4's four poolings leave 2×2×32 features),
# first-order meta-gradients and 250 meta-iterations of 4 episodes (about 1-2 CPU-seconds each), to fit about 30 min
# of an idle 2-core CPU for all 8 runs with evaluation; a fixed step count, not a wall-clock cap, so the runs do
# not depend on the machine's load. paper: the MAML paper's mini-ImageNet setting (84×84, Conv-4-32, 60k).
PLACES_COMMON = ["data.source=spec", f"data.spec={PLACES_SPEC}", *PROTOCOL]
PLACES_PRESETS = {
    "small": {"train": ["model.input_hw=[42,42]", "model.filters=32", "train.steps=250", "data.meta_batch=4",
                        "data.class_query=5", "train.val_every=50", "train.save_every=50", "meta.first_order=true"],
              "eval": {"episodes_n": 200, "query": 15}},
    "paper": {"train": ["model.input_hw=[84,84]", "model.filters=32", "train.steps=60000", "data.meta_batch=4",
                        "data.class_query=15", "train.val_every=1000", "train.save_every=1000",
                        "meta.first_order=false"],
              "eval": {"episodes_n": 600, "query": 15}},
}
DATASETS = {"omniglot": (COMMON, PRESETS, "runs/table2"),
            "miniplaces": (PLACES_COMMON, PLACES_PRESETS, "runs/table2_miniplaces")}
METHODS = {"maml": "MAML", "anil": "ANIL", "am": "AM", "pam": "P-AM"}
BASELINE = "pixels"  # results key prefix of the nearest-class-mean baseline


def entries(methods: Sequence[str], shots: Sequence[int]) -> list[Entry]:
    """One run per method × shot (trained with the shot it is tested on)."""
    return [Entry(f"{m}_{k}shot", [f"meta.method={m}", f"data.k_shot={k}", f"eval.k_shot={k}"])
            for k in shots for m in methods]


def table(results: dict, methods: Sequence[str], shots: Sequence[int]) -> str:
    """Markdown: per method, CE and NIL accuracy (%) for each shot, mean ± 95% CI; the pixel baseline last."""
    head = "| Method | " + " | ".join(f"{k}-shot CE | {k}-shot NIL" for k in shots) + " |"
    lines = [head, "|---" * (1 + 2 * len(shots)) + "|"]
    for m in methods:
        row = [METHODS[m]]
        for k in shots:
            r = results.get(f"{m}_{k}shot", {})
            row += [cell(r, "class", "acc_pct"), cell(r, "class", "nil_acc_pct")]
        lines.append("| " + " | ".join(row) + " |")
    if any(f"{BASELINE}_{k}shot" in results for k in shots):
        row = ["Nearest class mean, raw pixels"]
        for k in shots:
            row += [cell(results.get(f"{BASELINE}_{k}shot", {}), "class", "acc_pct"), "–"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def trained_steps(run_dir: Path) -> int | None:
    """The meta-iterations a run folder holds (a run may stop early at a train.max_minutes override)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    return int((yaml.safe_load(path.read_text()).get("state") or {}).get("step", 0))


def main(argv: Sequence[str] | None = None) -> None:
    """Run (or continue) the grid, add the pixel baseline on the same test episodes, print and write table2.md."""
    args, methods, shots = parse_cli(argv, "python -m training.reproduce_table2", __doc__.splitlines()[0], PRESETS,
                                     METHODS, None, "shots", "1,5", datasets=tuple(DATASETS))
    common, presets, default_out = DATASETS[args.dataset]
    args.out = args.out or default_out
    out = Path(args.out)
    results = run_preset(entries(methods, shots), args, presets, common)
    preset = presets[args.preset]
    for k in shots:
        cfg = runconfig.load(runconfig.paper_config_path(), [*common, *preset["train"], *args.overrides,
                                                             f"eval.k_shot={k}"])
        results[f"{BASELINE}_{k}shot"] = pixel_baseline(cfg, "test", args.episodes or preset["eval"]["episodes_n"],
                                                        k, preset["eval"]["query"])
    for name in results:
        steps = trained_steps(out / name)
        if steps is not None:
            results[name]["trained_steps"] = steps
    (out / "results.json").write_text(json.dumps(results, indent=1))
    md = table(results, methods, shots)
    steps = ", ".join(f"{n} {r['trained_steps']}" for n, r in results.items() if "trained_steps" in r)
    if steps:
        md += f"\n\nMeta-iterations trained: {steps}."
    (out / "table2.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
