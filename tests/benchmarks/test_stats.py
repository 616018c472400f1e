"""Timing statistics with a fake clock: the arithmetic, never the speed of this machine."""

import itertools

import pytest

from ctedge.benchmarks.stats import (
    Ratio,
    Timing,
    TimingPolicy,
    alternate,
    is_stable,
    measure,
    median_ci,
    percentile,
)


class FakeClock:
    """Each call of the timed function advances the clock by the next duration."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def work(self, durations):
        it = itertools.cycle(durations)

        def fn():
            self.now += next(it)
        return fn


def test_percentiles_interpolate():
    samples = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(samples, 50) == 3.0
    assert percentile(samples, 90) == pytest.approx(4.6)
    assert percentile(samples, 100) == 5.0
    with pytest.raises(ValueError):
        percentile(samples, 101)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_median_ci_brackets_the_median_and_narrows():
    few = [1.0, 2.0, 3.0]
    assert median_ci(few) == (1.0, 3.0)
    many = list(range(1, 101))
    lo, hi = median_ci(many)
    assert lo < 50.5 < hi
    assert (hi - lo) < 30


def test_timing_summary():
    t = Timing((0.1, 0.2, 0.3, 0.4), warmup=2)
    d = t.to_dict(items_per_call=8)
    assert d["n"] == 4 and d["warmup"] == 2
    assert d["median_s"] == pytest.approx(0.25)
    assert d["items_per_s"] == pytest.approx(8 / 0.25)
    assert d["median_s"] <= d["p90_s"] <= d["p99_s"] <= d["max_s"]
    with pytest.raises(ValueError):
        Timing(())


def test_measure_stops_when_stable():
    clock = FakeClock()
    policy = TimingPolicy(warmup=2, min_iters=10, max_iters=500, min_time_s=0.0, max_time_s=1e9,
                          rel_ci=0.05)
    t = measure(clock.work([1.0]), policy, clock=clock)
    assert t.n == 10 and t.stable and t.median_s == 1.0


def test_measure_gives_up_at_max_iters_when_noisy():
    clock = FakeClock()
    policy = TimingPolicy(warmup=0, min_iters=5, max_iters=40, min_time_s=0.0, max_time_s=1e9,
                          rel_ci=0.01)
    t = measure(clock.work([1.0, 10.0]), policy, clock=clock)
    assert t.n == 40 and not t.stable


def test_measure_respects_min_time_and_calls_sync():
    clock = FakeClock()
    synced = []
    policy = TimingPolicy(warmup=1, min_iters=2, max_iters=1000, min_time_s=50.0, max_time_s=1e9)
    t = measure(clock.work([2.0]), policy, sync=lambda: synced.append(1), clock=clock)
    assert sum(t.samples_s) >= 50.0
    assert len(synced) == t.n + 1  # once after warm-up, once per timed call


def test_alternate_gives_the_ratio_per_round():
    clock = FakeClock()
    policy = TimingPolicy(warmup=1, min_iters=6, max_iters=6, min_time_s=0.0, max_time_s=1e9)
    a, b, ratio = alternate(clock.work([1.0]), clock.work([3.0]), 3, policy, clock=clock)
    assert ratio.per_round == (3.0, 3.0, 3.0) and ratio.median == 3.0
    assert a.n == b.n == 18


def test_is_stable_needs_samples():
    assert not is_stable([1.0, 1.0], 0.5)
    assert is_stable([1.0] * 10, 0.01)


def test_policy_validation_and_ratio():
    with pytest.raises(ValueError, match="min_iters"):
        TimingPolicy(min_iters=10, max_iters=5)
    with pytest.raises(ValueError, match="rel_ci"):
        TimingPolicy(rel_ci=0)
    assert TimingPolicy.quick().max_iters <= 5
    assert Ratio((1.0, 2.0, 4.0)).to_dict() == {"median": 2.0, "min": 1.0, "max": 4.0,
                                                 "rounds": [1.0, 2.0, 4.0]}
