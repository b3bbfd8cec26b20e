"""Rate-limited warnings for input problems, keyed by a fixed set of kinds (never by the text), and a safe form of
untrusted strings for the log.

A sender can make every bad message's reason unique (encodings, sizes, names): keying the throttle on the text
would grow without bound and flood the log. Here memory is one slot per kind, at most one line per kind per
period, and the line says how many more were suppressed. No rclpy: the node passes its logger's warning method.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# What can go wrong, one slot each; an unknown kind is a programming error (KeyError).
KINDS = ("image", "camera_info", "depth_label", "vp_label", "collect", "recognize", "adapt", "profiles", "internal")
MAX_TEXT = 200  # characters of one untrusted string in a log line or an answer
MAX_LINE = 400  # characters of one warning line


def safe(value: object, limit: int = MAX_TEXT) -> str:
    """``value`` as a printable, quoted, length-capped string (repr escapes control characters and newlines)."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    shown = repr(text[:limit])
    return shown + (f"… ({len(text)} characters)" if cut else "")


def cap(line: str, limit: int = MAX_LINE) -> str:
    """One log line: control characters escaped, at most ``limit`` characters."""
    line = line.encode("unicode_escape", "backslashreplace").decode("ascii") if not line.isprintable() else line
    return line if len(line) <= limit else line[:limit] + "…"


class Throttle:
    """At most one warning per kind every ``period`` seconds; the others are counted and reported with the next."""

    def __init__(self, emit: Callable[[str], None], period: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.emit, self.period, self.clock = emit, period, clock
        self.last: dict[str, float] = {}
        self.suppressed = dict.fromkeys(KINDS, 0)
        self.total = dict.fromkeys(KINDS, 0)

    def warn(self, kind: str, reason: str) -> bool:
        """Count a problem of ``kind``; log it unless one of that kind was logged within the period. Returns
        whether it was logged."""
        self.total[kind] += 1  # KeyError for a kind not in KINDS
        now = self.clock()
        if now - self.last.get(kind, -float("inf")) < self.period:
            self.suppressed[kind] += 1
            return False
        more = self.suppressed[kind]
        self.last[kind], self.suppressed[kind] = now, 0
        self.emit(cap(reason) + (f" ({more} more {kind} problems since the last one logged)" if more else ""))
        return True

    def recent(self, within: float) -> list[str]:
        """Kinds warned about in the last ``within`` seconds."""
        now = self.clock()
        return [k for k, t in self.last.items() if now - t < within]
