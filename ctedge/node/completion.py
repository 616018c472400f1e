"""Study completion: a study is complete when no instance of it arrived for a quiet period."""

from __future__ import annotations

import threading
import time


class CompletionTracker:
    """Last arrival time per study key (seconds since the epoch); thread-safe.

    Keys leave the tracker when `take_due` hands them out; a later arrival puts the key back.
    """

    def __init__(self, quiet_period_s: float, clock=time.time):
        self.quiet_period_s = quiet_period_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def arrived(self, key: str, at: float | None = None) -> None:
        with self._lock:
            at = self.clock() if at is None else at
            self._last[key] = max(at, self._last.get(key, at))

    def take_due(self) -> list[str]:
        """Keys quiet for at least the quiet period, oldest first; they leave the tracker."""
        now = self.clock()
        with self._lock:
            due = sorted((t, k) for k, t in self._last.items() if now - t >= self.quiet_period_s)
            for _, key in due:
                del self._last[key]
        return [k for _, k in due]

    def next_due_in(self) -> float | None:
        """Seconds until the next study goes quiet (0 if one is due), None if none waits."""
        with self._lock:
            if not self._last:
                return None
            return max(0.0, min(self._last.values()) + self.quiet_period_s - self.clock())

    def receiving(self) -> int:
        with self._lock:
            return len(self._last)
