"""mini-ImageNet in its two common layouts.

1. Pickle caches `mini-imagenet-cache-{train,val,test}.pkl` (the published format used by most
   few-shot code): a dict {"image_data": uint8 (N, 84, 84, 3), "class_dict": {wnid: [indices]}}.
   This is the one place the project reads a pickle, because that is how the data set is
   published. The unpickler only admits numpy arrays, dtypes and builtin containers; anything
   else (arbitrary callables) is refused. Only open files from a source you trust.
2. CSV splits (Ravi & Larochelle): `<split>.csv` with header `filename,label` and the images in
   an `images/` folder next to it.
"""

from __future__ import annotations

import csv
import io
import pickle
from pathlib import Path

import numpy as np

from mtml_core.data.loaders.common import ImageClassSet, read_rgb, require

_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("builtins", "dict"), ("builtins", "list"),
    ("collections", "OrderedDict"), ("_codecs", "encode"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def miniimagenet_pickle(path: str | Path, split: str | None = None) -> ImageClassSet:
    """Classes of one mini-ImageNet pickle cache (split name taken from the file name if not given)."""
    path = require(path, "mini-ImageNet pickle")
    try:
        data = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"not a mini-ImageNet pickle cache: {path}: {err}") from None
    if not isinstance(data, dict) or "image_data" not in data or "class_dict" not in data:
        raise ValueError(f"mini-ImageNet pickle must hold 'image_data' and 'class_dict': {path}")
    images = np.asarray(data["image_data"])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"'image_data' must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}: {path}")
    items = {str(c): [int(i) for i in idx] for c, idx in data["class_dict"].items()}
    bad = [c for c, idx in items.items() if any(not 0 <= i < len(images) for i in idx)]
    if bad:
        raise ValueError(f"class_dict indices out of range for classes {bad[:3]}: {path}")
    split = split or next((s for s in ("train", "val", "test") if s in path.stem), "all")
    return ImageClassSet(items, lambda i: images[i], split)


def miniimagenet_csv(csv_path: str | Path, images_dir: str | Path | None = None,
                     split: str | None = None) -> ImageClassSet:
    """Classes of one CSV split file (`filename,label`); images in `images_dir` (default: ./images)."""
    csv_path = require(csv_path, "mini-ImageNet CSV")
    images_dir = require(images_dir or csv_path.parent / "images", "mini-ImageNet image folder")
    items: dict[str, list] = {}
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
            raise ValueError(f"CSV needs the header 'filename,label': {csv_path}")
        for row in reader:
            items.setdefault(row["label"], []).append(images_dir / row["filename"])
    if not items:
        raise ValueError(f"no rows in {csv_path}")
    return ImageClassSet(items, read_rgb, split or csv_path.stem)
