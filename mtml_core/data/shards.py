"""Cached synthetic datasets on disk: sharded `.npz` files (no pickle) plus a JSON manifest.

Layout of DIR: `manifest.json` and `shard-00000.npz`, ... Each shard holds one environment's
frames as stacked arrays (rgb, depth, normals, vp_dirs, vp_pixels, vp_at_infinity, K, pose,
category, seed). The manifest records the format version, frame size, split, the full spec of
every environment, and each shard's file, environment and frame count.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtml_core.data.categories import CATEGORIES
from mtml_core.data.loaders.common import FrameList, require
from mtml_core.data.sample import Frame
from mtml_core.data.spec import EnvSpec
from mtml_core.data.synth import render_frame

FORMAT = "mtml-synth-shards"
VERSION = 1
FIELDS = ("rgb", "depth", "normals", "vp_dirs", "vp_pixels", "vp_at_infinity", "K", "pose")


def build_shards(envs: Sequence[EnvSpec], frames_per_env: int, out: str | Path, size: Sequence[int] = (96, 128),
                 shard_size: int = 256, first_seed: int = 0, split: str | None = None) -> dict:
    """Render `frames_per_env` frames of every environment into DIR; returns the manifest."""
    if frames_per_env < 1 or shard_size < 1:
        raise ValueError(f"frames_per_env and shard_size must be >= 1, got {frames_per_env}, {shard_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for spec in envs:
        for start in range(first_seed, first_seed + frames_per_env, shard_size):
            seeds = range(start, min(start + shard_size, first_seed + frames_per_env))
            frames = [render_frame(spec, s, tuple(size)) for s in seeds]
            name = f"shard-{len(shards):05d}.npz"
            arrays = {f: np.stack([getattr(fr, f) for fr in frames]) for f in FIELDS}
            np.savez(out / name, category=np.array([fr.category for fr in frames], np.int64),
                     seed=np.array(list(seeds), np.int64), **arrays)
            shards.append({"file": name, "env": spec.name, "count": len(frames)})
    manifest = {"format": FORMAT, "version": VERSION, "size": list(size), "split": split,
                "categories": list(CATEGORIES), "envs": {s.name: s.to_dict() for s in envs}, "shards": shards}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def load_shards(root: str | Path) -> FrameList:
    """Frames of a built dataset (lazy; each shard is read when first needed and kept)."""
    root = require(root, "shard folder")
    path = require(root / "manifest.json", "shard manifest")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"corrupt manifest {path}: {err}") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"{path} is not a {FORMAT} v{VERSION} manifest")
    items = [(sh["file"], sh["env"], i) for sh in manifest["shards"] for i in range(sh["count"])]
    loaded: dict[str, dict] = {}

    def load(item: tuple) -> Frame:
        file, env, i = item
        if file not in loaded:
            try:
                with np.load(require(root / file, "shard"), allow_pickle=False) as z:
                    loaded[file] = {k: z[k] for k in z.files}
            except (ValueError, OSError) as err:
                raise ValueError(f"corrupt shard {root / file}: {err}") from None
        arr = loaded[file]
        cat = int(arr["category"][i])
        return Frame(**{f: arr[f][i] for f in FIELDS}, category=cat, category_name=manifest["categories"][cat],
                     env=env)

    return FrameList(items, load)
