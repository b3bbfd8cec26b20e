"""Places-style class folders: `<root>/<class>/*.jpg`, also nested (`<root>/a/airfield/*.jpg` as in
Places365); the class name is the folder path relative to the root."""

from __future__ import annotations

from pathlib import Path

from mtml_core.data.loaders.common import IMAGE_SUFFIXES, ImageClassSet, read_rgb, require


def class_folders(root: str | Path, split: str = "all", min_items: int = 1) -> ImageClassSet:
    """Every folder holding at least `min_items` images is a class."""
    root = require(root, "class-folder root")
    items: dict[str, list] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix in IMAGE_SUFFIXES and path.is_file():
            items.setdefault(path.parent.relative_to(root).as_posix(), []).append(path)
    items = {c: v for c, v in items.items() if len(v) >= min_items and c != "."}
    if not items:
        raise ValueError(f"no class folders with >= {min_items} images under {root}")
    return ImageClassSet(items, read_rgb, split)
