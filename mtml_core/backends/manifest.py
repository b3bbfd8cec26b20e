"""The export manifest: what an exported model directory holds, how its inputs are laid out, and the sha256 of
every file. Written by :mod:`mtml_core.export`, read (and verified) by every backend and the adaptation engine.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtml_core.checkpoint import load_checkpoint
from mtml_core.model import MultiTaskModel

FORMAT = "mtml-export-1"
MANIFEST = "manifest.json"
MODEL_DIR = "model"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write JSON to ``path`` through a temp file and a rename (readers never see a partial file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


@dataclass(frozen=True)
class Manifest:
    """A loaded, verified export: ``doc`` is the JSON, ``root`` the directory holding it."""

    path: Path
    doc: dict[str, Any]

    @property
    def root(self) -> Path:
        """Directory of the export."""
        return self.path.parent

    def file(self, rel: str) -> Path:
        """Absolute path of a file named in the manifest."""
        return self.root / rel

    @property
    def tasks(self) -> tuple[str, ...]:
        """Exported tasks, in model order."""
        return tuple(self.doc["tasks"])

    @property
    def input_hw(self) -> tuple[int, int]:
        """Network input (H, W)."""
        return int(self.doc["input"]["height"]), int(self.doc["input"]["width"])

    @property
    def mean(self) -> tuple[float, float, float]:
        """Normalisation mean (RGB, on [0, 1] values)."""
        return tuple(self.doc["input"]["mean"])  # type: ignore[return-value]

    @property
    def std(self) -> tuple[float, float, float]:
        """Normalisation std (RGB, on [0, 1] values)."""
        return tuple(self.doc["input"]["std"])  # type: ignore[return-value]

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names of the exported class head ('' when the model was trained without names)."""
        return tuple(self.doc["class_names"])

    @property
    def multiplier_size(self) -> int:
        """B·C."""
        return int(self.doc["multiplier"]["size"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Backbone graph outputs (per-block features, last one last)."""
        return tuple(self.doc["backbone"]["outputs"])

    def head(self, task: str) -> dict[str, Any]:
        """The manifest entry of one head (file, inputs, output, params name → shape)."""
        try:
            return self.doc["heads"][task]
        except KeyError:
            raise ValueError(f"task {task!r} is not exported; tasks: {list(self.tasks)}") from None

    @property
    def model_sha256(self) -> str:
        """sha256 of the model weights this export came from (the identity profiles are tied to)."""
        return self.doc["files"][f"{MODEL_DIR}/model.safetensors"]

    @property
    def folded(self) -> list[dict[str, Any]]:
        """Backbones with a fixed multiplier folded into their weights (may be empty)."""
        return list(self.doc.get("folded", []))

    def load_model(self, map_location: str = "cpu") -> MultiTaskModel:
        """The torch model (attention, label encoders, heads' meta-initialisation) copied beside the export."""
        model, _ = load_checkpoint(self.file(MODEL_DIR), map_location)
        return model.eval()

    def folded_multipliers(self) -> dict[str, torch.Tensor]:
        """Folded multiplier vectors by key (see ``folded[i]['key']``)."""
        from safetensors.torch import load_file

        rel = self.doc.get("folded_multipliers")
        return {} if rel is None else load_file(str(self.file(rel)))


def load_manifest(path: str | Path, verify: bool = True) -> Manifest:
    """Read a manifest (file, or the export directory holding ``manifest.json``); check format and checksums."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"export manifest not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"export manifest {path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"export manifest {path}: format {doc.get('format') if isinstance(doc, dict) else None!r} "
                         f"is not {FORMAT!r}")
    missing = [k for k in ("input", "tasks", "multiplier", "backbone", "heads", "files", "model") if k not in doc]
    if missing:
        raise ValueError(f"export manifest {path}: missing key(s) {missing}")
    manifest = Manifest(path.resolve(), doc)
    if verify:
        for rel, expected in doc["files"].items():
            file = manifest.file(rel)
            if not file.is_file():
                raise FileNotFoundError(f"export {path.parent}: {rel} listed in the manifest is missing")
            actual = sha256_file(file)
            if actual != expected:
                raise ValueError(f"export {path.parent}: {rel} has sha256 {actual[:12]}…, manifest says "
                                 f"{expected[:12]}… (file changed or corrupt)")
    return manifest
