"""Seeded episode samplers: N-way K-shot classification, K-shot support/query domain episodes.

- `ClassEpisodeSampler(source, n_way, k_shot, n_query)`: classes drawn from one split's
  `ClassSource` (synthetic scene categories, Omniglot, mini-ImageNet, Places folders).
- `DomainEpisodeSampler(envs, task, k_shot, n_query)`: one environment per episode, support and
  query frames drawn from a per-environment pool of frame seeds (rendered once, then cached in a
  `FrameCache` that samplers of several tasks may share); tasks draw independently.
- `EpisodeDataset` + `episode_loader`: the torch DataLoader path (workers allowed); episode i is
  a pure function of (seed, i), so results do not depend on the number of workers.
  `collate` stacks a meta-batch of episodes on a new dim 0.
Support/query examples are ordered class-major (labels 0,0,..,1,1,..).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mtml_core import preprocess
from mtml_core.data.categories import categories
from mtml_core.data.sample import Frame
from mtml_core.data.spec import EnvSpec, builtin_envs, category_spec
from mtml_core.data.synth import render_frame

DOMAIN_TASKS = ("depth", "normals", "vp")


@dataclass
class ClassEpisode:
    """support_x (N*K, 3, H, W), support_y (N*K,), query_x (N*Q, 3, H, W), query_y (N*Q,); stacked: +dim 0."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    class_names: list


@dataclass
class DomainEpisode:
    """support_x (K, 3, H, W), support_y (task label tensor), query_x, query_y; stacked: +dim 0."""

    task: str
    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    env: str | list


class ClassSource(Protocol):
    """Labelled images of one split, by class name."""

    split: str

    def class_names(self) -> list[str]: ...

    def num_items(self, name: str) -> int: ...

    def rgb(self, name: str, index: int) -> np.ndarray: ...


class SynthCategories:
    """Scene categories of the synthetic world as a ClassSource: item i of a category is frame i of
    its category spec (a pool of `pool` frames per category, rendered lazily and cached)."""

    def __init__(self, split: str, size: Sequence[int] = (84, 84), pool: int = 32) -> None:
        self.split, self.size, self.pool = split, tuple(size), int(pool)
        self._names = categories(split)
        self._specs = {n: category_spec(n, split) for n in self._names}
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def class_names(self) -> list[str]:
        return list(self._names)

    def num_items(self, name: str) -> int:
        return self.pool

    def rgb(self, name: str, index: int) -> np.ndarray:
        key = (name, index)
        if key not in self._cache:
            if name not in self._specs or not 0 <= index < self.pool:
                raise ValueError(f"no item {index} of category {name!r} in split {self.split!r}")
            self._cache[key] = render_frame(self._specs[name], index, self.size).rgb
        return self._cache[key]


class ClassEpisodeSampler:
    """N-way K-shot episodes from a ClassSource; `sample(seed)` is deterministic."""

    def __init__(self, source: ClassSource, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                 size: Sequence[int] | None = (84, 84), mean: Sequence[float] = preprocess.MEAN,
                 std: Sequence[float] = preprocess.STD) -> None:
        self.source, self.n_way, self.k_shot, self.n_query = source, int(n_way), int(k_shot), int(n_query)
        self.size, self.mean, self.std = size, mean, std
        names = source.class_names()
        if self.n_way < 1 or self.k_shot < 1 or self.n_query < 0:
            raise ValueError(f"need n_way >= 1, k_shot >= 1, n_query >= 0; got {n_way}, {k_shot}, {n_query}")
        if len(names) < self.n_way:
            raise ValueError(f"{self.n_way}-way episodes need >= {self.n_way} classes, source has {len(names)}")
        self.classes = [n for n in names if source.num_items(n) >= self.k_shot + self.n_query]
        if len(self.classes) < self.n_way:
            raise ValueError(f"only {len(self.classes)} classes have >= {self.k_shot + self.n_query} items")

    def sample(self, seed: int) -> ClassEpisode:
        rng = np.random.default_rng([0xC1A55, int(seed)])
        chosen = [self.classes[i] for i in rng.choice(len(self.classes), self.n_way, replace=False)]
        support, query = [], []
        for name in chosen:
            items = rng.choice(self.source.num_items(name), self.k_shot + self.n_query, replace=False)
            imgs = [preprocess.resize_rgb(self.source.rgb(name, int(i)), self.size) if self.size else
                    self.source.rgb(name, int(i)) for i in items]
            support += imgs[:self.k_shot]
            query += imgs[self.k_shot:]
        labels = np.arange(self.n_way)
        return ClassEpisode(
            support_x=preprocess.to_tensor(np.stack(support), None, self.mean, self.std),
            support_y=preprocess.class_to_tensor(np.repeat(labels, self.k_shot)),
            query_x=preprocess.to_tensor(np.stack(query), None, self.mean, self.std) if query else
            torch.zeros((0, 3, *support[0].shape[:2])),
            query_y=preprocess.class_to_tensor(np.repeat(labels, self.n_query)),
            class_names=chosen)


