"""Omniglot (Lake et al.) in its published layout: `images_background.zip` / `images_evaluation.zip`
(or the `_small1` / `_small2` subsets), each `<root>/<Alphabet>/characterNN/<drawer>.png`, 105x105
binary PNGs; also the same tree unzipped. A class is `Alphabet/characterNN`; identical files that
appear in several archives (the small subsets overlap) are counted once.

Splits are made by alphabet over the union of all archives, so no alphabet (and no character) is in two splits:
`images_background_small1.zip` and `images_background_small2.zip` both hold Greek and Latin, byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtml_core.data.loaders.common import ImageClassSet, ZipReader, as_rgb, decode, require, split_classes

Paths = str | Path | Sequence[str | Path]


def _class_of(parts: Sequence[str]) -> str | None:
    # .../<Alphabet>/<character>/<file>.png
    return f"{parts[-3]}/{parts[-2]}" if len(parts) >= 3 and parts[-1].lower().endswith(".png") else None


def alphabet(class_name: str) -> str:
    """The alphabet of an Omniglot class name `Alphabet/characterNN`."""
    return class_name.split("/")[0]


def _path_list(paths: Paths) -> list[str | Path]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def load_omniglot(paths: Paths, cache: bool = True) -> ImageClassSet:
    """Omniglot classes from zip archives and/or unzipped folders."""
    paths = _path_list(paths)
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
    names = split_classes(dataset.class_names(), fractions, seed, group=alphabet)
    return {s: dataset.subset(n, s) for s, n in names.items() if n}


def omniglot_union_splits(train: Paths, test: Paths, val_fraction: float = 0.2, seed: int = 0,
                          cache: bool = True) -> dict[str, ImageClassSet]:
    """Alphabet-disjoint train/val/test over the union of the `train` and `test` archives.

    Test: the alphabets found only in the `test` archives. The alphabets of the `train` archives (including any the
    test archives share with them) are split into train / val alphabets (`val_fraction` of them, seeded). Every
    alphabet is in exactly one split; splits that get no alphabet are left out.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    union = load_omniglot([*_path_list(train), *_path_list(test)], cache)
    train_alphabets = {alphabet(c) for c in load_omniglot(train, cache=False).class_names()}
    names = union.class_names()
    test_names = [n for n in names if alphabet(n) not in train_alphabets]
    if not test_names:
        raise ValueError(f"Omniglot: every alphabet of {test} is also in {train}; nothing is left to test on")
    rest = [n for n in names if alphabet(n) in train_alphabets]
    parts = split_classes(rest, (1.0 - val_fraction, val_fraction, 0.0), seed, group=alphabet)
    parts["test"] = test_names
    return {s: union.subset(n, s) for s, n in parts.items() if n}
