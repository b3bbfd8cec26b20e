"""Real scene categories named before any adaptation: what ``~/scene`` says on real images, beside trivial baselines.

The shipped model's named rows include the MiniPlaces categories (training/configs/places_finetune.yaml trains on
each category's images 1-80). This bench classifies the images it never trained on (81-100 of every category, the
data spec's ``val`` split) as the node does (attention prior, softmax over the named rows, centre crop to the
camera's 96×128 aspect) and reports top-1 / top-5 accuracy, the negative log-likelihood and the expected
calibration error (ECE, 15 bins). Calibration: one temperature fitted on the even-numbered held-out images,
every figure reported on the odd-numbered ones (so the fit never sees what it is judged on); ``--calibrate DIR``
writes a copy of the model with the fitted temperature folded into the class head's scale.
Baselines on the same images: chance, and nearest class mean on raw pixels (class means of the training images,
24×32 average-pooled).

    python bench/places.py [--model DIR] [--spec training/configs/data_places.yaml] [--calibrate OUT_DIR]

Writes bench/results/places.json and docs/quality/places.png (reliability diagram and examples).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mtml_core.checkpoint import load_checkpoint, load_config, save_checkpoint  # noqa: E402
from mtml_core.data.named_images import NamedImages  # noqa: E402
from mtml_core.data.sources import load_sources  # noqa: E402
from mtml_core.evaluation import mean_ci  # noqa: E402
from mtml_core.model import MultiTaskModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "mtml_core" / "assets" / "default"
DEFAULT_SPEC = ROOT / "training" / "configs" / "data_places.yaml"
RESULTS = ROOT / "bench" / "results"
PANELS = ROOT / "docs" / "quality"
BINS = 15


def served_logits(model: MultiTaskModel, images: NamedImages, batch: int = 200) -> torch.Tensor:
    """Class logits over the named rows of every (centre-cropped) image, as the node serves them."""
    named, cfg = len(model.cfg.class_names), model.cfg
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x, _ = images.batch(np.arange(start, min(start + batch, len(images))), None, cfg.mean, cfg.std)
            out.append(model(x, {"class": model.prior_multiplier("class")}, tasks=["class"])["class"][:, :named])
    return torch.cat(out)


def ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> tuple[float, list[dict]]:
    """Expected calibration error (%) over equal-width confidence bins, and the bins (for the diagram)."""
    conf, pred = probs.max(1)
    hit = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=probs.dtype)
    total, table = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            gap = abs(float(hit[inside].mean()) - float(conf[inside].mean()))
            total += gap * float(inside.double().mean())
            table.append({"lo": float(lo), "hi": float(hi), "n": int(inside.sum()), "acc": float(hit[inside].mean()),
                          "conf": float(conf[inside].mean())})
    return 100 * total, table


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) (golden-section search on log T)."""
    def nll(log_t: float) -> float:
        return float(F.cross_entropy(logits / math.exp(log_t), labels))
    lo, hi = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        lo, hi = (lo, b) if nll(a) < nll(b) else (a, hi)
    return math.exp((lo + hi) / 2)


