"""Episode sources for training and evaluation, by split: the built-in world (default), Omniglot or a data spec.

Built-in world (``synth``): scene-class episodes from the split's categories, depth / normals / VP episodes from the
split's environments (train, val and test categories and environments are disjoint). Sampled world (``world``, the
product recipe): every step renders fresh frames of newly sampled environments in DataLoader workers
(:mod:`mtml_core.data.world`); the class task names the place type. Omniglot (class task only): split by
alphabet over the union of both archives (they may share alphabets): the alphabets only in the test archive are
the test split, the train archive's alphabets are split into train / val alphabets.
Data spec (``spec``, class task only): the categories of ``data.spec``'s class sources, split as the spec says
(``split: {by: category, ...}``: train / val / test categories disjoint, e.g. MiniPlaces for Table 2).
With ``data.spec`` (a data spec, :mod:`mtml_core.data.sources`), a world run's class task also names the real
categories of the spec's class sources (e.g. MiniPlaces): every step adds ``data.class_images`` of their training
images to the class query, labelled after the place types (:func:`named_classes`); and every task the spec's other
sources label (depth, normals, vp: RGB-D sequences, NYU / DIODE / KITTI, York Urban) gets ``data.real_episodes``
episodes of their training domains per step beside the sampled environments' (:func:`real_episodes`;
:mod:`mtml_core.data.real_episodes`).
A meta-batch of step s holds the global episodes ``s * meta_batch + j``; rank r of a world of size W takes the
episodes j ≡ r (mod W), so the union over ranks is the single-process meta-batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mtml_core.data.episodes import (
    ClassEpisodeSampler,
    DomainEpisodeSampler,
    FrameCache,
    SynthCategories,
    collate,
)
from mtml_core.data.loaders.omniglot import omniglot_union_splits
from mtml_core.data.named_images import NamedImages, category_names
from mtml_core.data.real_episodes import RealEpisodes
from mtml_core.data.sources import SpecClasses, load_sources
from mtml_core.data.world import PLACE_TYPES, WorldEpisodes, collate_envs, world_batch, world_loader
from mtml_core.meta import Batch

SPLITS = ("train", "val", "test")
Sampler = ClassEpisodeSampler | DomainEpisodeSampler


def class_source(cfg: Mapping[str, Any], split: str) -> Any:
    """The ClassSource of ``split``: synthetic scene categories, Omniglot alphabets, or a data spec's categories."""
    data, hw = cfg["data"], tuple(cfg["model"]["input_hw"])
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {list(SPLITS)}")
    if data["source"] in ("synth", "world"):  # world runs are evaluated (mtml-eval) on the built-in categories
        return SynthCategories(split, hw, data["pool"])
    if data["source"] == "spec":  # the spec's class sources, split as it says (by: category for held-out ones)
        return SpecClasses(spec_sources(cfg), split)
    frac = float(data["omniglot_val_fraction"])
    parts = omniglot_union_splits(data["omniglot_train"], data["omniglot_test"], frac)
    if split not in parts:
        raise ValueError(f"omniglot: no alphabets left for the {split!r} split (omniglot_val_fraction={frac})")
    return parts[split]


def samplers(cfg: Mapping[str, Any], split: str, k_shot: int | None = None, class_query: int | None = None,
             domain_query: int | None = None) -> dict[str, Sampler]:
    """One episode sampler per model task for ``split`` (shot/query counts default to the data section)."""
    data, model = cfg["data"], cfg["model"]
    k = data["k_shot"] if k_shot is None else k_shot
    cq = data["class_query"] if class_query is None else class_query
    dq = data["domain_query"] if domain_query is None else domain_query
    hw, mean, std = tuple(model["input_hw"]), model["mean"], model["std"]
    cache = FrameCache(hw, data["pool"])
    out: dict[str, Sampler] = {}
    for task in model["tasks"]:
        if task == "class":
            out[task] = ClassEpisodeSampler(class_source(cfg, split), model["n_way"], k, cq, size=hw, mean=mean,
                                            std=std)
        else:
            out[task] = DomainEpisodeSampler(split, task, k, dq, cache, mean, std)
    return out


