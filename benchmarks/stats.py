"""Timing statistics: warm-up, enough iterations for a stable median, percentiles.

Every duration is in seconds, read with `time.perf_counter`. A `sync` callable (for CUDA:
`torch.cuda.synchronize`) runs before each clock read so queued GPU work is counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TimingPolicy:
    """How long to measure one thing.

    warmup: untimed calls first (allocators, lazy kernels, caches).
    min_iters / max_iters: bounds on timed calls.
    min_time_s / max_time_s: bounds on total timed seconds.
    rel_ci: stop once the 95% confidence interval of the median is within this fraction of it
        (after min_iters and min_time_s are met).
    """

    warmup: int = 3
    min_iters: int = 10
    max_iters: int = 1000
    min_time_s: float = 2.0
    max_time_s: float = 30.0
    rel_ci: float = 0.02

    def __post_init__(self):
        for name in ("warmup", "min_iters", "max_iters"):
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("min_time_s", "max_time_s", "rel_ci"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not 1 <= self.min_iters <= self.max_iters:
            raise ValueError(f"need 1 <= min_iters <= max_iters, got {self.min_iters}, "
                             f"{self.max_iters}")
        if not 0 <= self.min_time_s <= self.max_time_s:
            raise ValueError(f"need 0 <= min_time_s <= max_time_s, got {self.min_time_s}, "
                             f"{self.max_time_s}")
        if not 0 < self.rel_ci < 1:
            raise ValueError(f"rel_ci must be in (0, 1), got {self.rel_ci}")

    @classmethod
    def quick(cls) -> TimingPolicy:
        """CI smoke runs: proves the path works, the numbers are not meant to be read."""
        return cls(warmup=1, min_iters=2, max_iters=3, min_time_s=0.0, max_time_s=2.0, rel_ci=0.5)

    @classmethod
    def full(cls) -> TimingPolicy:
        return cls()

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Timing:
    """Timed samples of one operation (seconds per call) and their summary."""

    samples_s: tuple[float, ...]
    warmup: int = 0
    stable: bool = False  # the median's 95% CI met the policy's rel_ci

    def __post_init__(self):
        object.__setattr__(self, "samples_s", tuple(float(s) for s in self.samples_s))
        if not self.samples_s:
            raise ValueError("a Timing needs at least one sample")
        if min(self.samples_s) < 0:
            raise ValueError("durations cannot be negative")

    @property
    def n(self) -> int:
        return len(self.samples_s)

    @property
    def median_s(self) -> float:
        return float(np.median(self.samples_s))

    def percentile_s(self, q: float) -> float:
        return percentile(self.samples_s, q)

    @property
    def median_ci_s(self) -> tuple[float, float]:
        return median_ci(self.samples_s)

    def to_dict(self, items_per_call: int = 1) -> dict:
        """Summary for the JSON report; `items_per_call` (batch size) gives items per second."""
        med = self.median_s
        lo, hi = self.median_ci_s
        return {
            "n": self.n,
            "warmup": self.warmup,
            "stable": self.stable,
            "median_s": med,
            "median_ci95_s": [lo, hi],
            "p90_s": self.percentile_s(90),
            "p99_s": self.percentile_s(99),
            "mean_s": float(np.mean(self.samples_s)),
            "min_s": float(min(self.samples_s)),
            "max_s": float(max(self.samples_s)),
            "items_per_call": items_per_call,
            "items_per_s": items_per_call / med if med > 0 else None,
            "samples_s": list(self.samples_s),
        }


def percentile(samples, q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between order statistics."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        raise ValueError("percentile of no samples")
    return float(np.percentile(values, q))


def median_ci(samples, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free ~95% confidence interval of the median from order statistics.

    Ranks n/2 -/+ z*sqrt(n)/2 (normal approximation to the binomial); with fewer than
    6 samples the interval is the sample range (too few for anything tighter).
    """
    values = np.sort(np.asarray(samples, dtype=np.float64))
    n = values.size
    if n == 0:
        raise ValueError("confidence interval of no samples")
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    if n < 6:
        lo, hi = 0, n - 1
    return float(values[lo]), float(values[hi])


def is_stable(samples, rel_ci: float) -> bool:
    """True when the median's CI half-width is within `rel_ci` of the median."""
    if len(samples) < 6:
        return False
    med = float(np.median(samples))
    lo, hi = median_ci(samples)
    return med > 0 and (hi - lo) / 2 <= rel_ci * med


def measure(fn: Callable[[], object], policy: TimingPolicy,
            sync: Callable[[], None] | None = None,
            clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Call `fn` `policy.warmup` times untimed, then time calls until the median is stable.

    Stops when min_iters and min_time_s are met and the median is stable, or when max_iters
    or max_time_s is reached (then `stable` says whether it got there).
    """
    sync = sync or _no_sync
    for _ in range(policy.warmup):
        fn()
    sync()
    samples: list[float] = []
    spent = 0.0
    while True:
        t0 = clock()
        fn()
        sync()
        dt = clock() - t0
        samples.append(dt)
        spent += dt
        enough = len(samples) >= policy.min_iters and spent >= policy.min_time_s
        if enough and is_stable(samples, policy.rel_ci):
            break
        if len(samples) >= policy.max_iters or (spent >= policy.max_time_s
                                                 and len(samples) >= policy.min_iters):
            break
    return Timing(tuple(samples), policy.warmup, is_stable(samples, policy.rel_ci))


def _no_sync() -> None:
    pass


@dataclass(frozen=True)
class Ratio:
    """A speed ratio measured in alternating blocks (A B A B ...), so machine drift cancels.

    per_round: B's median latency / A's median latency for each round (> 1: A is faster).
    """

    per_round: tuple[float, ...]

    def __post_init__(self):
        object.__setattr__(self, "per_round", tuple(float(r) for r in self.per_round))
        if not self.per_round:
            raise ValueError("a Ratio needs at least one round")

    @property
    def median(self) -> float:
        return float(np.median(self.per_round))

    def to_dict(self) -> dict:
        return {"median": self.median, "min": min(self.per_round), "max": max(self.per_round),
                "rounds": list(self.per_round)}


def alternate(a: Callable[[], object], b: Callable[[], object], rounds: int,
              policy: TimingPolicy, sync_a=None, sync_b=None,
              clock: Callable[[], float] = time.perf_counter) -> tuple[Timing, Timing, Ratio]:
    """Time `a` and `b` in alternating blocks; pooled timings of each and the per-round ratio."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    samples_a: list[float] = []
    samples_b: list[float] = []
    ratios = []
    for r in range(rounds):
        # Only the first block of each side pays the full warm-up.
        block = policy if r == 0 else TimingPolicy(**{**policy.to_dict(), "warmup": 1})
        ta = measure(a, block, sync_a, clock)
        tb = measure(b, block, sync_b, clock)
        samples_a += ta.samples_s
        samples_b += tb.samples_s
        ratios.append(tb.median_s / ta.median_s if ta.median_s > 0 else math.inf)
    pooled_a = Timing(tuple(samples_a), policy.warmup, is_stable(samples_a, policy.rel_ci))
    pooled_b = Timing(tuple(samples_b), policy.warmup, is_stable(samples_b, policy.rel_ci))
    return pooled_a, pooled_b, Ratio(tuple(ratios))
