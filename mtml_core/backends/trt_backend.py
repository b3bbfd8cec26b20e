"""TensorRT backend (public TensorRT Python API, CUDA memory through torch). Needs tensorrt and a CUDA GPU.

Engines come from :func:`mtml_core.backends.trt_build.build_engine` (FP16 with FP32 fallback, disk cache). Head
engines are refittable: adapted weights are written into the engine with ``trt.Refitter.set_named_weights``
(names = ONNX initializer names from the manifest) the first time a call uses them; a head whose refit is refused
runs in torch on the GPU instead, and says so in the log. One lock serialises execution and refits, so a call
never runs on a half-refitted engine.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from mtml_core.backends.base import Backend
from mtml_core.backends.manifest import Manifest
from mtml_core.backends.trt_build import build_engine
from mtml_core.graphs import HeadGraph

log = logging.getLogger(__name__)
DEFAULT_CACHE = Path.home() / ".cache" / "mtml" / "trt"
_REFUSED = object()  # marks a head engine whose last refit failed (its weights are unknown)


class _Engine:
    """A deserialized engine with one execution context, run on torch CUDA tensors."""

    def __init__(self, trt: Any, path: Path, logger: Any) -> None:
        self.trt = trt
        runtime = trt.Runtime(logger)
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]

    def __call__(self, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        for name in self.inputs:
            t = feeds[name]
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        outs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return outs


class TrtBackend(Backend):
    """Backbone, folded backbones and heads as TensorRT engines."""

    name = "tensorrt"

    def __init__(self, manifest: Manifest, precision: str = "fp16", cache_dir: str | Path | None = None,
                 force_rebuild: bool = False, max_batch: int = 32) -> None:
        super().__init__(manifest)
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise RuntimeError("tensorrt backend: the tensorrt Python package is not installed") from exc
        if not torch.cuda.is_available():
            raise RuntimeError("tensorrt backend: no CUDA device (torch.cuda.is_available() is False)")
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.max_batch = max_batch
        self.gpu = torch.cuda.get_device_name()
        cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
        h, w = self.input_hw
        doc = manifest.doc
        image = ((1, 3, h, w), (1, 3, h, w), (max_batch, 3, h, w))
        rows = ((1, self.multiplier_size), (1, self.multiplier_size), (max_batch, self.multiplier_size))

        def engine(rel: str, shapes: dict, refit: bool = False) -> _Engine:
            built = build_engine(manifest.file(rel), cache, self.gpu, shapes, precision, refit, force_rebuild)
            self.precisions[rel] = built.precision
            return _Engine(trt, built.path, self.logger)

        self.precisions: dict[str, str] = {}
        self._bb = engine(doc["backbone"]["file"], {"images": image, "multipliers": rows})
        self._folded_engines = [engine(f, {"images": image}) for f, _ in self.folded]
        feat_shapes = doc["backbone"]["feature_shapes"]
        self._heads: dict[str, _Engine] = {}
        for task in self.tasks:
            entry = manifest.head(task)
            shapes = {n: ((1, *feat_shapes[n]), (1, *feat_shapes[n]), (max_batch, *feat_shapes[n]))
                      for n in entry["inputs"]}
            self._heads[task] = engine(entry["file"], shapes, refit=True)
        self._loaded: dict[str, object] = {t: None for t in self.tasks}  # params object each head engine holds
        self._torch_heads: dict[str, HeadGraph] = {}
        self._model = None
        self._lock = threading.RLock()

    def _chunks(self, n: int) -> list[slice]:
        return [slice(i, min(i + self.max_batch, n)) for i in range(0, n, self.max_batch)]

    def _run(self, eng: _Engine, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        n = next(iter(feeds.values())).shape[0]
        parts = []
        with self._lock:
            for sl in self._chunks(n):
                parts.append(eng({k: torch.from_numpy(np.ascontiguousarray(v[sl])).cuda() for k, v in feeds.items()}))
        return [torch.cat([p[i] for p in parts]).cpu().numpy() for i in range(len(eng.outputs))]

    def _backbone(self, images: np.ndarray, multipliers: np.ndarray) -> list[np.ndarray]:
        rows = np.ascontiguousarray(np.broadcast_to(multipliers, (images.shape[0], self.multiplier_size)))
        out = self._run(self._bb, {"images": images, "multipliers": rows})
        return self._order(self._bb, out)

    def _folded_backbone(self, index: int, images: np.ndarray) -> list[np.ndarray]:
        eng = self._folded_engines[index]
        return self._order(eng, self._run(eng, {"images": images}))

    def _order(self, eng: _Engine, out: list[np.ndarray]) -> list[np.ndarray]:
        by_name = dict(zip(eng.outputs, out))
        return [by_name[n] for n in self.manifest.feature_names]

    def _refit(self, task: str, params: dict[str, np.ndarray] | None) -> bool:
        """Load ``params`` (None: the exported weights) into the head engine; False if TensorRT refuses."""
        eng = self._heads[task]
        spec = self.manifest.head(task)["params"]
        if params is None:
            from onnx import load, numpy_helper

            graph = load(str(self.manifest.file(self.manifest.head(task)["file"]))).graph
            inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
            params = {k: np.ascontiguousarray(inits[s["onnx"]], np.float32) for k, s in spec.items()}
        refitter = self.trt.Refitter(eng.engine, self.logger)
        ok = all(refitter.set_named_weights(spec[k]["onnx"], self.trt.Weights(v)) for k, v in params.items())
        missing = refitter.get_missing_weights()
        return ok and not missing and refitter.refit_cuda_engine()

    def _torch_head(self, task: str, feats: list[np.ndarray], params: dict[str, np.ndarray] | None) -> np.ndarray:
        if task not in self._torch_heads:
            if self._model is None:
                self._model = self.manifest.load_model().cuda()
            self._torch_heads[task] = HeadGraph(self._model, task).eval()
        inputs = len(self.manifest.head(task)["inputs"])
        with torch.inference_mode():
            x = tuple(torch.from_numpy(f).cuda() for f in feats[-inputs:])
            if params is None:
                return self._torch_heads[task](*x).cpu().numpy()
            weights = {f"head.{k}": torch.from_numpy(v).cuda() for k, v in params.items()}
            return functional_call(self._torch_heads[task], weights, x).cpu().numpy()

    def _head(self, task: str, feats: list[np.ndarray], params: dict[str, np.ndarray] | None) -> np.ndarray:
        entry = self.manifest.head(task)
        feeds = dict(zip(entry["inputs"], feats[-len(entry["inputs"]):]))
        with self._lock:  # refit and run under one hold: no other call can swap the weights in between
            if self._loaded[task] is not params:
                self._loaded[task] = params if self._refit(task, params) else _REFUSED
            if self._loaded[task] is params:
                return self._run(self._heads[task], feeds)[0]
        log.warning("tensorrt: refit of head %r refused; running it in torch", task)
        return self._torch_head(task, feats, params)
