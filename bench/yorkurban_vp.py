"""Real vanishing points: adapt the VP task on a few York Urban images with the vertical direction alone.

    .venv/bin/python bench/yorkurban_vp.py [--shots 5] [--steps 10] [--model DIR] [--data DIR]

York Urban labels only the vertical vanishing direction (its zenith / horizon line); the horizontals are unknown
(NaN rows of the label). The bench adds ``--shots`` images (spread evenly over the 102, by default) with their
vertical-only labels to an :class:`mtml_core.adapt.AdaptationEngine` (the node's engine, ONNX Runtime backend),
adapts the ``vp`` task only, and measures the vertical direction's angular error (sign-free, degrees) on every
other image -- served model before adapting, after, and the trivial baselines on the same images: an upright
camera (vertical = the camera's image-up axis, (0, -1, 0)) and the mean vertical of the support labels. Each
prediction is measured twice: the VP head alone, and refined on the image's line segments as the node publishes it
when it knows the camera's intrinsics (``engine.infer_batch(rgb, K)``, :mod:`mtml_core.vp_lines`); the upright
camera too (the lines without the head). Writes
bench/results/yorkurban_vp.json and yorkurban_vp.png (a few evaluated images with the horizon line that each
vertical implies: label green, before red, after with the line refinement yellow).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from mtml_core.backends.manifest import write_json_atomic  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "vp" / "yorkurban"
DEFAULT_MODEL = ROOT / "mtml_core" / "assets" / "default"
RESULTS = ROOT / "bench" / "results"
ENV = "yorkurban"
TARGET_MEDIAN_DEG = 3.0
UPRIGHT = np.array([0.0, -1.0, 0.0])
UPRIGHT_FRAME = np.array([UPRIGHT, [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def vertical_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Sign-free angle in degrees between predicted (N, 3) and true (N, 3) vertical directions."""
    p = pred / np.linalg.norm(pred, axis=-1, keepdims=True)
    t = truth / np.linalg.norm(truth, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.abs((p * t).sum(-1)), 0.0, 1.0)))


def summary(err: np.ndarray) -> dict[str, float]:
    """Median, mean and % within 1/2/3/5/10 degrees of per-image errors."""
    return {"median_deg": float(np.median(err)), "mean_deg": float(np.mean(err)),
            **{f"within_{t}deg_pct": float(100 * np.mean(err <= t)) for t in (1, 2, 3, 5, 10)}}


def pick_support(n: int, shots: int, offset: int = 0) -> list[int]:
    """``shots`` image indices spread evenly over ``n`` (shifted by ``offset``)."""
    if not 1 <= shots < n:
        raise ValueError(f"--shots must be in [1, {n - 1}], got {shots}")
    return sorted({(int(round(x)) + offset) % n for x in np.linspace(0, n, shots, endpoint=False)})


def export_dir(model: Path, work: Path) -> Path:
    """The model's export (a checkpoint is exported once into ``work``)."""
    from mtml_core.export_cache import resolve_export

    return resolve_export(model, work / "exports")


