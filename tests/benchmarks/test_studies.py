"""Per-study end to end, import time and reading time: the bookkeeping, and one real run on a
synthetic DICOM series (cold process + warm in-process) with a tiny model."""

import importlib.util
import json
from pathlib import Path

import pytest

from ctedge.benchmarks import schema
from ctedge.benchmarks.harness import run_bench, write_outputs
from ctedge.benchmarks.reading import ANCHORS, reading_speedups
from ctedge.benchmarks.studies import run_import_time, stage_times, summarize_runs, targets_met

SYNTHETIC_DICOM = Path(__file__).resolve().parents[1] / "synthetic_dicom.py"


def _run(wall, slices=150, **stages):
    base = {"index": 0.1, "load": 0.05, "decode": 1.0, "preprocess": 0.5, "infer": 2.0,
            "decide": 0.01, "total": wall}
    return {"wall_s": wall, "peak_rss_bytes": 100, "stages_s": {**base, **stages},
            "slices_read": slices, "slices_classified": slices - 10, "decision": "normal"}


def test_stage_names_map_the_pipeline_timings():
    st = stage_times({"read": 0.2, "load": 0.1, "infer": 1.0, "total": 2.0})
    assert st["index"] == 0.2 and st["infer"] == 1.0 and st["decode"] is None


def test_summary_and_targets():
    s = summarize_runs([_run(4.0), _run(6.0), _run(5.0)])
    assert s["wall_median_s"] == 5.0 and s["slices_per_s"] == 30.0 and s["runs"] == 3
    results = [{"study": "A/a1", "model": "ctedge onnxruntime fp32", "cold": s,
                "warm": summarize_runs([_run(7.0)])},
               {"study": "B/b1", "model": "ctedge onnxruntime int8-cpu", "cold": s, "warm": s}]
    (t,) = targets_met(results)  # the target is stated for FP32 ONNX Runtime only
    assert t["met_cold"] and not t["met_warm"]


def test_reading_speedups_use_both_cited_anchors():
    s = summarize_runs([_run(6.1)])
    out = reading_speedups([{"study": "A/a1", "model": "m", "cold": s, "warm": s}])
    assert {a["seconds"] for a in out["anchors"]} == {366.0, 936.0}
    assert any("10.1016/j.acra.2021.10.008" in a.citation for a in ANCHORS)
    assert any("2406.08137" in a.citation for a in ANCHORS)
    first = out["speedups"][0]
    assert first["speedup_cold"] == pytest.approx(366.0 / 6.1)


def test_import_time_probe_runs():
    out = run_import_time(1)
    assert out["runs"] == 1 and out["median_s"] > 0 and "torch" not in out["heavy_modules_loaded"]


def md_of(report, tmp_path) -> str:
    write_outputs(report, tmp_path / "md", plots=False)
    return (tmp_path / "md" / "report.md").read_text()


def test_speed_targets_and_ratios():
    from ctedge.benchmarks.studies import PLAIN, ratio_per_round, speed_targets

    plain = [_run(10.0, slices=148), _run(8.0, slices=148)]
    fast = [_run(5.0, slices=148), _run(6.0, slices=148)]
    v = ratio_per_round(fast, plain)
    assert v["per_round"] == [0.5, 0.75] and v["median"] == 0.625
    results = [{"study": "A/a", "model": PLAIN, "cold": summarize_runs(plain)},
               {"study": "A/a", "model": "ctedge onnxruntime fp32", "cold": summarize_runs(fast),
                "vs_plain": v},
               {"study": "A/a", "model": "ctedge onnxruntime int8-cpu",
                "cold": summarize_runs([_run(1.9, slices=148)])},
               {"study": "S/s", "model": "ctedge onnxruntime fp32",
                "cold": summarize_runs([_run(1.2, slices=19)])}]
    targets = speed_targets(results)

    def met(study, model, words):
        return [t["met"] for t in targets
                if t["study"] == study and t["model"] == model and words in t["target"]]

    assert met("A/a", "ctedge onnxruntime fp32", "plain loop") == [False]  # 0.625 > 0.6
    assert met("A/a", "ctedge onnxruntime int8-cpu", "<= 2.0 s") == [True]
    assert met("S/s", "ctedge onnxruntime fp32", "<= 1.0 s") == [False]
    assert not met("A/a", PLAIN, "peak RSS")  # targets are ctedge's, not the peer's
    assert all(t["met"] for t in targets if "RSS" in t["target"])