class FrameCache:
    """Frames of environments by (env name, frame seed), rendered once at `size` (a pool per env)."""

    def __init__(self, size: Sequence[int] = (96, 128), pool: int = 32) -> None:
        self.size, self.pool = tuple(size), int(pool)
        self._frames: dict[tuple[str, int], Frame] = {}

    def get(self, spec: EnvSpec, index: int) -> Frame:
        key = (spec.name, index)
        if key not in self._frames:
            if not 0 <= index < self.pool:
                raise ValueError(f"frame index {index} outside the pool of {self.pool}")
            self._frames[key] = render_frame(spec, index, self.size)
        return self._frames[key]


class DomainEpisodeSampler:
    """K-shot support / query episodes of one task per environment; `sample(seed)` is deterministic.

    `envs` is a split name ("train" / "val" / "test": the built-in environments of that split) or
    a list of EnvSpecs. Support and query frames are distinct frames of the same environment.
    """

    def __init__(self, envs: str | Sequence[EnvSpec], task: str, k_shot: int = 5, n_query: int = 15,
                 cache: FrameCache | None = None, mean: Sequence[float] = preprocess.MEAN,
                 std: Sequence[float] = preprocess.STD) -> None:
        if task not in DOMAIN_TASKS:
            raise ValueError(f"domain task must be one of {DOMAIN_TASKS}, got {task!r}")
        self.envs = builtin_envs(envs) if isinstance(envs, str) else list(envs)
        if not self.envs:
            raise ValueError("DomainEpisodeSampler needs at least one environment")
        self.task, self.k_shot, self.n_query = task, int(k_shot), int(n_query)
        self.cache = cache or FrameCache()
        if self.k_shot < 1 or self.n_query < 0 or self.k_shot + self.n_query > self.cache.pool:
            raise ValueError(f"k_shot + n_query = {self.k_shot + self.n_query} must be in [1, pool="
                             f"{self.cache.pool}] with k_shot >= 1")
        self.mean, self.std = mean, std

    def sample(self, seed: int) -> DomainEpisode:
        rng = np.random.default_rng([0xD0A1, DOMAIN_TASKS.index(self.task), int(seed)])
        spec = self.envs[int(rng.integers(len(self.envs)))]
        idx = rng.choice(self.cache.pool, self.k_shot + self.n_query, replace=False)
        frames = [self.cache.get(spec, int(i)) for i in idx]
        sup, qry = frames[:self.k_shot], frames[self.k_shot:]
        return DomainEpisode(
            task=self.task,
            support_x=preprocess.frames_to_tensor(sup, None, self.mean, self.std),
            support_y=preprocess.frame_labels(self.task, sup),
            query_x=preprocess.frames_to_tensor(qry, None, self.mean, self.std),
            query_y=preprocess.frame_labels(self.task, qry),
            env=spec.name)


def _stack(items: list) -> object:
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(items)
    if isinstance(first, dict):
        return {k: _stack([it[k] for it in items]) for k in first}
    if isinstance(first, (ClassEpisode, DomainEpisode)):
        if len({type(it) for it in items}) != 1 or len({getattr(it, "task", "") for it in items}) != 1:
            raise ValueError("collate: a meta-batch must hold episodes of one kind and task")
        return type(first)(**{f.name: first.task if f.name == "task" else _stack([getattr(it, f.name) for it in items])
                              for f in fields(first)})
    return list(items)


def collate(episodes: list) -> object:
    """Stack a meta-batch: episodes (or dicts of episodes) -> one of the same type with a new dim 0."""
    if not episodes:
        raise ValueError("collate needs at least one episode")
    return _stack(list(episodes))


class EpisodeDataset(Dataset):
    """Episode i = sampler.sample(seed * 1_000_003 + i) (or a dict over several samplers)."""

    def __init__(self, sampler: object, length: int, seed: int = 0) -> None:
        self.sampler, self.length, self.seed = sampler, int(length), int(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> object:
        if not 0 <= i < self.length:
            raise IndexError(i)
        s = self.seed * 1_000_003 + i
        if isinstance(self.sampler, dict):
            return {k: v.sample(s) for k, v in self.sampler.items()}
        return self.sampler.sample(s)


def episode_loader(sampler: object, num_episodes: int, batch_size: int = 1, seed: int = 0,
                   num_workers: int = 0) -> DataLoader:
    """A DataLoader of meta-batches (collated episodes); `sampler` may be a dict task -> sampler."""
    return DataLoader(EpisodeDataset(sampler, num_episodes, seed), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, collate_fn=collate, persistent_workers=num_workers > 0)
