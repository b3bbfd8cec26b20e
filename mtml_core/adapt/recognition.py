"""Open-set recognition of saved environments, calibrated on rendered data.

A profile keeps the plain (unmodulated) backbone embeddings of its support frames, as unit vectors. Embeddings
are compared after *standardising* each dimension with the mean and standard deviation of the calibration renders'
unit embeddings: unit((unit(x) - μ) / σ). Without it every embedding of a ReLU backbone is similar to every other
(cosines of 0.5-0.65 between unrelated places and noise; on the shipped model standardising also separates noise
better than centring alone). The score of a few query frames against a profile is, per query frame, the best
cosine to the profile's support frames, averaged over the query frames (:func:`set_score`).

Calibration (:func:`calibrate`, once per model; the engine stores the result beside the profiles and recomputes
it when the model changes): every built-in synthetic environment gives :data:`SHOTS` support frames and
:data:`QUERY_SETS` query sets of :data:`QUERY_FRAMES` frames (other seeds); noise gives :data:`NOISE_SETS` sets
(uniform, smooth and flat). Positives are the scores of query sets against the support frames of their own
environment, negatives those against every other environment's and the noise sets'. The threshold is the one that
maximises TPR - FPR (Youden's J), placed midway between the two scores around it; the temperature makes the median
positive 0.9 confident against "none of these". Scores below the threshold mean "none of these".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtml_core.data.spec import EnvSpec, builtin_envs
from mtml_core.data.synth import render_frame

VERSION = "mtml-recognition-1"
SHOTS = 5  # support frames per calibration environment (seeds 0..SHOTS-1)
QUERY_FRAMES = 3  # frames per query set
QUERY_SETS = 2  # query sets per environment (seeds from 1000)
NOISE_SETS = 6
MEDIAN_POSITIVE_CONFIDENCE = 0.9

Embed = Callable[[np.ndarray], np.ndarray]  # uint8 (N, H, W, 3) RGB → (N, D) plain embeddings


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def set_score(query: np.ndarray, support: np.ndarray) -> float:
    """Mean over query rows of the best cosine to a support row (both already standardised unit rows)."""
    return float((query @ support.T).max(axis=1).mean())


def noise_frames(n: int, hw: tuple[int, int], seed: int) -> np.ndarray:
    """``n`` uint8 RGB frames of noise: uniform per pixel, smooth (upsampled coarse noise) or flat, in turn."""
    rng = np.random.default_rng(seed)
    h, w = hw
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out[i] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == 1:
            coarse = rng.integers(0, 256, (max(h // 8, 1), max(w // 8, 1), 3), dtype=np.uint8)
            out[i] = coarse[np.arange(h) * coarse.shape[0] // h][:, np.arange(w) * coarse.shape[1] // w]
        else:
            out[i] = rng.integers(0, 256, 3, dtype=np.uint8)
    return out


@dataclass(frozen=True)
class Calibration:
    """What recognition needs from calibration: per-dimension mean μ and deviation σ (D,), the threshold and
    temperature on standardised scores, and how well the threshold separated the calibration data (true/false
    positive rates, counts)."""

    model_sha256: str
    mean: np.ndarray
    std: np.ndarray
    threshold: float
    temperature: float
    tpr: float
    fpr: float
    positives: int
    negatives: int

    def standardised(self, embeddings: np.ndarray) -> np.ndarray:
        """unit((unit(x) - μ) / σ) of embeddings (N, D)."""
        return unit((unit(embeddings) - self.mean) / self.std)

    def to_json(self) -> dict[str, Any]:
        """A JSON object (stored beside the profiles)."""
        return {"format": VERSION, "model_sha256": self.model_sha256, "threshold": self.threshold,
                "temperature": self.temperature, "tpr": self.tpr, "fpr": self.fpr, "positives": self.positives,
                "negatives": self.negatives, "mean": [float(v) for v in self.mean],
                "std": [float(v) for v in self.std]}

    @classmethod
    def from_json(cls, doc: object, model_sha256: str, dim: int) -> Calibration:
        """Read :meth:`to_json`'s object; ValueError unless it is complete, finite and for this model."""
        if not isinstance(doc, dict) or doc.get("format") != VERSION or doc.get("model_sha256") != model_sha256:
            raise ValueError("recognition calibration: not a calibration of this model")
        vectors = {}
        for key in ("mean", "std"):
            v = doc.get(key)
            if not isinstance(v, list) or len(v) != dim or not all(
                    isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in v):
                raise ValueError(f"recognition calibration: {key!r} must be {dim} finite numbers")
            vectors[key] = np.asarray(v, np.float64)
        if (vectors["std"] <= 0).any():
            raise ValueError("recognition calibration: 'std' must be > 0")
        values = {}
        for key in ("threshold", "temperature", "tpr", "fpr", "positives", "negatives"):
            v = doc.get(key)
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"recognition calibration: {key!r} must be a finite number")
            values[key] = v
        if values["temperature"] <= 0:
            raise ValueError("recognition calibration: 'temperature' must be > 0")
        return cls(model_sha256, vectors["mean"], vectors["std"], float(values["threshold"]),
                   float(values["temperature"]), float(values["tpr"]), float(values["fpr"]),
                   int(values["positives"]), int(values["negatives"]))


