"""Study completion: a study is complete when no association is still delivering it and no
instance of it arrived for a quiet period.

An open association that has delivered instances of a study holds it: a slow sender (seen
here: 19 instances in 19 s on a loaded machine) must not have its study classified half-way.
The quiet period then counts from the later of the last arrival and the association's end.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict


class CompletionTracker:
    """Last arrival time per study key (seconds since the epoch) and the associations holding
    each study; thread-safe. Keys leave the tracker when `take_due` hands them out; a later
    arrival puts the key back."""

    def __init__(self, quiet_period_s: float, clock=time.time):
        self.quiet_period_s = quiet_period_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._holders: dict[str, set] = defaultdict(set)
        self._lock = threading.Lock()

    def arrived(self, key: str, at: float | None = None, holder=None) -> None:
        """An instance of `key` arrived (at `at`, default now), delivered by `holder` (an
        association id) if given: the study waits at least until that holder is released."""
        with self._lock:
            at = self.clock() if at is None else at
            self._last[key] = max(at, self._last.get(key, at))
            if holder is not None:
                self._holders[key].add(holder)

    def release(self, holder) -> None:
        """`holder` ended; the quiet period of the studies it held restarts now."""
        with self._lock:
            now = self.clock()
            for key in [k for k, held in self._holders.items() if holder in held]:
                self._holders[key].discard(holder)
                if not self._holders[key]:
                    del self._holders[key]
                if key in self._last:
                    self._last[key] = max(self._last[key], now)

    def take_due(self) -> list[str]:
        """Unheld keys quiet for at least the quiet period, oldest first; they leave."""
        now = self.clock()
        with self._lock:
            due = sorted((t, k) for k, t in self._last.items()
                         if now - t >= self.quiet_period_s and not self._holders.get(k))
            for _, key in due:
                del self._last[key]
        return [k for _, k in due]

    def next_due_in(self) -> float | None:
        """Seconds until the next unheld study goes quiet (0 if one is due); None if none."""
        with self._lock:
            free = [t for k, t in self._last.items() if not self._holders.get(k)]
            if not free:
                return None
            return max(0.0, min(free) + self.quiet_period_s - self.clock())

    def receiving(self) -> int:
        with self._lock:
            return len(self._last)
