"""ONNX Runtime backend (CPU by default; CUDA / TensorRT execution providers where installed).

Adapted heads run without re-export: at load, each head graph's parameter initializers are turned into graph
inputs (defaults removed), and every call feeds the parameters (exported or adapted). Measured on the 2-core dev
CPU at 96×128, batch 1 (``bench/inference.py``): feeding the weights costs nothing measurable against baked-in
initializers (depth head 0.25 vs 0.37 ms, normals 0.53 vs 0.66 ms, class/vp ~0.005 ms), while the same heads in
torch take 0.7 / 3.0 / 0.015 ms, so the heads stay in ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from mtml_core.backends.base import Backend
from mtml_core.backends.manifest import Manifest

DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def params_as_inputs(model: onnx.ModelProto, names: Sequence[str]) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Move the named initializers to graph inputs; returns the new model and their exported values."""
    inits = {i.name: i for i in model.graph.initializer}
    missing = [n for n in names if n not in inits]
    if missing:
        raise ValueError(f"head graph has no initializer(s) {missing}")
    values = {}
    for name in names:
        init = inits[name]
        values[name] = numpy_helper.to_array(init).astype(np.float32)
        model.graph.input.append(onnx.helper.make_tensor_value_info(name, init.data_type, list(init.dims)))
        model.graph.initializer.remove(init)
    return model, values


class OrtBackend(Backend):
    """Backbone and heads as ONNX Runtime sessions."""

    name = "onnxruntime"

    def __init__(self, manifest: Manifest, providers: Sequence[str] | None = None, threads: int = 0,
                 spin: bool = False) -> None:
        super().__init__(manifest)
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in DEFAULT_PROVIDERS if p in available]
        missing = [p for p in providers if p not in available]
        if missing:
            raise ValueError(f"onnxruntime: provider(s) {missing} not available here (available: {available})")
        self.providers = list(providers)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:  # idle pool threads would otherwise busy-wait and starve torch (adaptation) on few cores
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(source: str | bytes) -> ort.InferenceSession:
            return ort.InferenceSession(source, opts, providers=self.providers)

        doc = manifest.doc
        self._bb = session(str(manifest.file(doc["backbone"]["file"])))
        self._folded_sessions = [session(str(manifest.file(f))) for f, _ in self.folded]
        self._outputs = list(doc["backbone"]["outputs"])
        self._heads: dict[str, ort.InferenceSession] = {}
        self._head_inputs: dict[str, list[str]] = {}
        self._onnx_names: dict[str, dict[str, str]] = {}
        self._base_feeds: dict[str, dict[str, np.ndarray]] = {}
        for task in self.tasks:
            entry = manifest.head(task)
            names = {p: spec["onnx"] for p, spec in entry["params"].items()}
            model, values = params_as_inputs(onnx.load(str(manifest.file(entry["file"]))), list(names.values()))
            self._heads[task] = session(model.SerializeToString())
            self._head_inputs[task] = list(entry["inputs"])
            self._onnx_names[task] = names
            self._base_feeds[task] = values

    def _backbone(self, images: np.ndarray, multipliers: np.ndarray) -> list[np.ndarray]:
        return self._bb.run(self._outputs, {"images": images, "multipliers": multipliers})

    def _folded_backbone(self, index: int, images: np.ndarray) -> list[np.ndarray]:
        return self._folded_sessions[index].run(self._outputs, {"images": images})

    def _head(self, task: str, feats: list[np.ndarray], params: dict[str, np.ndarray] | None) -> np.ndarray:
        inputs = self._head_inputs[task]
        feeds = dict(zip(inputs, feats[-len(inputs):]))
        if params is None:
            feeds.update(self._base_feeds[task])
        else:
            names = self._onnx_names[task]
            feeds.update({names[k]: v for k, v in params.items()})
        return self._heads[task].run(None, feeds)[0]
