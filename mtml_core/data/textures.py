"""Procedural textures evaluated at surface coordinates (u, v) in metres: a pattern value in [0, 1]."""

from __future__ import annotations

import numpy as np


def _hash(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return np.modf(np.sin(i * np.float32(12.9898) + j * np.float32(78.233)) * np.float32(43758.547))[0] ** 2


def _value_noise(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    a, b = _hash(iu, iv), _hash(iu + 1, iv)
    c, d = _hash(iu, iv + 1), _hash(iu + 1, iv + 1)
    return (a + (b - a) * fu) + ((c + (d - c) * fu) - (a + (b - a) * fu)) * fv


def pattern(kind: str, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Pattern value in [0, 1] of texture `kind` at coordinates u, v (float32 arrays, metres)."""
    inv = np.float32(1.0 / scale)
    u, v = u * inv, v * inv
    if kind == "plain":
        return np.zeros_like(u)
    if kind == "checker":
        return ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    if kind == "stripes":
        return (np.floor(u) % 2).astype(np.float32)
    if kind == "tiles":  # grout lines
        return ((np.modf(np.abs(u))[0] < 0.06) | (np.modf(np.abs(v))[0] < 0.06)).astype(np.float32)
    if kind == "bricks":  # bricks 1 x 0.5 scale, every other row offset by half a brick, mortar = 1
        row = np.floor(v * 2)
        x = np.modf(np.abs(u + 0.5 * (row % 2)))[0]
        y = np.modf(np.abs(v * 2))[0]
        return ((x < 0.05) | (y < 0.1)).astype(np.float32)
    if kind == "planks":  # boards of width `scale` along u, grain noise, dark seams
        row = np.floor(v)
        grain = _value_noise(u * 0.7 + row * 7.3, v * 6.0)
        return np.clip(0.7 * grain + (np.modf(np.abs(v))[0] < 0.06), 0, 1).astype(np.float32)
    if kind == "noise":
        return np.clip(0.65 * _value_noise(u, v) + 0.35 * _value_noise(u * 4.1, v * 4.1), 0, 1).astype(np.float32)
    raise ValueError(f"unknown texture {kind!r}")
