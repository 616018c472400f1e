"""Stochastic weight averaging: a running mean of a network's weights over training steps.

Averaging the weights along the end of a training run lands in a flatter region of the loss
than any one step, which is what helps a model on data from a source it never saw (Izmailov
et al. 2018, SWA; Cha et al. 2021, SWAD: dense averaging for domain generalisation). BatchNorm
running statistics are averaged with the weights; integer buffers follow the live network.
"""

from __future__ import annotations

import copy


class WeightAverage:
    """The mean of `net`'s state over every `update` since construction (the first included)."""

    def __init__(self, net, count: int = 1):
        self.net = copy.deepcopy(net)
        self.net.requires_grad_(False)
        self.net.eval()
        self.count = count

    def update(self, net) -> None:
        import torch

        self.count += 1
        with torch.no_grad():
            for mean, live in zip(self.net.state_dict().values(), net.state_dict().values(),
                                  strict=True):
                if mean.is_floating_point():
                    mean.lerp_(live.to(mean.dtype), 1.0 / self.count)
                else:
                    mean.copy_(live)

    def state(self) -> dict:
        return {"model_state": self.net.state_dict(), "count": self.count}

    @classmethod
    def restore(cls, net, saved: dict) -> WeightAverage:
        average = cls(net, saved["count"])
        average.net.load_state_dict(saved["model_state"])
        return average
