"""Support buffers: a bounded, thread-safe list of validated frames per named environment (oldest dropped).

Frames are held at the network's input size only (never the raw camera images or depth labels), bounded in count
per environment and in bytes over all environments.
"""

from __future__ import annotations

import threading
from collections import deque

import torch

from mtml_core.adapt.labels import SupportFrame
from mtml_core.adapt.profiles import check_name

DEFAULT_MAX_BYTES = 512 * 2**20  # all environments together (a 128x96 frame with every label: ~0.35 MiB)


def frame_bytes(frame: SupportFrame) -> int:
    """Bytes a support frame's tensors hold."""
    tensors = (frame.image, frame.depth, frame.normals, frame.vp)
    return sum(t.element_size() * t.nelement() for t in tensors if isinstance(t, torch.Tensor))


class SupportBuffer:
    """At most ``capacity`` frames per environment (adding to a full one drops its oldest frame) and ``max_bytes``
    over all environments: the environment added to drops its oldest frames to make room, and a frame that does not
    fit even then (other environments hold the space) is refused with ValueError."""

    def __init__(self, capacity: int = 50, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if capacity < 1:
            raise ValueError(f"support buffer capacity must be >= 1, got {capacity}")
        if max_bytes < 1:
            raise ValueError(f"support buffer max_bytes must be >= 1, got {max_bytes}")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._frames: dict[str, deque[SupportFrame]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, env: str, frame: SupportFrame) -> int:
        """Append a frame; returns the environment's frame count."""
        env = check_name(env)
        size = frame_bytes(frame)
        with self._lock:
            frames = self._frames.get(env, deque())
            others = self._bytes - sum(map(frame_bytes, frames))
            if others + size > self.max_bytes:
                raise ValueError(f"support buffer full: other environments hold {others / 2**20:.1f} MiB of "
                                 f"{self.max_bytes / 2**20:.1f} MiB (adapt or clear them first)")
            frames.append(frame)
            self._bytes += size
            while len(frames) > self.capacity or self._bytes > self.max_bytes:
                self._bytes -= frame_bytes(frames.popleft())
            self._frames[env] = frames
            return len(frames)

    def frames(self, env: str) -> list[SupportFrame]:
        """A snapshot of the environment's frames (oldest first); empty if none."""
        with self._lock:
            return list(self._frames.get(check_name(env), ()))

    def count(self, env: str) -> int:
        """Number of frames held for ``env``."""
        with self._lock:
            return len(self._frames.get(check_name(env), ()))

    @property
    def nbytes(self) -> int:
        """Bytes held over all environments."""
        with self._lock:
            return self._bytes

    def clear(self, env: str) -> None:
        """Drop every frame of ``env``."""
        with self._lock:
            self._bytes -= sum(map(frame_bytes, self._frames.pop(check_name(env), ())))

    def environments(self) -> list[str]:
        """Environments with at least one frame, sorted."""
        with self._lock:
            return sorted(k for k, v in self._frames.items() if v)
