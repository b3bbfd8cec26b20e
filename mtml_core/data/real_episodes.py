"""Meta-training episodes from real data: K support + Q query frames of one domain of a data spec.

A domain is one RGB-D sequence, room or dataset split of a spec's source (:class:`mtml_core.data.sources.Domain`);
an episode of task t draws a domain among those that label t (a task a source does not label is simply absent
from its episodes), weighted as :func:`mtml_core.data.sources.task_domains` says (a source's ``weight`` shared
among its domains), then K + Q distinct frames of it. Frames are resized to the
network's input first (rgb by area, depth by nearest neighbour, K scaled) and real normals are pseudo ground truth
fitted at that size (:mod:`mtml_core.data.pseudo_normals`); depth beyond ``max_depth`` is invalid, as in the
built-in world. Domains with fewer than K + Q frames cannot make an episode and are left out (named in the error
when none is left).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtml_core import preprocess
from mtml_core.data.sources import Domain, Source, task_domains

Episode = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class RealEpisodes:
    """Episodes of ``task`` from the domains of ``sources`` in ``split`` (see the module docstring)."""

    def __init__(self, sources: Sequence[Source], split: str, task: str, k_shot: int, n_query: int,
                 size: Sequence[int], mean: Sequence[float], std: Sequence[float], max_depth: float) -> None:
        if k_shot < 1 or n_query < 1:
            raise ValueError(f"real episodes need k_shot >= 1 and n_query >= 1, got {k_shot}, {n_query}")
        self.task, self.k, self.q, self.size = task, int(k_shot), int(n_query), tuple(size)
        self.mean, self.std, self.max_depth = mean, std, float(max_depth)
        labelled = task_domains([s for s in sources if s.loader != "synth"], task, split)
        self.domains: list[Domain] = [d for d, _ in labelled if len(d) >= self.k + self.q]
        if not self.domains:
            names = [f"{d.source}/{d.name} ({len(d)} frames)" for d, _ in labelled] or ["none"]
            raise ValueError(f"no real {split} domain labels {task!r} with at least k_shot + n_query = "
                             f"{self.k + self.q} frames: {', '.join(names)}")
        weights = np.array([w for d, w in labelled if len(d) >= self.k + self.q], np.float64)
        self.p = weights / weights.sum()

    def sample(self, rng: np.random.Generator) -> Episode:
        """One episode: (support_x (K, 3, H, W), support_y, query_x (Q, 3, H, W), query_y)."""
        domain = self.domains[int(rng.choice(len(self.domains), p=self.p))]
        idx = rng.choice(len(domain), self.k + self.q, replace=False)
        frames = [domain.frame(int(i), self.size) for i in idx]
        x = preprocess.frames_to_tensor(frames, None, self.mean, self.std)
        y = preprocess.frame_labels(self.task, frames)
        if self.task == "depth":
            y = preprocess.depth_within(y, self.max_depth)
        return x[:self.k], y[:self.k], x[self.k:], y[self.k:]

    def batch(self, rng: np.random.Generator, n: int) -> Episode:
        """``n`` episodes stacked on a new leading dimension (T, ...), as a meta-batch's task entry."""
        eps = [self.sample(rng) for _ in range(n)]
        return tuple(torch.stack([e[j] for e in eps]) for j in range(4))  # type: ignore[return-value]
