"""A MiniPlaces-layout folder (categories.txt, images/train/<letter>/<category>) and a data spec over it."""

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import yaml


def places_spec(tmp_path, categories: Sequence[str], per_class: int, image: Callable[[int, int], np.ndarray],
                split: dict, suffix: str = ".png") -> str:
    """Write ``image(category index, item)`` for every item of every category, and a spec with one `places` source
    split by ``split``; returns the spec's path."""
    root = tmp_path / "mp"
    lines = []
    for i, cat in enumerate(categories):
        folder = root / "images" / "train" / cat
        folder.mkdir(parents=True)
        for j in range(per_class):
            cv2.imwrite(str(folder / f"{j:08d}{suffix}"), image(i, j))
        lines.append(f"/{cat} {i}")
    (root / "categories.txt").write_text("\n".join(lines) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"root": str(root), "sources": [
        {"name": "places", "loader": "places", "path": ".", "tasks": ["class"], "split": split}]}))
    return str(spec)
