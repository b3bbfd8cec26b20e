"""ONNX export of a trained model for the runtime backends (docs/architecture.md).

An export directory holds:

- ``backbone.onnx``: inputs ``images`` (N, 3, H, W) normalised float32 and ``multipliers`` (M, B·C) with M = 1
  (one vector for the whole batch, i.e. the (B·C,) vector of the paper) or M = N (one per image, which lets a
  backend run the four tasks' multipliers in one stacked call); outputs the per-block features the heads read
  (``feat_{B-1}``; every block when a multi-scale head exists).
- ``head_<task>.onnx``: one graph per head, input the backbone features, weights as initializers named like the
  torch parameters (so a backend can override them with adapted weights, and TensorRT can refit them by name).
- optionally ``backbone_folded_<k>.onnx``: a fixed multiplier vector folded into the BatchNorm scale/shift
  (input ``images`` only), with the vectors in ``folded.safetensors``.
- ``model/``: the checkpoint (safetensors + config.yaml) so that adaptation (torch) can rebuild attention,
  label encoders and the heads' meta-initialisation.
- ``manifest.json``: input size, normalisation, tasks, class names, multiplier layout, opset, sha256 of each file,
  source checkpoint (see :mod:`mtml_core.backends.manifest`).
"""

from __future__ import annotations

import datetime
import logging
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path

import onnx
import torch
from safetensors.torch import save_file
from torch import nn

from mtml_core.backends.manifest import FORMAT, MANIFEST, MODEL_DIR, sha256_file, write_json_atomic
from mtml_core.checkpoint import CONFIG, WEIGHTS, load_checkpoint, save_checkpoint
from mtml_core.graphs import BackboneGraph, HeadGraph, feature_blocks, fold_multiplier, head_reads_all
from mtml_core.model import MultiTaskModel

OPSET = 18  # the torch exporter's native opset; TensorRT >= 8.6 and ONNX Runtime >= 1.14 read it
FOLDED_MULTIPLIERS = "folded.safetensors"
__all__ = ["FOLDED_MULTIPLIERS", "OPSET", "BackboneGraph", "HeadGraph", "export_graph", "export_model", "export_run",
           "feature_blocks", "fold_multiplier", "head_reads_all"]