@pytest.fixture
def synthetic_study(tmp_path):
    if not SYNTHETIC_DICOM.is_file():
        pytest.skip("tests/synthetic_dicom.py (synthetic DICOM writer) not present")
    spec = importlib.util.spec_from_file_location("synthetic_dicom", SYNTHETIC_DICOM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_series(tmp_path / "study", [0.0, 2.0, 4.0, 6.0], size=32)


@pytest.mark.slow  # a fresh `ctedge classify` process and decode pools: ~10 s on 2 busy cores
def test_studies_section_cold_and_warm(quick_config, synthetic_study, tmp_path):
    config = quick_config(sections=("studies", "reading_time"), studies=(synthetic_study,))
    report = run_bench(config)
    schema.validate(report)
    plain, row = report["sections"]["studies"]["results"]
    assert plain["model"].startswith("plain loop") and plain["cold"]["slices_read"] == 4
    assert row["vs_plain"]["median"] > 0 and len(row["vs_plain"]["per_round"]) == 1
    for mode in ("cold", "warm"):
        assert row[mode]["slices_read"] == 4
        assert row[mode]["wall_median_s"] > 0 and row[mode]["peak_rss_bytes"] > 0
        assert set(row[mode]["stages_median_s"]) >= {"index", "decode", "infer", "total"}
    assert row["cold"]["stages_median_s"]["startup"] > 0
    assert "ctedge cold wall / plain loop cold wall" in md_of(report, tmp_path)
    assert len(report["sections"]["reading_time"]["speedups"]) == len(ANCHORS)
    written = write_outputs(report, tmp_path / "o", plots=False)
    md = (tmp_path / "o" / "report.md").read_text()
    assert "Academic Radiology 29:1085" in md and "arXiv:2406.08137" in md
    assert json.loads(written[0].read_text())["sections"]["studies"]["results"]


def test_missing_study_is_reported(quick_config, tmp_path):
    config = quick_config(sections=("studies",), studies=(tmp_path / "absent",))
    rows = run_bench(config)["sections"]["studies"]["results"]
    assert rows and all("not found" in row["skipped"] for row in rows)


def test_reading_time_without_studies_is_skipped(quick_config):
    section = run_bench(quick_config(sections=("reading_time",)))["sections"]["reading_time"]
    assert "needs the studies section" in section["skipped"]


@pytest.mark.slow
def test_real_shared_study(quick_config, shared_data):
    study = shared_data / "covid-ct-md" / "Normal" / "normal001"
    config = quick_config(sections=("studies",), studies=(study,))
    *_, row = run_bench(config)["sections"]["studies"]["results"]
    assert row["cold"]["slices_read"] == 154 and row["warm"]["slices_read"] == 154


def test_a_study_that_fails_is_recorded_and_the_cli_exits_2(small_model, tmp_path, capsys):
    from ctedge.cli import main

    (tmp_path / "empty").mkdir()
    code = main(["bench", "--quick", "--model", str(small_model), "--sections", "studies",
                 "--study", str(tmp_path / "empty"), "--no-plots", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "study " in capsys.readouterr().err
    report = json.loads((tmp_path / "o" / "bench.json").read_text())
    *_, row = report["sections"]["studies"]["results"]
    assert "failed in the cold run" in row["error"] and "cold" not in row


def test_study_table_columns_line_up(tmp_path):
    from ctedge.benchmarks.report import _studies
    from ctedge.benchmarks.studies import STAGES

    s = summarize_runs([{**_run(4.0), "cpu_s": 5.5}])
    lines = _studies({"stages": list(STAGES), "results": [
        {"study": "A/a", "model": "m", "cold": s, "warm": s}]})
    header = next(line for line in lines if line.startswith("| study | model | mode"))
    rows = [line for line in lines if line.startswith("| A/a | m |")]
    assert "CPU s" in header and " 5.50 " in rows[0]
    assert all(row.count("|") == header.count("|") for row in rows)
