"""The pipeline's streaming loop: bounded memory, batching, order."""

from __future__ import annotations

import numpy as np

from ctedge.backends import open_backend
from ctedge.pipeline import ClassifyConfig, _run
from ctedge.slices import PreparedSlice


class CountingPool:
    """Runs jobs at once and records how many results were waiting to be consumed."""

    def __init__(self):
        self.outstanding = 0
        self.peak = 0

    def submit(self, fn, index, ref, preprocessing, lungs):
        pool = self
        used = index % 3 != 0  # every third slice has no lung field
        tensor = np.full((3, 224, 224), index, np.float32) if used else None
        item = PreparedSlice(index, used, tensor, None, None, 0.0, 0.0)
        self.outstanding += 1
        self.peak = max(self.peak, self.outstanding)

        class Done:
            def result(self):
                pool.outstanding -= 1
                return item

        return Done()


def test_slices_in_flight_stay_bounded_for_a_long_study(tiny_model):
    config = ClassifyConfig(batch_size=8, workers=2)
    pool, timings = CountingPool(), {}
    refs = [None] * 1000
    with open_backend(tiny_model) as backend:
        sizes = []
        infer = backend.infer
        backend.infer = lambda batch: sizes.append(len(batch)) or infer(batch)
        prepared, probs = _run(pool, refs, backend, config, timings)
    assert pool.peak <= 2 * config.batch_size + config.worker_count
    assert [p.index for p in prepared] == list(range(1000))
    assert sorted(probs) == [i for i in range(1000) if i % 3 != 0]
    assert max(sizes) == 8 and sum(sizes) == len(probs)
    assert all(p.tensor is None for p in prepared)  # inputs freed once classified
