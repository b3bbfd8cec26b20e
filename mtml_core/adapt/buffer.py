"""Support buffers: a bounded, thread-safe list of validated frames per named environment (oldest dropped)."""

from __future__ import annotations

import threading
from collections import deque

from mtml_core.adapt.labels import SupportFrame
from mtml_core.adapt.profiles import check_name


class SupportBuffer:
    """At most ``capacity`` frames per environment; adding to a full buffer drops its oldest frame."""

    def __init__(self, capacity: int = 50) -> None:
        if capacity < 1:
            raise ValueError(f"support buffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._frames: dict[str, deque[SupportFrame]] = {}
        self._lock = threading.Lock()

    def add(self, env: str, frame: SupportFrame) -> int:
        """Append a frame; returns the environment's frame count."""
        env = check_name(env)
        with self._lock:
            frames = self._frames.setdefault(env, deque(maxlen=self.capacity))
            frames.append(frame)
            return len(frames)

    def frames(self, env: str) -> list[SupportFrame]:
        """A snapshot of the environment's frames (oldest first); empty if none."""
        with self._lock:
            return list(self._frames.get(check_name(env), ()))

    def count(self, env: str) -> int:
        """Number of frames held for ``env``."""
        with self._lock:
            return len(self._frames.get(check_name(env), ()))

    def clear(self, env: str) -> None:
        """Drop every frame of ``env``."""
        with self._lock:
            self._frames.pop(check_name(env), None)

    def environments(self) -> list[str]:
        """Environments with at least one frame, sorted."""
        with self._lock:
            return sorted(k for k, v in self._frames.items() if v)
