"""Issue 9: the JSON result is strict JSON whatever values a study yields (no NaN/Infinity)."""

from __future__ import annotations

import dataclasses
import json
import math

from ctedge.pipeline import ClassifyConfig, classify_study
from ctedge.result import finite


def test_non_finite_numbers_become_null_at_any_depth():
    value = {"a": [1.0, math.nan, {"b": math.inf, "c": (-math.inf, 2)}], "d": "nan", "e": 3}
    assert finite(value) == {"a": [1.0, None, {"b": None, "c": [None, 2]}], "d": "nan", "e": 3}


def test_json_result_is_strict_even_with_non_finite_values(tmp_path, ct_factory, tiny_model):
    folder = ct_factory.make_series(tmp_path / "s", [0.0, 5.0], size=32)
    result = classify_study(folder, ClassifyConfig(model=tiny_model, workers=1))
    bad = dataclasses.replace(result.slices[0], z_mm=math.nan, lung_area_cm2=math.inf)
    result = dataclasses.replace(result, slices=[bad, *result.slices[1:]],
                                 timings_s={**result.timings_s, "read": math.nan})
    text = result.to_json()
    parsed = json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert parsed["slices"][0]["z_mm"] is None and parsed["slices"][0]["lung_area_cm2"] is None
    assert parsed["timings_s"]["read"] is None
