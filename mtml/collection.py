"""Label collection for the perception node, without rclpy: stamped label stores with time matching, the open
collection (rate limit, frames waiting for their labels), and a worker that turns labelled frames into support
frames off the executor thread.

Building a support frame (decode the depth label, resize, derive normals from depth + K) takes ~200 ms at
640x480; done in the executor thread it held up inference for the whole collection. Here :meth:`Collector.step`
(a timer in the node) only matches stamps and hands complete frames to ``worker`` (the node's background
thread); it picks up the results on a later step. At most ``MAX_IN_FLIGHT`` frames are handed over at a time and
never more than the collection still needs.

``message_filters`` (ROS's approximate-time synchroniser) is not installable from PyPI, and its policy (emit a
set only when every topic has a message) does not fit labels that are optional per frame, so matching is the
nearest stamp within a tolerance, per label.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PENDING_SECONDS = 1.0  # a frame to collect waits this long for its time-matched labels
MAX_PENDING = 8  # frames waiting for labels (the oldest is dropped)
MAX_IN_FLIGHT = 2  # frames handed to the worker and not yet back
STORE_SIZE = 30  # labels of each kind kept for matching


class StampedStore:
    """The last ``size`` (stamp ns, value) pairs of one label topic; lookup of the one nearest a stamp."""

    def __init__(self, size: int = STORE_SIZE) -> None:
        self.items: deque[tuple[int, Any]] = deque(maxlen=size)

    def add(self, stamp: int, value: Any) -> None:
        """Keep ``value`` stamped ``stamp`` (the oldest goes when full)."""
        self.items.append((stamp, value))

    def match(self, stamp: int, tolerance_ns: float) -> Any:
        """The value whose stamp is nearest ``stamp``, if within ``tolerance_ns``; else None."""
        best = min(self.items, key=lambda item: abs(item[0] - stamp), default=None)
        return best[1] if best is not None and abs(best[0] - stamp) <= tolerance_ns else None

    def latest(self) -> Any:
        """The value added last (None when empty)."""
        return self.items[-1][1] if self.items else None

    def clear(self) -> None:
        """Drop everything."""
        self.items.clear()

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Needs:
    """Which time-matched labels a collected frame waits for (those with a publisher)."""

    depth: bool = False
    vp: bool = False
    k: bool = False


@dataclass
class Collection:
    """An open collection: labels that apply to every frame, frames waiting for their time-matched labels."""

    env: str
    class_name: str | None
    vp_dirs: np.ndarray | None
    shots: int
    rate: float  # most frames per second (0 = every frame)
    last_stamp: int = -(10**18)
    pending: deque = field(default_factory=lambda: deque(maxlen=MAX_PENDING))  # (stamp ns, arrival s, rgb)
    added: int = 0  # frames in the engine's buffer
    in_flight: int = 0  # frames with the worker
    errors: int = 0
    last_error: str = ""

    def offer(self, stamp: int, now: float, rgb: np.ndarray) -> bool:
        """Take a copy of the frame if the rate allows; returns whether it was taken."""
        if self.rate > 0 and stamp - self.last_stamp < 1e9 / self.rate:
            return False
        self.last_stamp = stamp
        self.pending.append((stamp, now, np.array(rgb)))
        return True

    def error(self, reason: str) -> str:
        """Count a skipped frame; returns the warning text."""
        self.errors += 1
        self.last_error = reason
        return f"collect {self.env}: {reason}"


BuildFrame = Callable[[str, np.ndarray, Any, Any, Any, Any], int]  # (env, rgb, depth msg, K, class, vp) -> count


class Collector:
    """Collections of labelled frames: label stores, the open collection, and the hand-over to the worker.

    ``build(env, rgb, depth_msg, K, class_name, vp_dirs)`` runs in ``worker``; it decodes and validates the labels,
    adds the frame to the engine and returns the environment's frame count, or raises ValueError with the reason.
    Every other method runs in the node's executor thread.
    """

    def __init__(self, build: BuildFrame, worker: Executor) -> None:
        self.build, self.worker = build, worker
        self.infos = StampedStore()  # (K, (H, W)) of valid camera_info messages, kept always (VP pixels)
        self.depth = StampedStore()  # raw depth label messages, kept only while collecting
        self.vps = StampedStore()  # (3, 3) vanishing directions, kept only while collecting
        self.current: Collection | None = None
        self.finished: Collection | None = None  # the last collection that stopped by itself (enough frames)
        self.jobs: deque[tuple[Collection, Future]] = deque()

    @property
    def active(self) -> bool:
        """Whether a collection is open or frames are still with the worker."""
        return self.current is not None or bool(self.jobs)

    def start(self, env: str, class_name: str | None, vp_dirs: np.ndarray | None, shots: int,
              rate: float) -> Collection:
        """Open a collection for ``env`` (replacing any open one)."""
        self.current = Collection(env, class_name, vp_dirs, shots, rate)
        self.finished = None
        self.depth.clear()
        self.vps.clear()
        return self.current

    def stop(self, env: str) -> Collection | None:
        """Close the open collection of ``env``; returns it, or the one that finished by itself, or None."""
        c = self.current
        if c is not None and c.env == env:
            self._close()
            return c
        if c is None and self.finished is not None and self.finished.env == env:
            return self.finished
        return None

    def _close(self) -> None:
        self.current = None
        self.depth.clear()
        self.vps.clear()

    def offer(self, stamp: int, now: float, rgb: np.ndarray) -> None:
        """A frame the node has just served: kept for the open collection if the rate allows."""
        if self.current is not None:
            self.current.offer(stamp, now, rgb)

    def add_depth(self, stamp: int, msg: Any) -> None:
        """A raw depth label message (decoded only if its frame is collected); dropped when not collecting."""
        if self.current is not None:
            self.depth.add(stamp, msg)

    def add_vp(self, stamp: int, dirs: np.ndarray) -> None:
        """Vanishing directions (3, 3) of a frame; dropped when not collecting."""
        if self.current is not None:
            self.vps.add(stamp, dirs)

    def step(self, needs: Needs, tolerance_s: float, now: float) -> list[tuple[str, str]]:
        """Collect the worker's results, then hand frames whose labels have all arrived to the worker.

        Returns events for the node's log: ("warn", text) for a skipped frame, ("info", text) when a collection
        has its ``shots`` frames and stops."""
        events = self._results()
        c = self.current
        if c is None:
            return events
        tol = tolerance_s * 1e9
        keep: list[tuple[int, float, np.ndarray]] = []
        while c.pending:
            stamp, arrival, rgb = c.pending.popleft()
            if c.added + c.in_flight >= c.shots or len(self.jobs) >= MAX_IN_FLIGHT:
                keep.append((stamp, arrival, rgb))
                continue
            depth = self.depth.match(stamp, tol) if needs.depth else None
            vp = self.vps.match(stamp, tol) if needs.vp and c.vp_dirs is None else c.vp_dirs
            info = self.infos.match(stamp, tol) if needs.k else None
            missing = [name for name, needed, got in (("depth_label", needs.depth, depth),
                                                      ("vp_label", needs.vp and c.vp_dirs is None, vp),
                                                      ("camera_info", needs.k, info)) if needed and got is None]
            if missing:
                if now - arrival < PENDING_SECONDS:
                    keep.append((stamp, arrival, rgb))
                else:
                    events.append(("warn", c.error(f"no {' / '.join(missing)} within {tolerance_s:g} s of the "
                                                   "image stamp: frame not collected")))
                continue
            if info is not None and info[1] != rgb.shape[:2]:
                events.append(("warn", c.error(f"camera_info is for {info[1][1]}x{info[1][0]} images but the "
                                               f"image is {rgb.shape[1]}x{rgb.shape[0]}: frame not collected")))
                continue
            K = info[0] if info is not None and depth is not None else None
            c.in_flight += 1
            self.jobs.append((c, self.worker.submit(self.build, c.env, rgb, depth, K, c.class_name, vp)))
        c.pending.extend(keep)
        return events

    def _results(self) -> list[tuple[str, str]]:
        """Results of finished worker jobs, in order."""
        events: list[tuple[str, str]] = []
        while self.jobs and self.jobs[0][1].done():
            c, job = self.jobs.popleft()
            c.in_flight -= 1
            try:
                count = job.result()
            except ValueError as exc:
                events.append(("warn", c.error(f"frame rejected: {exc}")))
                continue
            except Exception as exc:  # a bug must not stop the node; the reason goes to the log
                events.append(("warn", c.error(f"frame rejected: internal error {type(exc).__name__}: {exc}")))
                continue
            c.added = count
            if count >= c.shots and self.current is c:
                self._close()
                self.finished = c
                events.append(("info", f"collected {count} frames for {c.env}; collection stopped"))
        return events

    def state(self) -> str | None:
        """'collecting <env> n/shots' while a collection is open, else None."""
        c = self.current
        return None if c is None else f"collecting {c.env} {c.added}/{c.shots}"
