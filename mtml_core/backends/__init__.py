"""Interchangeable runtime backends behind one interface: ``load_backend(name, manifest_path, **opts)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtml_core.backends.base import Backend
from mtml_core.backends.manifest import Manifest, load_manifest

NAMES = {"torch": "torch", "onnxruntime": "onnxruntime", "ort": "onnxruntime", "tensorrt": "tensorrt",
         "trt": "tensorrt"}


def load_backend(name: str, manifest: str | Path | Manifest, **opts: Any) -> Backend:
    """A backend by name ('torch', 'onnxruntime'/'ort', 'tensorrt'/'trt') for an export (manifest file, its
    directory, or a loaded Manifest). ``opts`` go to the backend: torch ``device``; onnxruntime ``providers``,
    ``threads``; tensorrt ``precision``, ``cache_dir``, ``force_rebuild``, ``max_batch``."""
    key = NAMES.get(name.lower())
    if key is None:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(set(NAMES.values()))}")
    man = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    if key == "torch":
        from mtml_core.backends.torch_backend import TorchBackend

        return TorchBackend(man, **opts)
    if key == "onnxruntime":
        from mtml_core.backends.ort_backend import OrtBackend

        return OrtBackend(man, **opts)
    from mtml_core.backends.trt_backend import TrtBackend

    return TrtBackend(man, **opts)


__all__ = ["Backend", "Manifest", "load_backend", "load_manifest"]
