"""Schema checks catch malformed reports; Markdown and plots render every section kind."""

import copy

import pytest

from ctedge.benchmarks import schema
from ctedge.benchmarks.harness import run_bench
from ctedge.benchmarks.machine import describe_machine, machine_name
from ctedge.benchmarks.report import render_markdown


@pytest.fixture
def report(quick_config):
    return run_bench(quick_config(sections=("throughput", "peers"), peers=("ort-fp32",)))


def test_validate_rejects_broken_reports(report):
    schema.validate(report)
    for mutate, message in [
        (lambda r: r.pop("machine"), "machine"),
        (lambda r: r.update(schema="ctedge-bench/0"), "schema"),
        (lambda r: r.update(disclaimer="fine"), "not a medical device"),
        (lambda r: r["sections"].update(speed={}), "unknown section"),
        (lambda r: r["sections"]["throughput"]["rows"][0]["timing"]["samples_s"].pop(), "samples"),
        (lambda r: r["sections"]["peers"]["rows"][0].pop("engine_speedup"), "engine_speedup"),
    ]:
        broken = copy.deepcopy(report)
        mutate(broken)
        with pytest.raises(schema.SchemaError, match=message):
            schema.validate(broken)


def test_markdown_shows_skips_errors_and_disclaimer(report):
    r = copy.deepcopy(report)
    r["sections"]["accuracy"] = {"skipped": "default labelled set needs shared data"}
    r["sections"]["studies"] = {"error": "P001: boom"}
    md = render_markdown(r, ["throughput.png"])
    assert md.count("not a medical device") >= 2
    assert "Skipped: default labelled set" in md and "**Error:** P001: boom" in md
    assert "| ONNX Runtime FP32 | 2 |" in md and "![throughput.png](throughput.png)" in md
    assert "smoke run" in md  # quick numbers are labelled as such


def test_plots_are_drawn(report, tmp_path):
    pytest.importorskip("matplotlib")
    from ctedge.benchmarks.plots import write_plots

    files = {p.name for p in write_plots(report, tmp_path)}
    assert files == {"throughput.png", "latency_cdf.png", "peers.png"}
    assert all((tmp_path / f).read_bytes()[:4] == b"\x89PNG" for f in files)


def test_machine_description_names_no_host():
    import platform

    m = describe_machine()
    assert m["cpu"]["model"] and m["cpu"]["logical_cores"] >= 1
    assert isinstance(m["gpus"], list) and "onnxruntime" in m["libraries"]
    assert platform.node() not in str(m) or not platform.node()
    assert machine_name({"gpus": [], "cpu": {"usable_cores": 2,
                                             "model": "Intel(R) Xeon(R) Processor"}}) \
        == "2c-intel-xeon-processor"
    assert machine_name({"gpus": [{"name": "NVIDIA H100 80GB HBM3"}], "cpu": {}}) \
        == "nvidia-h100-80gb-hbm3"
