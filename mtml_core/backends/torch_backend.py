"""Torch backend: the checkpoint copied beside the export, run eagerly (CPU or CUDA). The reference for parity."""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call

from mtml_core.backends.base import Backend
from mtml_core.backends.manifest import Manifest
from mtml_core.graphs import BackboneGraph, HeadGraph, fold_multiplier


class TorchBackend(Backend):
    """The model's own modules; folded backbones are folded here the same way as at export."""

    name = "torch"

    def __init__(self, manifest: Manifest, device: str = "cpu") -> None:
        super().__init__(manifest)
        self.device = torch.device(device)
        model = manifest.load_model(map_location="cpu").to(self.device)
        blocks = manifest.doc["backbone"]["blocks"]
        self._bb = BackboneGraph(model.backbone, blocks).eval()
        self._folded_graphs = [BackboneGraph(fold_multiplier(model.backbone, torch.from_numpy(vec)), blocks).eval()
                               for _, vec in self.folded]
        self._heads = {task: HeadGraph(model, task).eval() for task in self.tasks}

    def _run(self, fn: torch.nn.Module, *args: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = fn(*(torch.from_numpy(a).to(self.device) for a in args))
        return [o.cpu().numpy() for o in out]

    def _backbone(self, images: np.ndarray, multipliers: np.ndarray) -> list[np.ndarray]:
        return self._run(self._bb, images, multipliers)

    def _folded_backbone(self, index: int, images: np.ndarray) -> list[np.ndarray]:
        return self._run(self._folded_graphs[index], images)

    def _head(self, task: str, feats: list[np.ndarray], params: dict[str, np.ndarray] | None) -> np.ndarray:
        graph = self._heads[task]
        inputs = len(self.manifest.head(task)["inputs"])
        with torch.inference_mode():
            x = [torch.from_numpy(f).to(self.device) for f in feats[-inputs:]]
            if params is None:
                out = graph(*x)
            else:
                weights = {f"head.{k}": torch.from_numpy(v).to(self.device) for k, v in params.items()}
                out = functional_call(graph, weights, tuple(x))
        return out.cpu().numpy()