def horizon_picture(rgbs: list[np.ndarray], K: np.ndarray, verticals: list[dict[str, np.ndarray]],
                    path: Path) -> None:
    """Images with the horizon line of each vertical (l = K^-T v): label green, before red, after (with the line
    refinement) yellow."""
    import cv2

    colours = {"label": (0, 255, 0), "before": (255, 0, 0), "after": (255, 255, 0)}
    cells = []
    for rgb, vs in zip(rgbs, verticals):
        img = np.ascontiguousarray(rgb).copy()
        h, w = img.shape[:2]
        for key, v in vs.items():
            line = np.linalg.inv(K).T @ v  # a x + b y + c = 0
            a, b, c = line
            if abs(b) < 1e-9:
                continue
            pts = [(x, -(a * x + c) / b) for x in (0.0, w - 1.0)]
            cv2.line(img, *[(int(round(x)), int(round(np.clip(y, -1e4, 1e4)))) for x, y in pts], colours[key], 2,
                     cv2.LINE_AA)
        cells.append(cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA))
    while len(cells) % 2:
        cells.append(np.zeros_like(cells[0]))
    rows = [np.concatenate(cells[i:i + 2], 1) for i in range(0, len(cells), 2)]
    cv2.imwrite(str(path), np.concatenate(rows, 0)[..., ::-1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Adapt on the support images, measure on the others; returns the JSON summary."""
    from mtml_core.adapt import AdaptationEngine, EngineConfig
    from mtml_core.data.loaders.yorkurban import yorkurban_frames
    from mtml_core.vp_lines import refine_vps

    frames = yorkurban_frames(args.data)
    labelled = [i for i in range(len(frames)) if frames[i].vp_dirs is not None]
    support = [labelled[i] for i in pick_support(len(labelled), args.shots, args.offset)]
    evaluation = [i for i in labelled if i not in support]
    work = Path(args.work or tempfile.mkdtemp(prefix="mtml_yorkurban_"))
    export = export_dir(Path(args.model), work)
    engine = AdaptationEngine.from_export(export, "onnxruntime", config=EngineConfig(steps=args.steps))
    for i in support:
        fr = frames[i]
        assert np.isnan(fr.vp_dirs[1:]).all()  # the horizontals are unknown: the label is the vertical alone
        engine.add_frame(ENV, fr.rgb, vp_dirs=fr.vp_dirs)
    rgbs = [frames[i].rgb for i in evaluation]
    Ks = [frames[i].K for i in evaluation]
    truth = np.stack([frames[i].vp_dirs[0] for i in evaluation]).astype(np.float64)

    def verticals(lines: bool) -> np.ndarray:
        return np.stack([engine.infer(rgb, K if lines else None).vp_dirs[0] for rgb, K in zip(rgbs, Ks)])

    before, before_lines = verticals(False), verticals(True)
    t0 = time.perf_counter()
    result = engine.adapt(ENV, args.steps, tasks=["vp"])
    adapt_s = time.perf_counter() - t0
    after, after_lines = verticals(False), verticals(True)
    upright_lines = np.stack([refine_vps(rgb, K, UPRIGHT_FRAME)[0] for rgb, K in zip(rgbs, Ks)])
    sup_mean = np.mean([frames[i].vp_dirs[0] for i in support], axis=0)
    errs = {"before": vertical_errors(before, truth), "before + lines": vertical_errors(before_lines, truth),
            "after": vertical_errors(after, truth), "after + lines": vertical_errors(after_lines, truth),
            "baseline_upright_camera": vertical_errors(np.repeat(UPRIGHT[None], len(truth), 0), truth),
            "baseline_upright_camera + lines": vertical_errors(upright_lines, truth),
            "baseline_support_mean_vertical": vertical_errors(np.repeat(sup_mean[None], len(truth), 0), truth)}
    res = {k: summary(v) for k, v in errs.items()}
    best = min(m["median_deg"] for k, m in res.items() if k.startswith("baseline"))
    served = "after + lines"  # what the node publishes after adapting, given camera_info
    out: dict[str, Any] = {
        "what": "York Urban vertical vanishing direction: adapt the vp task on a few images with the vertical alone "
                "(horizontals unlabelled, NaN rows), measure the vertical's angular error on every other image",
        "data": str(Path(args.data).resolve()), "model": str(args.model),
        "support_images": [f"{i:03d}.jpg" for i in support], "eval_images": len(evaluation),
        "steps": args.steps,
        "adapt": {"accepted": bool(result.accepted), "reason": result.reason, "seconds": adapt_s,
                  "tasks": {t: vars(s) for t, s in result.tasks.items()}, "skipped": dict(result.skipped)},
        "metrics": res, "target": {"after_median_deg": TARGET_MEDIAN_DEG},
        "published": served, "target_met": res[served]["median_deg"] <= TARGET_MEDIAN_DEG,
        "published_vs_best_baseline_median": res[served]["median_deg"] / best,
    }
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / "yorkurban_vp.json", out)
        show = [0, len(evaluation) // 3, 2 * len(evaluation) // 3, len(evaluation) - 1]
        horizon_picture([rgbs[j] for j in show], frames[evaluation[0]].K,
                        [{"label": truth[j], "before": before[j], "after": after_lines[j]} for j in show],
                        out_dir / "yorkurban_vp.png")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="bench/yorkurban_vp.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA), help="York Urban folder (gt_data.yml, NNN.jpg)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="checkpoint or export dir")
    parser.add_argument("--shots", type=int, default=5, help="support images (vertical labels only)")
    parser.add_argument("--offset", type=int, default=0, help="shift of the evenly spread support indices")
    parser.add_argument("--steps", type=int, default=10, help="inner-loop steps")
    parser.add_argument("--work", default="", help="folder for the export (default: a temporary one)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for yorkurban_vp.json/.png ('' = none)")
    args = parser.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"yorkurban_vp: error: no York Urban folder at {args.data}", file=sys.stderr)
        return 1
    out = run(args)
    print(f"{'vertical error on ' + str(out['eval_images']) + ' images':<40}{'median':>8}{'mean':>8}{'<=3deg%':>9}")
    for k, m in out["metrics"].items():
        print(f"{k:<40}{m['median_deg']:>8.2f}{m['mean_deg']:>8.2f}{m['within_3deg_pct']:>9.1f}")
    a = out["adapt"]
    print(f"adapt: {'accepted' if a['accepted'] else 'REJECTED'} in {a['seconds']:.2f} s {a['reason']}; target "
          f"median <= {TARGET_MEDIAN_DEG} deg ({out['published']}): {'met' if out['target_met'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