def choose_threshold(positives: Sequence[float], negatives: Sequence[float]) -> tuple[float, float, float]:
    """(threshold, TPR, FPR) maximising TPR - FPR, midway between the scores around it (ties: the higher one)."""
    pos, neg = np.sort(np.asarray(positives, np.float64)), np.sort(np.asarray(negatives, np.float64))
    values = np.unique(np.concatenate([pos, neg]))
    cuts = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    tpr = 1.0 - np.searchsorted(pos, cuts, side="left") / len(pos)
    fpr = 1.0 - np.searchsorted(neg, cuts, side="left") / len(neg)
    j = tpr - fpr
    best = int(np.flatnonzero(j == j.max())[-1])
    return float(cuts[best]), float(tpr[best]), float(fpr[best])


def calibrate(embed: Embed, hw: tuple[int, int], model_sha256: str,
              envs: Sequence[EnvSpec] | None = None) -> Calibration:
    """Calibrate recognition for the model behind ``embed`` on renders (at ``hw``) of the built-in environments."""
    envs = list(envs or builtin_envs())
    supports, queries = [], []
    for spec in envs:
        support = np.stack([render_frame(spec, s, hw).rgb for s in range(SHOTS)])
        query = np.stack([render_frame(spec, 1000 + s, hw).rgb for s in range(QUERY_SETS * QUERY_FRAMES)])
        supports.append(embed(support))
        queries.append(embed(query).reshape(QUERY_SETS, QUERY_FRAMES, -1))
    noise = embed(noise_frames(NOISE_SETS * QUERY_FRAMES, hw, seed=0)).reshape(NOISE_SETS, QUERY_FRAMES, -1)
    every = unit(np.concatenate(supports))
    mean, std = every.mean(0), every.std(0)
    cal = Calibration(model_sha256, mean, np.maximum(std, 1e-3 * max(float(std.max()), 1e-12)), 0.0, 1.0, 0.0, 0.0,
                      0, 0)
    sup = [cal.standardised(s) for s in supports]
    qs = [[cal.standardised(q) for q in sets] for sets in queries]
    noise_c = [cal.standardised(q) for q in noise]
    positives, negatives = [], []
    for i, s in enumerate(sup):
        for j, sets in enumerate(qs):
            (positives if i == j else negatives).extend(set_score(q, s) for q in sets)
        negatives.extend(set_score(q, s) for q in noise_c)
    threshold, tpr, fpr = choose_threshold(positives, negatives)
    margin = float(np.median(positives)) - threshold
    temperature = margin / math.log(MEDIAN_POSITIVE_CONFIDENCE / (1 - MEDIAN_POSITIVE_CONFIDENCE)) \
        if margin > 1e-3 else 0.02
    return Calibration(model_sha256, cal.mean, cal.std, threshold, temperature, tpr, fpr, len(positives),
                       len(negatives))