def episode_seed(seed: int, index: int) -> int:
    """Seed of global episode ``index`` in a run seeded ``seed``."""
    return int(seed) * 1_000_003 + int(index)


def make_batch(sampler_map: Mapping[str, Sampler], seeds: Sequence[int], device: torch.device | str = "cpu") -> Batch:
    """The meta-batch ``{task: (support_x, support_y, query_x, query_y)}`` of the given episode seeds."""
    if not seeds:
        raise ValueError("make_batch: no episode seeds")
    out = {}
    for task, sampler in sampler_map.items():
        ep = collate([sampler.sample(s) for s in seeds])
        out[task] = tuple(t.to(device) for t in (ep.support_x, ep.support_y, ep.query_x, ep.query_y))
    return out


def step_seeds(seed: int, step: int, meta_batch: int, rank: int = 0, world: int = 1) -> list[int]:
    """The episode seeds rank ``rank`` trains on at ``step`` (its share of the global meta-batch)."""
    if meta_batch % world:
        raise ValueError(f"data.meta_batch={meta_batch} must be divisible by the number of processes ({world})")
    return [episode_seed(seed, step * meta_batch + j) for j in range(rank, meta_batch, world)]


def spec_sources(cfg: Mapping[str, Any]) -> list:
    """The opened sources of ``data.spec``. A ``data.source=spec`` run (class episodes only) refuses sources that
    label no class by name; a world run reads them through :func:`real_episodes`."""
    sources = load_sources(cfg["data"]["spec"])
    other = [s.name for s in sources if s.loader != "synth" and "class" not in s.tasks]
    if other and cfg["data"]["source"] != "world":
        raise ValueError(f"data.spec {cfg['data']['spec']}: a data.source=spec run reads the class sources of a "
                         f"spec; sources {other} label depth / normals / vp only: remove them, or train them beside "
                         f"the world (data.source=world)")
    return sources


def class_sources(cfg: Mapping[str, Any]) -> list:
    """The spec's real class sources (named categories), none without a spec."""
    if not cfg["data"]["spec"]:
        return []
    return [s for s in spec_sources(cfg) if "class" in s.tasks and s.loader != "synth"]


def real_episodes(cfg: Mapping[str, Any], split: str) -> dict[str, RealEpisodes]:
    """Per domain task of the model, the real episodes of the spec's sources that label it in ``split`` (world
    runs with a spec; empty without one or with ``data.real_episodes`` 0)."""
    data, model = cfg["data"], cfg["model"]
    if data["source"] != "world" or not data["spec"] or data["real_episodes"] < 1:
        return {}
    sources = [s for s in spec_sources(cfg) if s.loader != "synth" and "class" not in s.tasks]
    out = {}
    for task in model["tasks"]:
        if task != "class" and any(task in s.tasks and s.domains(split) for s in sources):
            out[task] = RealEpisodes(sources, split, task, data["k_shot"], data["domain_query"], model["input_hw"],
                                     model["mean"], model["std"], data["max_depth"])
    return out


def with_real_episodes(batch: Batch, real: Mapping[str, RealEpisodes], rng: np.random.Generator, n: int,
                       device: torch.device | str = "cpu") -> Batch:
    """``batch`` with ``n`` real episodes appended to each task that ``real`` has (on the episode dimension)."""
    out = dict(batch)
    for task, episodes in real.items():
        if task in out and n > 0:
            extra = episodes.batch(rng, n)
            out[task] = tuple(torch.cat([a, b.to(device)]) for a, b in zip(out[task], extra, strict=True))
    return out


def named_classes(cfg: Mapping[str, Any]) -> list[str]:
    """The class head's named rows of a world run: the place types, then the spec's other real categories (one
    sharing a place type's name, such as MiniPlaces' "corridor", trains that row)."""
    if cfg["data"]["source"] != "world":
        raise ValueError("named classes belong to data.source=world runs")
    sources = class_sources(cfg)
    return category_names(sources, "train", PLACE_TYPES) if sources else list(PLACE_TYPES)


def named_images(cfg: Mapping[str, Any], split: str) -> NamedImages | None:
    """The spec's real named-category images of ``split`` labelled by the model's class rows, or None without a
    spec."""
    sources = class_sources(cfg) if "class" in cfg["model"]["tasks"] else []
    if not sources:
        return None
    return NamedImages.from_sources(sources, split, cfg["model"]["input_hw"], cfg["model"]["class_names"]
                                    or PLACE_TYPES)


