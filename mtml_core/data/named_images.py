"""Real images of named categories (a data spec's class sources, e.g. MiniPlaces) for the product class head.

`NamedImages.from_sources(sources, split, hw)` reads every image of the split's categories once into memory as
uint8, resized so its width is the model's and, for training, cropped to the model's height at a random offset
(centre crop otherwise), so a square 128×128 Places image becomes a 96×128 view with the camera's aspect. Labels
are the category's position in :attr:`names` (the model's named rows: a category that shares a name with a row
already there, e.g. MiniPlaces' "corridor" and the built-in place type, joins that row).
Memory: 8,000 MiniPlaces images at 128×128 take 390 MB.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtml_core import preprocess
from mtml_core.data.sources import Source, category_name
from mtml_core.data.world import photometric


def _class_sets(sources: Sequence[Source], split: str) -> list[tuple[Source, object]]:
    """(source, its class set of ``split``) for every class source with images there (not the built-in world)."""
    out = [(s, s.classes(split)) for s in sources if "class" in s.tasks and s.loader != "synth"]
    out = [(s, data) for s, data in out if data is not None]
    if not out:
        raise ValueError(f"no class source has images in the {split!r} split")
    return out


def category_names(sources: Sequence[Source], split: str, names: Sequence[str] = ()) -> list[str]:
    """``names`` followed by the class sources' other categories of ``split`` (each source's in its id order,
    readable names as :func:`category_name`); reads listings only, no image."""
    out = list(names)
    for s, data in _class_sets(sources, split):
        ids = s._classes[1]  # type: ignore[index]
        out += [n for n in (category_name(c) for c in sorted(data.class_names(), key=lambda c: ids[c]))
                if n not in out]
    return out


class NamedImages:
    """Images (N, H', W, 3) uint8 of named categories with labels (N,), H' ≥ the model's height."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, names: Sequence[str], hw: Sequence[int]) -> None:
        if images.ndim != 4 or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
            raise ValueError(f"expected N > 0 images (N, H, W, 3) and N labels, got {images.shape}, {labels.shape}")
        if images.shape[1] < hw[0] or images.shape[2] != hw[1]:
            raise ValueError(f"images {images.shape[1:3]} cannot be cropped to {tuple(hw)}")
        self.images, self.labels, self.names = images, labels.astype(np.int64), list(names)
        self.hw = (int(hw[0]), int(hw[1]))

    @classmethod
    def from_sources(cls, sources: Sequence[Source], split: str, hw: Sequence[int],
                     names: Sequence[str] = ()) -> NamedImages:
        """Every image of ``split`` of the class sources (not the built-in world), labelled by position in
        ``names`` followed by the sources' other categories (each source's in its id order, readable names as
        :func:`category_name`)."""
        per_source = _class_sets(sources, split)
        names = category_names(sources, split, names)
        index = {n: i for i, n in enumerate(names)}
        width = int(hw[1])
        images, labels = [], []
        for _, data in per_source:
            for c in data.class_names():
                label = index[category_name(c)]
                for j in range(data.num_items(c)):
                    rgb = data.rgb(c, j)
                    height = max(int(hw[0]), round(rgb.shape[0] * width / rgb.shape[1]))
                    images.append(preprocess.resize_rgb(rgb, (height, width)))
                    labels.append(label)
        tallest = max(im.shape[0] for im in images)
        if any(im.shape[0] != tallest for im in images):  # mixed aspect ratios: centre-crop all to the shortest
            short = min(im.shape[0] for im in images)
            images = [im[(im.shape[0] - short) // 2:][:short] for im in images]
        return cls(np.stack(images), np.asarray(labels), names, hw)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def crops(self, idx: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """uint8 (n, H, W, 3) views of images ``idx``: random vertical crop, flip and photometric jitter with
        ``rng``, the centre crop without."""
        h = self.hw[0]
        spare = self.images.shape[1] - h
        out = []
        for i in idx:
            top = int(rng.integers(0, spare + 1)) if rng is not None else spare // 2
            im = self.images[i, top:top + h]
            if rng is not None:
                im = photometric(im[:, ::-1] if rng.random() < 0.5 else im, rng)
            out.append(im)
        return np.stack(out)

    def batch(self, idx: np.ndarray, rng: np.random.Generator | None = None,
              mean: Sequence[float] = preprocess.MEAN, std: Sequence[float] = preprocess.STD,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (n, 3, H, W) and their labels (positions in :attr:`names`) of images ``idx``."""
        x = preprocess.to_tensor(np.ascontiguousarray(self.crops(idx, rng)), None, mean, std)
        return x, torch.from_numpy(self.labels[idx])

    def sample(self, rng: np.random.Generator, n: int, **kw: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random augmented training images and labels."""
        return self.batch(rng.integers(0, len(self), n), rng, **kw)
