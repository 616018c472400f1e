"""`ctedge bench` through the CLI entry point: outputs, bad values, missing backends."""

import json

import pytest

from ctedge.benchmarks import schema
from ctedge.cli import main


def test_quick_run_writes_json_markdown_and_plots(small_model, tmp_path, capsys):
    out = tmp_path / "bench-{profile}"
    code = main(["bench", "--quick", "--model", str(small_model), "--sections",
                 "throughput,peers", "--peers", "ort-fp32", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "bench-quick"
    report = json.loads((folder / "bench.json").read_text())
    schema.validate(report)
    assert report["profile"] == "quick" and report["command"].startswith("ctedge bench")
    assert set(report["sections"]) == {"throughput", "peers"}
    assert (folder / "report.md").is_file()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (folder / "throughput.png").stat().st_size > 0
    assert (folder / "latency_cdf.png").stat().st_size > 0


def test_skip_removes_sections(small_model, tmp_path):
    code = main(["bench", "--quick", "--model", str(small_model), "--sections",
                 "throughput,import_time", "--skip", "import_time", "--peers", "none",
                 "--no-plots", "--out", str(tmp_path / "o")])
    assert code == 0
    report = json.loads((tmp_path / "o" / "bench.json").read_text())
    assert set(report["sections"]) == {"throughput"}
    assert not list((tmp_path / "o").glob("*.png"))


def test_bad_values_name_the_valid_ones(small_model, tmp_path, capsys):
    assert main(["bench", "--sections", "speed", "--out", str(tmp_path)]) == 2
    assert "valid: accuracy" in capsys.readouterr().err
    assert main(["bench", "--peers", "tensorflow", "--model", str(small_model),
                 "--out", str(tmp_path)]) == 2
    assert "valid: torch-fp32" in capsys.readouterr().err
    assert main(["bench", "--batch-sizes", "1,x", "--out", str(tmp_path)]) == 2


@pytest.mark.slow  # imports torch to ask it for a GPU
def test_requested_gpu_peer_without_gpu_fails_with_a_reason(small_model, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the peer would run")
    code = main(["bench", "--quick", "--model", str(small_model), "--sections", "peers",
                 "--peers", "torch-cuda-fp16-graph", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "torch-cuda-fp16-graph" in err and "CUDA GPU" in err
    assert not (tmp_path / "o").exists()  # failed before measuring or writing anything


def test_missing_model_fails_clearly(tmp_path, capsys):
    code = main(["bench", "--quick", "--model", str(tmp_path / "nope.onnx"),
                 "--out", str(tmp_path / "o")])
    assert code == 2
    assert "nope.onnx: model not found" in capsys.readouterr().err
