"""Resumable training state without pickle: optimiser/balancer state and RNG in ``train_state.safetensors``.

A nested state (dicts, lists, numbers, tensors) is split into its tensors (safetensors, keyed by their path) and a
JSON skeleton (stored in the safetensors metadata) that says where each tensor goes; dict keys keep their int/str
type. The run step is stored too, and must match the step in the run's config.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

TRAIN_STATE = "train_state.safetensors"


def _flatten(node: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, torch.Tensor):
        tensors[path] = node.detach().contiguous().cpu()
        return {"t": path}
    if isinstance(node, dict):
        return {"d": [[("i" if isinstance(k, int) else "s") + str(k), _flatten(v, f"{path}.{k}", tensors)]
                      for k, v in node.items()]}
    if isinstance(node, (list, tuple)):
        return {"l": [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(node)]}
    if node is None or isinstance(node, (bool, int, float, str)):
        return {"v": node}
    raise ValueError(f"train state: cannot store {type(node).__name__} at {path!r}")


def _unflatten(node: dict, tensors: dict[str, torch.Tensor], source: str) -> Any:
    if "t" in node:
        if node["t"] not in tensors:
            raise ValueError(f"train state {source}: tensor {node['t']!r} is missing")
        return tensors[node["t"]]
    if "d" in node:
        return {(int(k[1:]) if k[0] == "i" else k[1:]): _unflatten(v, tensors, source) for k, v in node["d"]}
    if "l" in node:
        return [_unflatten(v, tensors, source) for v in node["l"]]
    return node["v"]


def save_train_state(run_dir: str | Path, state: dict[str, Any], step: int) -> Path:
    """Write ``state`` (nested dicts/lists of tensors and numbers) and the step, atomically."""
    path = Path(run_dir) / TRAIN_STATE
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "state", tensors)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "mtml-train-1", "step": str(int(step)),
                                           "skeleton": json.dumps(skeleton)})
    tmp.replace(path)
    return path


def load_train_state(run_dir: str | Path, expected_step: int) -> dict[str, Any]:
    """Read the state written by :func:`save_train_state`; refuse a corrupt file or a step mismatch."""
    path = Path(run_dir) / TRAIN_STATE
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"train state {path} is corrupt or not safetensors: {exc}") from exc
    if meta.get("format") != "mtml-train-1" or "skeleton" not in meta:
        raise ValueError(f"train state {path}: not an mtml training state (format {meta.get('format')!r})")
    if int(meta.get("step", -1)) != int(expected_step):
        raise ValueError(f"train state {path}: step {meta.get('step')} does not match step {expected_step} "
                         "in config.yaml (the run was interrupted between the two writes)")
    return _unflatten(json.loads(meta["skeleton"]), tensors, str(path))