def export_graph(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                  output_names: list[str], shapes: dict[str, object], opset: int,
                  optimize: bool = True) -> onnx.ModelProto:
    """torch.onnx.export (dynamo) with named inputs/outputs and dynamic dims (keyed by forward's argument names).
    ``optimize=False`` keeps every parameter an initializer of its own (no constant folding of weight-only
    subgraphs such as a normalised prototype matrix), so adapted weights can be fed by name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger("torch.onnx").level
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(module.eval(), args, input_names=input_names, output_names=output_names,
                                        dynamic_shapes=shapes, opset_version=opset, dynamo=True, verbose=False,
                                        optimize=optimize)
        finally:
            logging.getLogger("torch.onnx").setLevel(level)
    proto = program.model_proto
    for value in proto.graph.input:
        if value.name == "multipliers":  # torch.export names it like the batch; M = 1 broadcasts as well
            value.type.tensor_type.shape.dim[0].dim_param = "multiplier_rows"
    onnx.save(proto, str(path))
    return proto


def _head_initializers(head: nn.Module, proto: onnx.ModelProto, task: str) -> dict[str, dict[str, object]]:
    """Map each head parameter to its ONNX initializer (``head.<name>``), checking it survived export unchanged."""
    inits = {i.name: list(i.dims) for i in proto.graph.initializer}
    params = {}
    for name, p in head.named_parameters():
        onnx_name = f"head.{name}"
        if inits.get(onnx_name) != list(p.shape):
            raise RuntimeError(f"export of head {task!r}: parameter {name} is not the initializer {onnx_name} "
                               f"of shape {list(p.shape)} (got {inits.get(onnx_name)}); adapted weights could not "
                               f"be fed to this graph")
        params[name] = {"onnx": onnx_name, "shape": list(p.shape)}
    return params


def export_model(model: MultiTaskModel, out_dir: str | Path, *, checkpoint_dir: str | Path | None = None,
                 fold: Mapping[str, torch.Tensor | None] | None = None, fold_source: str | None = None,
                 opset: int = OPSET) -> Path:
    """Export ``model`` into ``out_dir`` (created; existing files of the same names replaced). Returns the
    manifest path.

    ``checkpoint_dir``: the run the model was loaded from (its files are copied byte for byte; otherwise the model
    is saved afresh). ``fold``: per-task runtime multipliers (None = identity) to fold into extra backbones;
    tasks sharing a vector share a graph. ``fold_source`` names where they came from (e.g. a profile).
    """
    if opset < 17:
        raise ValueError(f"opset {opset}: need >= 17")
    model = model.eval()
    cfg = model.cfg
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = cfg.input_hw
    batch = torch.export.Dim("batch", min=1, max=1024)
    rows = torch.export.Dim("multiplier_rows", min=1, max=1024)
    example = torch.randn(2, 3, h, w)
    blocks = feature_blocks(model)
    feat_names = [f"feat_{b}" for b in blocks]
    files: list[str] = []

    export_graph(BackboneGraph(model.backbone, blocks), (example, torch.ones(2, cfg.multiplier_size)),
                  out / "backbone.onnx", ["images", "multipliers"], feat_names,
                  {"images": {0: batch}, "multipliers": {0: rows}}, opset)
    files.append("backbone.onnx")

    with torch.no_grad():
        feats = BackboneGraph(model.backbone, blocks)(example)
    heads = {}
    for task in cfg.tasks:
        inputs = feat_names if head_reads_all(model, task) else feat_names[-1:]
        args = feats if head_reads_all(model, task) else feats[-1:]
        name = f"head_{task}.onnx"
        proto = export_graph(HeadGraph(model, task), tuple(args), out / name, list(inputs), [task],
                              {"feats": tuple({0: batch} for _ in inputs)}, opset, optimize=False)
        files.append(name)
        heads[task] = {"file": name, "inputs": list(inputs), "output": task,
                       "params": _head_initializers(model.heads[task], proto, task)}

    folded_doc = []
    if fold:
        vectors: list[torch.Tensor] = []
        groups: list[list[str]] = []
        for task, m in fold.items():
            if task not in cfg.tasks:
                raise ValueError(f"fold: task {task!r} is not among the model's tasks {list(cfg.tasks)}")
            vec = torch.ones(cfg.multiplier_size) if m is None else m.detach().float().reshape(-1).cpu()
            for i, v in enumerate(vectors):
                if v.shape == vec.shape and torch.equal(v, vec):
                    groups[i].append(task)
                    break
            else:
                vectors.append(vec)
                groups.append([task])
        for k, (vec, tasks) in enumerate(zip(vectors, groups)):
            name = f"backbone_folded_{k}.onnx"
            export_graph(BackboneGraph(fold_multiplier(model.backbone, vec), blocks), (example,), out / name,
                          ["images"], feat_names, {"images": {0: batch}}, opset)
            files.append(name)
            folded_doc.append({"file": name, "key": f"folded_{k}", "tasks": tasks})
        save_file({f"folded_{k}": v.contiguous() for k, v in enumerate(vectors)}, str(out / FOLDED_MULTIPLIERS))
        files.append(FOLDED_MULTIPLIERS)

    model_dir = out / MODEL_DIR
    if checkpoint_dir is not None:
        model_dir.mkdir(exist_ok=True)
        for name in (WEIGHTS, CONFIG):
            shutil.copyfile(Path(checkpoint_dir) / name, model_dir / name)
    else:
        save_checkpoint(model, model_dir)
    files += [f"{MODEL_DIR}/{WEIGHTS}", f"{MODEL_DIR}/{CONFIG}"]

    widths = list(cfg.block_widths)
    doc = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source_checkpoint": None if checkpoint_dir is None else str(Path(checkpoint_dir).resolve()),
        "opset": opset,
        "onnx_exporter": f"torch {torch.__version__} (dynamo)",
        "input": {"name": "images", "shape": ["N", 3, h, w], "dtype": "float32", "layout": "NCHW",
                  "color": "RGB", "height": h, "width": w, "mean": list(cfg.mean), "std": list(cfg.std),
                  "normalisation": "(rgb / 255 - mean) / std, see mtml_core.preprocess.to_tensor"},
        "tasks": list(cfg.tasks),
        "class_names": list(cfg.class_names),
        "n_way": cfg.n_way,
        "multiplier": {"name": "multipliers", "blocks": cfg.blocks, "widths": widths, "size": cfg.multiplier_size,
                       "shape": ["M", cfg.multiplier_size], "rows": "M = 1 (one vector for the batch) or M = N",
                       "layout": f"block-major: block b's {widths} channels follow those of the blocks before it",
                       "identity": 1.0, "definition": "m = 1 - w (attention) times the task's Medusa mask"},
        "backbone": {"file": "backbone.onnx", "inputs": ["images", "multipliers"], "outputs": feat_names,
                     "blocks": blocks, "feature_shapes": {n: list(f.shape[1:]) for n, f in zip(feat_names, feats)}},
        "embedding": {"outputs": feat_names, "size": model.embedding_size,
                      "definition": "mtml_core.model.token_features (arch " + cfg.arch + ")"},
        "heads": heads,
        "folded": folded_doc,
        "fold_source": fold_source,
        "model": cfg.to_dict(),
        "checkpoint": {"dir": MODEL_DIR, "weights": f"{MODEL_DIR}/{WEIGHTS}", "config": f"{MODEL_DIR}/{CONFIG}"},
        "files": {rel: sha256_file(out / rel) for rel in files},
    }
    if folded_doc:
        doc["folded_multipliers"] = FOLDED_MULTIPLIERS
    path = out / MANIFEST
    write_json_atomic(path, doc)
    return path


def export_run(run_dir: str | Path, out_dir: str | Path, *, fold: Mapping[str, torch.Tensor | None] | None = None,
               fold_source: str | None = None, opset: int = OPSET) -> Path:
    """Load a checkpoint directory and export it (see :func:`export_model`)."""
    model, _ = load_checkpoint(run_dir)
    return export_model(model, out_dir, checkpoint_dir=run_dir, fold=fold, fold_source=fold_source, opset=opset)
