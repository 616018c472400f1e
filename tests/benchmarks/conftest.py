"""Fixtures for the benchmark harness tests: tiny models (size 32, fast) and a quick config."""

from __future__ import annotations

import pytest

CLASSES = ("non_covid", "covid19")


@pytest.fixture
def small_model(tmp_path, tiny_model_factory):
    return tiny_model_factory(tmp_path / "small.onnx", classes=CLASSES, size=32)


@pytest.fixture
def quick_config(tmp_path, small_model):
    from ctedge.benchmarks.config import BenchConfig

    def make(**overrides):
        base = dict(models=(small_model,), out=tmp_path / "out", peers=(),
                    requested_peers=True)
        return BenchConfig.quick(**{**base, **overrides})
    return make
