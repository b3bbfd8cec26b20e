"""Run configuration for mtml-train / mtml-eval: YAML file + ``--set section.key=value`` overrides, validated.

Sections: ``model`` (:class:`mtml_core.config.ModelConfig` fields; attention settings follow ``meta.method``),
``meta`` (:class:`mtml_core.meta.MetaConfig`), ``data``, ``train`` and ``eval`` (the keys in :data:`DEFAULTS`).
Unknown sections or keys raise ValueError naming them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mtml_core.config import ModelConfig
from mtml_core.meta import MetaConfig, model_config_for

SOURCES = ("synth", "omniglot", "world", "spec")
DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {
        "source": "synth",  # synth: built-in environments; world: sampled environments (product); omniglot: Table 2;
        # spec: class episodes from the class sources of data.spec, split as the spec says (MiniPlaces Table 2)
        "omniglot_train": "../shared/data/omniglot/images_background_small1.zip",
        "omniglot_test": "../shared/data/omniglot/images_background_small2.zip",
        "omniglot_val_fraction": 0.2,  # alphabets of the train archive held out for validation
        "k_shot": 5,
        "class_query": 3,  # query examples per class
        "domain_query": 5,  # query frames per domain episode
        "meta_batch": 1,  # episodes per task per meta-step (global, over all ranks)
        "pool": 32,  # frames rendered per environment / category
        "envs_per_step": 4,  # world: environments per meta-step (fresh frames every step)
        "workers": 1,  # world: DataLoader worker processes rendering frames
        "augment": True,  # world: photometric augmentation of training images
        "max_depth": 80.0,  # metres; deeper label pixels are invalid (labels, losses, metrics)
        "spec": None,  # a data spec (mtml_core.data.sources): world: its class sources add named real categories;
        # spec: its class sources are the episodes' categories (train / val / test by the spec's split)
        "class_images": 32,  # world + spec: real named-category images added to the class query every step
        "real_episodes": 1,  # world + spec: episodes per step of each task from the spec's real depth / normals / vp
        # domains (an RGB-D sequence or room = one domain), beside the sampled environments' ones
    },
    "train": {
        "steps": 1000,
        "seed": 0,
        "log_every": 1,
        "val_every": 50,
        "val_episodes": 4,
        "save_every": 50,
        "threads": 0,  # torch threads (0: torch's default)
        "retain_heap": True,  # keep freed CPU memory for reuse: faster steps, higher resident memory (mtml_core.heap)
        "max_minutes": None,  # stop (and save) after this wall time
        "lr_schedule": "constant",  # constant | cosine (warm-up, then cosine decay over train.steps)
        "bf16": False,  # bfloat16 autocast for the forward pass (CPUs with AVX512-BF16, GPUs)
    },
    "eval": {
        "episodes": 40,
        "k_shot": 5,
        "query": 5,
        "adapt_steps": None,  # None: meta.inner_steps
        "adapt_lr": {},  # per-task test-time rate α; missing: meta.task_inner_lr / meta.inner_lr
        "seed": 1234,
        "batchnorm": "running",  # running: deployment statistics; batch: each support/query set's own (transductive)
    },
}
SECTIONS = ("model", "meta", *DEFAULTS)


def default_config_path() -> Path:
    """training/configs/default.yaml, the product recipe (shipped as package data)."""
    return Path(str(resources.files("training") / "configs" / "default.yaml"))


def paper_config_path() -> Path:
    """training/configs/paper.yaml: the paper's Conv-4 preset on the built-in environments (table reproductions)."""
    return Path(str(resources.files("training") / "configs" / "paper.yaml"))


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["meta.inner_steps=5", "model.tasks=[class,vp]"]`` → nested dict (values parsed as YAML)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"--set {item!r}: expected section.key=value (e.g. meta.inner_steps=5)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {item!r}: value is not valid YAML: {exc}") from exc
        out.setdefault(section, {})[name] = value
    return out


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Section-wise merge (update wins), refusing unknown sections."""
    out = copy.deepcopy(dict(base))
    for section, values in update.items():
        if section not in SECTIONS:
            raise ValueError(f"config: unknown section {section!r}; expected one of {list(SECTIONS)}")
        if not isinstance(values, Mapping):
            raise ValueError(f"config: section {section!r} must be a mapping, got {type(values).__name__}")
        out.setdefault(section, {}).update(copy.deepcopy(dict(values)))
    return out


def resolve(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults, validate every section, and return the normalised config (plain YAML-safe types)."""
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise ValueError(f"config: unknown section(s) {unknown}; expected {list(SECTIONS)}")
    meta = MetaConfig.from_dict(doc.get("meta", {}))
    model = model_config_for(meta.method, ModelConfig.from_dict(doc.get("model", {})))
    # per-task settings of tasks this model does not have (e.g. the default file's four) do not apply
    for name in ("task_weights", "task_inner_lr"):
        setattr(meta, name, {t: v for t, v in getattr(meta, name).items() if t in model.tasks})
    out: dict[str, Any] = {"model": model.to_dict(), "meta": meta.to_dict()}
    for section, defaults in DEFAULTS.items():
        given = dict(doc.get(section) or {})
        bad = sorted(set(given) - set(defaults))
        if bad:
            raise ValueError(f"config: unknown key(s) {bad} in section {section!r}; known: {sorted(defaults)}")
        out[section] = {**copy.deepcopy(defaults), **given}
    for section, key in (("train", "max_minutes"), ("data", "omniglot_val_fraction"), ("data", "max_depth")):
        value = out[section][key]
        if value is not None:  # YAML reads 1e-3 (no dot) as a string
            try:
                out[section][key] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{section}.{key}: expected a number, got {value!r}") from None
    check(out)
    return out