def scores(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> dict:
    """Top-1 / top-5 accuracy (mean ± 95% CI over images, %), NLL and ECE of softmax(logits / T)."""
    probs = torch.softmax(logits.double() / temperature, 1)
    top5 = probs.topk(5, 1).indices
    hits1 = (top5[:, 0] == labels).double() * 100
    hits5 = (top5 == labels[:, None]).any(1).double() * 100
    err, _ = ece(probs, labels)
    return {"top1_pct": list(mean_ci(hits1)), "top5_pct": list(mean_ci(hits5)),
            "nll": float(F.nll_loss(probs.log(), labels)), "ece_pct": err}


def nearest_mean(train: NamedImages, test: NamedImages, n_classes: int, mean: tuple, std: tuple) -> torch.Tensor:
    """Negative distances to per-class means of 24×32-pooled raw pixels (logits of the pixel baseline)."""
    def pooled(images: NamedImages) -> torch.Tensor:
        parts = [F.adaptive_avg_pool2d(images.batch(np.arange(s, min(s + 500, len(images))), None, mean, std)[0],
                                       (24, 32)).flatten(1) for s in range(0, len(images), 500)]
        return torch.cat(parts)
    feats, labels = pooled(train), torch.from_numpy(train.labels)
    centres = torch.zeros(n_classes, feats.shape[1]).index_add_(0, labels, feats)
    counts = torch.bincount(labels, minlength=n_classes).clamp(min=1)[:, None]
    centres = centres / counts
    dist = torch.cdist(pooled(test), centres)
    dist[:, torch.bincount(labels, minlength=n_classes) == 0] = math.inf  # rows without images never win
    return -dist


def figure(report_probs: torch.Tensor, labels: torch.Tensor, images: NamedImages, idx: np.ndarray,
           names: list[str], out: Path) -> None:
    """Reliability diagram (before / after calibration) and eight held-out images with their top-3 names."""
    fig = plt.figure(figsize=(14, 6))
    ax = fig.add_subplot(1, 3, 1)
    for key, probs in report_probs.items():
        _, table = ece(probs, labels)
        ax.plot([b["conf"] for b in table], [b["acc"] for b in table], "o-", label=key)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="confidence", ylabel="accuracy", title="reliability (held-out images)")
    ax.legend()
    probs = report_probs["calibrated"]
    picks = np.linspace(0, len(idx) - 1, 8).astype(int)
    for k, p in enumerate(picks):
        a = fig.add_subplot(2, 6, [3, 4, 5, 6, 9, 10, 11, 12][k])
        a.imshow(images.crops(np.array([idx[p]]))[0])
        top = probs[p].topk(3)
        lines = [f"{names[int(i)]} {float(v):.2f}" for v, i in zip(top.values, top.indices, strict=True)]
        a.set_title(f"true: {names[int(labels[p])]}\n" + "\n".join(lines), fontsize=7)
        a.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    """Classify the held-out images, calibrate on half, report on the other half, write JSON and PNG."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="run or asset folder (default: shipped)")
    ap.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="data spec with the class source(s)")
    ap.add_argument("--calibrate", type=Path, metavar="OUT_DIR",
                    help="write a copy of the model with the fitted temperature in the class head's scale")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.monotonic()
    model, _ = load_checkpoint(args.model)
    model.eval()
    names = list(model.cfg.class_names)
    sources = load_sources(args.spec)
    held = NamedImages.from_sources(sources, "val", model.cfg.input_hw, names)
    if held.names != names:
        raise SystemExit(f"places: the model's named classes do not cover the spec's categories "
                         f"({len(held.names) - len(names)} missing, e.g. {held.names[len(names):][:3]}); "
                         f"train with data.spec first")
    train = NamedImages.from_sources(sources, "train", model.cfg.input_hw, names)
    labels = torch.from_numpy(held.labels)
    logits = served_logits(model, held).double()
    fit, report = np.arange(0, len(held), 2), np.arange(1, len(held), 2)
    temperature = fit_temperature(logits[fit], labels[fit])
    pixel = nearest_mean(train, held, len(names), model.cfg.mean, model.cfg.std)
    real = sorted(set(held.labels.tolist()))
    result = {
        "model": str(args.model), "spec": str(args.spec), "images": {"fit": len(fit), "report": len(report)},
        "categories": len(real), "named_rows": len(names), "temperature": temperature,
        "served": scores(logits[report], labels[report]),
        "served, calibrated": scores(logits[report], labels[report], temperature),
        "nearest class mean, raw pixels": scores(pixel[report], labels[report]),
        "chance_pct": {"top1": 100 / len(real), "top5": 500 / len(real)},
    }
    result["seconds"] = round(time.monotonic() - start, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "places.json").write_text(json.dumps(result, indent=1))
    probs = {"served": torch.softmax(logits[report], 1),
             "calibrated": torch.softmax(logits[report] / temperature, 1)}
    figure(probs, labels[report], held, report, names, PANELS / "places.png")
    for key in ("served", "served, calibrated", "nearest class mean, raw pixels"):
        s = result[key]
        print(f"{key:32s} top-1 {s['top1_pct'][0]:5.1f}±{s['top1_pct'][1]:.1f}%  top-5 {s['top5_pct'][0]:5.1f}"
              f"±{s['top5_pct'][1]:.1f}%  NLL {s['nll']:.3f}  ECE {s['ece_pct']:.1f}%")
    print(f"chance top-1 {result['chance_pct']['top1']:.1f}% top-5 {result['chance_pct']['top5']:.1f}%; "
          f"temperature {temperature:.3f}; wrote {RESULTS / 'places.json'} in {result['seconds']} s")
    if args.calibrate:
        with torch.no_grad():
            model.heads["class"].log_scale -= math.log(temperature)
        extra = {k: v for k, v in load_config(args.model).items() if k != "model"}
        extra["calibration"] = {"temperature": temperature, "fitted_on": f"{args.spec} val split, even images"}
        save_checkpoint(model, args.calibrate, extra)
        print(f"calibrated model written to {args.calibrate}")


if __name__ == "__main__":
    main()
