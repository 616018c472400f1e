"""Model throughput (ctedge models per batch size) and peers (alternating A B A B with ctedge's
engine, so machine drift cancels in the ratio).

Inputs are seeded standard-normal tensors of the model's input shape: convolution speed does
not depend on pixel values, and random inputs keep the section free of data loading.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .machine import peak_rss_bytes, reset_peak_rss
from .stats import TimingPolicy, alternate, measure


def example_batch(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size), dtype=np.float32)


def run_throughput(models: list, open_runner: Callable, size: int, batch_sizes: tuple[int, ...],
                   policy: TimingPolicy) -> dict:
    """Every model x batch size. `open_runner(model)` loads a fresh runner (peak RSS counts the
    load: what a process running only this model would need)."""
    rows = []
    for model in models:
        reset_peak_rss()
        runner = open_runner(model)
        try:
            for batch in batch_sizes:
                x = example_batch(batch, size)
                timing = measure(lambda r=runner, x=x: r.infer(x), policy, runner.sync)
                rows.append({"model": model.label, "backend": model.backend,
                             "precision": model.precision, "form": model.form, "batch": batch,
                             "timing": timing.to_dict(items_per_call=batch),
                             "peak_rss_bytes": peak_rss_bytes()})
        finally:
            runner.close()
    return {"input": "seeded standard normal", "rows": rows}


def compare_peer(engine_runner, peer_runner, batch: int, size: int, rounds: int,
                 policy: TimingPolicy) -> dict:
    """Alternate engine and peer blocks; speedup = peer latency / engine latency per round."""
    x = example_batch(batch, size)
    engine_t, peer_t, ratio = alternate(lambda: engine_runner.infer(x),
                                        lambda: peer_runner.infer(x), rounds, policy,
                                        engine_runner.sync, peer_runner.sync)
    return {"batch": batch, "rounds": rounds,
            "engine_timing": engine_t.to_dict(items_per_call=batch),
            "peer_timing": peer_t.to_dict(items_per_call=batch),
            "engine_speedup": ratio.to_dict()}