def check(cfg: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first invalid data/train/eval value."""
    data, train, ev = cfg["data"], cfg["train"], cfg["eval"]
    if data["source"] not in SOURCES:
        raise ValueError(f"data.source: {data['source']!r} is not one of {list(SOURCES)}")
    if data["source"] in ("omniglot", "spec") and tuple(cfg["model"]["tasks"]) != ("class",):
        raise ValueError(f"data.source={data['source']} has class labels only; model.tasks must be [class], "
                         f"got {cfg['model']['tasks']}")
    if data["source"] == "spec" and not isinstance(data["spec"], str):
        raise ValueError(f"data.source=spec reads the class sources of a data spec: set data.spec to its file, "
                         f"got {data['spec']!r}")
    positive = [("data", "k_shot"), ("data", "meta_batch"), ("data", "pool"), ("train", "log_every"),
                ("train", "val_every"), ("train", "val_episodes"), ("train", "save_every"), ("eval", "episodes"),
                ("eval", "k_shot"), ("eval", "query")]
    for section, key in positive:
        value = cfg[section][key]
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{section}.{key}: must be a positive integer, got {value!r}")
    for section, key in (("data", "class_query"), ("data", "domain_query"), ("train", "steps"),
                         ("train", "threads")):
        value = cfg[section][key]
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{section}.{key}: must be an integer >= 0, got {value!r}")
    if data["k_shot"] + max(data["domain_query"], data["class_query"]) > data["pool"]:
        raise ValueError(f"data.pool={data['pool']} is smaller than k_shot + query")
    if data["source"] == "world":
        for key in ("envs_per_step", "workers"):
            if not isinstance(data[key], int) or data[key] < (2 if key == "envs_per_step" else 0):
                raise ValueError(f"data.{key}: must be an integer >= {2 if key == 'envs_per_step' else 0}, "
                                 f"got {data[key]!r}")
        for key in ("class_images", "real_episodes"):
            if not isinstance(data[key], int) or data[key] < 0:
                raise ValueError(f"data.{key}: must be an integer >= 0, got {data[key]!r}")
        if not isinstance(data["augment"], bool):
            raise ValueError(f"data.augment: must be true or false, got {data['augment']!r}")
    if data["spec"] is not None and (data["source"] not in ("world", "spec") or not isinstance(data["spec"], str)):
        raise ValueError(f"data.spec: a data spec file for data.source=world or spec runs, got {data['spec']!r} with "
                         f"data.source={data['source']!r}")
    if not float(data["max_depth"]) > 0:
        raise ValueError(f"data.max_depth: must be > 0 metres, got {data['max_depth']!r}")
    if not 0 <= float(data["omniglot_val_fraction"]) < 1:
        raise ValueError(f"data.omniglot_val_fraction: must be in [0, 1), got {data['omniglot_val_fraction']!r}")
    if train["lr_schedule"] not in ("constant", "cosine"):
        raise ValueError(f"train.lr_schedule: {train['lr_schedule']!r} is not one of ['constant', 'cosine']")
    if not isinstance(train["bf16"], bool):
        raise ValueError(f"train.bf16: must be true or false, got {train['bf16']!r}")
    if not isinstance(train["retain_heap"], bool):
        raise ValueError(f"train.retain_heap: must be true or false, got {train['retain_heap']!r}")
    if train["max_minutes"] is not None and not float(train["max_minutes"]) > 0:
        raise ValueError(f"train.max_minutes: must be > 0 or null, got {train['max_minutes']!r}")
    if ev["batchnorm"] not in ("running", "batch"):
        raise ValueError(f"eval.batchnorm: {ev['batchnorm']!r} is not one of ['running', 'batch']")
    if ev["adapt_steps"] is not None and (not isinstance(ev["adapt_steps"], int) or ev["adapt_steps"] < 0):
        raise ValueError(f"eval.adapt_steps: must be an integer >= 0 or null, got {ev['adapt_steps']!r}")
    bad = sorted(set(ev["adapt_lr"]) - set(cfg["model"]["tasks"]))
    if bad:
        raise ValueError(f"eval.adapt_lr: task(s) {bad} are not among model.tasks {cfg['model']['tasks']}")


def load(path: str | Path | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a YAML config (default: the shipped default.yaml), apply ``--set`` overrides, resolve."""
    path = Path(path) if path is not None else default_config_path()
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"config {path}: expected a mapping of sections")
    return resolve(merge(doc, parse_overrides(overrides)))


def model_config(cfg: Mapping[str, Any]) -> ModelConfig:
    """The ModelConfig of a resolved run config."""
    return ModelConfig.from_dict(cfg["model"])


def meta_config(cfg: Mapping[str, Any]) -> MetaConfig:
    """The MetaConfig of a resolved run config."""
    return MetaConfig.from_dict(cfg["meta"])