def with_named_images(batch: Batch, images: NamedImages | None, rng: np.random.Generator | None, n: int,
                      cfg: Mapping[str, Any], device: torch.device | str = "cpu") -> Batch:
    """``batch`` with ``n`` named real images appended to the class task's query (random and augmented with
    ``rng``; the first ``n`` centre crops without)."""
    if images is None or "class" not in batch or n < 1:
        return batch
    idx = rng.integers(0, len(images), n) if rng is not None else np.linspace(0, len(images) - 1, n).astype(int)
    x, y = images.batch(idx, rng, cfg["model"]["mean"], cfg["model"]["std"])
    sx, sy, qx, qy = batch["class"]
    return {**batch, "class": (sx, sy, torch.cat([qx, x[None].to(device)], 1), torch.cat([qy, y[None].to(device)], 1))}


def class_names(cfg: Mapping[str, Any]) -> dict[str, list[str]]:
    """The class names of every split (recorded in the run's config.yaml); empty without a class task."""
    if "class" not in cfg["model"]["tasks"]:
        return {}
    if cfg["data"]["source"] == "world":
        return {split: list(cfg["model"]["class_names"] or PLACE_TYPES) for split in SPLITS}
    return {split: list(class_source(cfg, split).class_names()) for split in SPLITS}


def world_episodes(cfg: Mapping[str, Any], split: str, seed: int, augment: bool = False) -> WorldEpisodes:
    """Sampled-world environment episodes of ``split`` (K support + domain_query query frames each)."""
    data, model = cfg["data"], cfg["model"]
    return WorldEpisodes(split, data["k_shot"], data["domain_query"], model["input_hw"], model["mean"], model["std"],
                         seed=seed, augment=augment, max_depth=float(data["max_depth"]))


def train_batches(cfg: Mapping[str, Any], tasks: Sequence[str], start_step: int, rank: int = 0, world: int = 1,
                  device: torch.device | str = "cpu") -> Iterator[Batch]:
    """The training meta-batches of this rank from ``start_step`` on (resumable: step s is always the same)."""
    data, seed = cfg["data"], int(cfg["train"]["seed"])
    if data["source"] == "world":
        images = named_images(cfg, "train")
        real = real_episodes(cfg, "train")
        dataset = world_episodes(cfg, "train", seed * 7919 + rank, augment=data["augment"])
        for step, envs in enumerate(world_loader(dataset, data["envs_per_step"], start_step, data["workers"]),
                                    start_step):
            rng = np.random.default_rng([seed, rank, step])
            batch = with_named_images(world_batch(envs, tasks, data["k_shot"], device), images, rng,
                                      data["class_images"], cfg, device)
            yield with_real_episodes(batch, real, rng, data["real_episodes"], device)
        return
    train_samplers = {t: s for t, s in samplers(cfg, "train").items() if t in tasks}
    step = start_step
    while True:
        yield make_batch(train_samplers, step_seeds(seed, step, data["meta_batch"], rank, world), device)
        step += 1


def fixed_batch(cfg: Mapping[str, Any], split: str, seed: int, n: int, tasks: Sequence[str],
                device: torch.device | str = "cpu") -> Batch:
    """A fixed meta-batch of ``split`` (validation, the attention prior): ``n`` episodes (``world``: environments)."""
    if cfg["data"]["source"] == "world":
        dataset = world_episodes(cfg, split, seed)
        batch = world_batch(collate_envs([dataset[j] for j in range(max(n, 2))]), tasks, cfg["data"]["k_shot"],
                            device)
        batch = with_named_images(batch, named_images(cfg, split), None, cfg["data"]["class_images"], cfg, device)
        real = {t: r for t, r in real_episodes(cfg, split).items() if t in tasks}
        return with_real_episodes(batch, real, np.random.default_rng([seed, 0x4EA1]), cfg["data"]["real_episodes"],
                                  device)
    chosen = {t: s for t, s in samplers(cfg, split).items() if t in tasks}
    return make_batch(chosen, [episode_seed(seed, j) for j in range(n)], device)
