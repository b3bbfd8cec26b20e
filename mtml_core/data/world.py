"""Fresh frames of sampled environments for the product model: one environment episode per item, every label.

`WorldEpisodes(split, ...)[i]` samples environment i of the split's distribution (`sampler.sample_spec`), or takes
the i-th of a fixed list of specs, renders K support + Q query frames of it (new frame seeds every item) and returns
normalised images with depth (NaN where invalid or beyond ``max_depth``), normals, vanishing directions and the
place type (the geometry family, the named scene class). Training reads it through a `torch.utils.data`
DataLoader with worker processes (`world_loader`), so rendering overlaps the optimiser. `world_batch` turns a
collated list of environment episodes into the meta-batch of :class:`mtml_core.meta.MetaLearner`: each domain task
gets the T environment episodes; the class task one episode whose support is frame 0 of every environment (one
labelled example per place) and whose query is all other frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mtml_core import preprocess
from mtml_core.data.categories import FAMILIES
from mtml_core.data.sample import Frame
from mtml_core.data.sampler import sample_spec
from mtml_core.data.spec import EnvSpec
from mtml_core.data.synth import render_frame

PLACE_TYPES = FAMILIES  # the named scene classes of the built-in world
DEFAULT_MAX_DEPTH = 80.0


def place_type(frame: Frame) -> int:
    """Index in :data:`PLACE_TYPES` of a synthetic frame's geometry family."""
    return PLACE_TYPES.index(str(frame.category_name).split("/")[0])


def photometric(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and per-channel gain jitter (uint8 in, uint8 out)."""
    x = rgb.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.6, 1.4)
    x = (x - x.mean()) * rng.uniform(0.7, 1.3) + x.mean() + rng.uniform(-25, 25)
    x = x * rng.uniform(0.9, 1.1, size=3)
    return np.clip(x, 0, 255).astype(np.uint8)


def episode_tensors(frames: Sequence[Frame], mean: Sequence[float], std: Sequence[float],
                    max_depth: float) -> dict[str, torch.Tensor]:
    """Images and every label of some frames: x, depth (beyond ``max_depth`` NaN), normals, vp, class."""
    depth = preprocess.depth_within(preprocess.frame_labels("depth", frames), max_depth)
    return {"x": preprocess.frames_to_tensor(frames, None, mean, std), "depth": depth,
            "normals": preprocess.frame_labels("normals", frames), "vp": preprocess.frame_labels("vp", frames),
            "class": torch.tensor([place_type(f) for f in frames], dtype=torch.int64)}


class WorldEpisodes(Dataset):
    """Item i: K + Q fresh frames of one environment (sampled from ``split``'s distribution, or ``specs[i % n]``)."""

    def __init__(self, split: str, k_shot: int, n_query: int, size: Sequence[int] = (96, 128),
                 mean: Sequence[float] = preprocess.MEAN, std: Sequence[float] = preprocess.STD, seed: int = 0,
                 length: int = 10 ** 9, specs: Sequence[EnvSpec] | None = None, augment: bool = False,
                 max_depth: float = DEFAULT_MAX_DEPTH) -> None:
        if k_shot < 1 or n_query < 0:
            raise ValueError(f"need k_shot >= 1 and n_query >= 0, got {k_shot}, {n_query}")
        if not max_depth > 0:
            raise ValueError(f"max_depth must be > 0 metres, got {max_depth}")
        self.split, self.k, self.q, self.size = split, int(k_shot), int(n_query), tuple(size)
        self.mean, self.std, self.seed, self.length = mean, std, int(seed), int(length)
        self.specs, self.augment, self.max_depth = list(specs) if specs else None, augment, float(max_depth)

    def __len__(self) -> int:
        return self.length

    def spec(self, i: int) -> EnvSpec:
        """The environment of item ``i``."""
        if self.specs:
            return self.specs[i % len(self.specs)]
        return sample_spec(self.seed * 1_000_003 + i, self.split)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        rng = np.random.default_rng([0x3D, self.seed, int(i)])
        spec = self.spec(i)
        seeds = rng.choice(1 << 30, self.k + self.q, replace=False)
        frames = [render_frame(spec, int(s), self.size) for s in seeds]
        if self.augment:
            frames = [f.with_(rgb=photometric(f.rgb, rng)) for f in frames]
        return episode_tensors(frames, self.mean, self.std, self.max_depth)


def collate_envs(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack environment episodes on a new dim 0 (T, K + Q, ...)."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def world_loader(dataset: WorldEpisodes, envs_per_step: int, start_step: int = 0, workers: int = 1) -> DataLoader:
    """Batches of ``envs_per_step`` environment episodes, from step ``start_step`` on (resumable: item indices are
    ``step * envs_per_step + j``)."""
    indices = range(start_step * envs_per_step, len(dataset))
    return DataLoader(dataset, batch_size=envs_per_step, sampler=indices, num_workers=workers,
                      collate_fn=collate_envs, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)


def world_batch(envs: dict[str, torch.Tensor], tasks: Sequence[str], k_shot: int,
                device: torch.device | str = "cpu") -> dict[str, tuple[torch.Tensor, ...]]:
    """The meta-batch {task: (support_x, support_y, query_x, query_y)} of collated environment episodes."""
    x = envs["x"].to(device)
    out = {}
    for task in tasks:
        y = envs[task].to(device)
        if task == "class":  # one episode: one labelled frame per environment, the other frames as queries
            out[task] = (x[None, :, 0], y[None, :, 0], x[None, :, 1:].flatten(1, 2), y[None, :, 1:].flatten(1, 2))
        else:
            out[task] = (x[:, :k_shot], y[:, :k_shot], x[:, k_shot:], y[:, k_shot:])
    return out
