"""Checkpoints without pickle: ``model.safetensors`` (weights) + ``config.yaml`` (everything to rebuild the model).

Loading refuses a corrupt file, a missing or unexpected tensor, or a shape that does not match the config, with a
message naming what differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mtml_core.config import ModelConfig
from mtml_core.model import MultiTaskModel

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"

def optional_tensor(key: str) -> bool:
    """Tensors older checkpoints may lack (the attention prior w̄): the model's own default (identity) stands in."""
    return key.startswith("attention.") and key.endswith(".prior")


def save_checkpoint(model: MultiTaskModel, run_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write weights and config into ``run_dir`` (atomically: temp files then rename). Returns the dir."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    doc = {"model": model.cfg.to_dict(), **(extra or {})}
    tmp_w, tmp_c = run_dir / (WEIGHTS + ".tmp"), run_dir / (CONFIG + ".tmp")
    save_file(state, str(tmp_w), metadata={"format": "mtml-1"})
    tmp_c.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp_w.replace(run_dir / WEIGHTS)
    tmp_c.replace(run_dir / CONFIG)
    return run_dir


def load_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config.yaml as a dict (``model`` key validated into a ModelConfig by :func:`load_checkpoint`)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint config not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"checkpoint config {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise ValueError(f"checkpoint config {path}: missing the 'model' section")
    return doc


def load_checkpoint(run_dir: str | Path, map_location: str = "cpu") -> tuple[MultiTaskModel, dict[str, Any]]:
    """Rebuild the model from config.yaml and load model.safetensors into it, strictly."""
    run_dir = Path(run_dir)
    doc = load_config(run_dir)
    try:
        cfg = ModelConfig.from_dict(doc["model"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint config {run_dir / CONFIG}: {exc}") from exc
    model = MultiTaskModel(cfg)
    path = run_dir / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {path}")
    try:
        state = load_file(str(path), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"checkpoint weights {path} are corrupt or not safetensors: {exc}") from exc
    load_state_strict(model, state, str(path))
    return model, doc


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; ValueError listing missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    state = dict(state)
    state.update({k: v for k, v in expected.items() if optional_tensor(k) and k not in state})
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}{' …' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}")
    if shapes:
        problems.append("shape mismatch " + "; ".join(shapes[:5]))
    if problems:
        raise ValueError(f"checkpoint {source} does not match its config: " + " | ".join(problems))
    model.load_state_dict(state)
