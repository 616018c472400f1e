"""The pipeline's loop: bounded memory, batching, order."""

from __future__ import annotations

import numpy as np

from ctedge.backends import open_backend
from ctedge.pipeline import ClassifyConfig, _run
from ctedge.slices import PreparedSlice


class CountingWorkers:
    """SliceWorkers' interface, run in the calling process; records the most slices held by
    the pipeline at once (handed out or returned and not yet classified)."""

    def __init__(self, count: int):
        self.count, self.running, self.peak = count, [], 0
        self.held = set()

    @property
    def idle(self):
        return self.count - len(self.running)

    @property
    def busy(self):
        return len(self.running)

    def submit(self, index, ref, preprocessing, lungs):
        assert self.idle
        self.running.append(index)
        self.held.add(index)
        self.peak = max(self.peak, len(self.held))

    def collect(self):
        out = []
        for index in self.running:
            used = index % 3 != 0  # every third slice has no lung field
            tensor = np.full((3, 224, 224), index, np.float32) if used else None
            out.append(PreparedSlice(index, used, tensor, None, None, 0.0, 0.0))
            if not used:
                self.held.discard(index)
        self.running = []
        return out


def test_slices_held_stay_bounded_for_a_long_study(tiny_model):
    config = ClassifyConfig(batch_size=8, workers=2)
    workers, timings = CountingWorkers(2), {}
    refs = [None] * 1000
    with open_backend(tiny_model) as backend:
        sizes = []
        infer = backend.infer

        def counting_infer(batch):
            sizes.append(len(batch))
            workers.held.difference_update(int(x[0, 0, 0]) for x in batch)
            return infer(batch)

        backend.infer = counting_infer
        prepared, probs = _run(workers, refs, backend, config, timings)
    assert workers.peak <= config.batch_size + config.worker_count
    assert [p.index for p in prepared] == list(range(1000))
    assert sorted(probs) == [i for i in range(1000) if i % 3 != 0]
    assert max(sizes) == 8 and sum(sizes) == len(probs)
    assert all(p.tensor is None for p in prepared)  # inputs freed once classified
