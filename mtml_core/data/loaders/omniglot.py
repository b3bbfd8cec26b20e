"""Omniglot (Lake et al.) in its published layout: `images_background.zip` / `images_evaluation.zip`
(or the `_small1` / `_small2` subsets), each `<root>/<Alphabet>/characterNN/<drawer>.png`, 105x105
binary PNGs; also the same tree unzipped. A class is `Alphabet/characterNN`; identical files that
appear in several archives (the small subsets overlap) are counted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtml_core.data.loaders.common import ImageClassSet, ZipReader, as_rgb, decode, require, split_classes


def _class_of(parts: Sequence[str]) -> str | None:
    # .../<Alphabet>/<character>/<file>.png
    return f"{parts[-3]}/{parts[-2]}" if len(parts) >= 3 and parts[-1].lower().endswith(".png") else None


def load_omniglot(paths: str | Path | Sequence[str | Path], cache: bool = True) -> ImageClassSet:
    """Omniglot classes from zip archives and/or unzipped folders."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    items: dict[str, dict[str, tuple]] = {}
    readers: dict[str, ZipReader] = {}
    for path in paths:
        path = require(path, "Omniglot archive or folder")
        if path.is_dir():
            members = [(str(p), p.relative_to(path).parts) for p in sorted(path.rglob("*.png"))]
            source = None
        else:
            readers[str(path)] = ZipReader(path)
            members = [(n, tuple(n.split("/"))) for n in readers[str(path)].names]
            source = str(path)
        for name, parts in members:
            cls = _class_of(parts)
            if cls is not None:
                items.setdefault(cls, {}).setdefault(parts[-1], (source, name))
    if not items:
        raise ValueError(f"no Omniglot images (<Alphabet>/<character>/<n>.png) found in {paths}")

    def read(item: tuple) -> object:
        source, name = item
        if source is None:
            data, origin = require(name, "image").read_bytes(), name
        else:
            data, origin = readers[source].read(name), f"{source}:{name}"
        return as_rgb(decode(data, origin), origin)

    return ImageClassSet({c: [v[k] for k in sorted(v)] for c, v in items.items()}, read, "all", cache)


def omniglot_splits(dataset: ImageClassSet, fractions: Sequence[float] = (0.7, 0.1, 0.2),
                    seed: int = 0) -> dict[str, ImageClassSet]:
    """Disjoint train/val/test ClassSources, split by alphabet (no alphabet is in two splits)."""
    names = split_classes(dataset.class_names(), fractions, seed, group=lambda n: n.split("/")[0])
    return {s: dataset.subset(n, s) for s, n in names.items() if n}
