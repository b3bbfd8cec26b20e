"""TensorRT engine building with an on-disk cache (public TensorRT Python API; needs tensorrt and a CUDA GPU).

An engine is cached under a key of (ONNX sha256, TensorRT version, GPU name, requested precision) as
``<cache_dir>/<key>.engine`` plus ``<key>.json`` (what was asked, what was built). FP16 is requested with
``BuilderFlag.FP16`` where it exists and the GPU has fast FP16 (TensorRT then keeps FP32 for layers where FP16 is
unsupported or slower); otherwise, or if the FP16 build fails, the engine is built in FP32 and the sidecar says
so. Head engines are built refittable so that adapted weights can be loaded without a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtml_core.backends.manifest import sha256_file, write_json_atomic

log = logging.getLogger(__name__)
PRECISIONS = ("fp16", "fp32")
Shapes = Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]  # input → (min, opt, max)


def engine_cache_key(onnx_sha256: str, trt_version: str, gpu_name: str, precision: str) -> str:
    """Cache key of an engine: sha256 over the four things that make an engine valid."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    text = json.dumps([onnx_sha256, trt_version, gpu_name, precision])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class BuiltEngine:
    """A serialized engine on disk and how it was made."""

    path: Path
    precision: str
    refittable: bool
    from_cache: bool


def _build(trt: Any, onnx_path: Path, shapes: Shapes, fp16: bool, refittable: bool, workspace: int) -> bytes | None:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if refittable:
        config.set_flag(trt.BuilderFlag.REFIT)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    return builder.build_serialized_network(network, config)


def fp16_supported(trt: Any) -> tuple[bool, str]:
    """Whether this TensorRT/GPU can build a mixed FP16 engine from an FP32 ONNX graph, and why not."""
    if not hasattr(trt.BuilderFlag, "FP16"):
        return False, f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (strongly typed only)"
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    if not getattr(builder, "platform_has_fast_fp16", True):
        return False, "this GPU has no fast FP16"
    return True, ""


def build_engine(onnx_path: str | Path, cache_dir: str | Path, gpu_name: str, shapes: Shapes,
                 precision: str = "fp16", refittable: bool = False, force_rebuild: bool = False,
                 workspace: int = 1 << 30) -> BuiltEngine:
    """The cached engine for ``onnx_path`` (built now if missing or ``force_rebuild``)."""
    import tensorrt as trt

    onnx_path, cache = Path(onnx_path), Path(cache_dir)
    key = engine_cache_key(sha256_file(onnx_path), trt.__version__, gpu_name, precision)
    engine_path, meta_path = cache / f"{key}.engine", cache / f"{key}.json"
    if not force_rebuild and engine_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("engine_sha256") == sha256_file(engine_path) and meta.get("refittable") == refittable:
            return BuiltEngine(engine_path, meta["built_precision"], refittable, True)
        log.warning("engine cache entry %s is stale or corrupt; rebuilding", key)
    cache.mkdir(parents=True, exist_ok=True)
    built, reason = precision, ""
    data = None
    if precision == "fp16":
        ok, reason = fp16_supported(trt)
        if ok:
            data = _build(trt, onnx_path, shapes, True, refittable, workspace)
            reason = "" if data is not None else "FP16 build failed"
        if data is None:
            log.warning("%s: %s; building FP32 instead", onnx_path.name, reason)
            built = "fp32"
    if data is None:
        data = _build(trt, onnx_path, shapes, False, refittable, workspace)
    if data is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path.name} (see the TensorRT log)")
    tmp = engine_path.with_name(engine_path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(bytes(data))
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(engine_path)
    write_json_atomic(meta_path, {
        "onnx": onnx_path.name, "onnx_sha256": sha256_file(onnx_path), "tensorrt": trt.__version__,
        "gpu": gpu_name, "requested_precision": precision, "built_precision": built, "fallback_reason": reason,
        "refittable": refittable, "shapes": {k: [list(s) for s in v] for k, v in shapes.items()},
        "engine_sha256": sha256_file(engine_path)})
    return BuiltEngine(engine_path, built, refittable, False)
