"""End to end, DICOM folder to decision: cold (a fresh `ctedge classify` process) and warm
(in-process, model loaded), with the pipeline's stage breakdown; and `import ctedge.cli` time.

Stage times come from the pipeline's own `timings_s`: index (header read; the pipeline calls it
`read`), load, decode and preprocess (summed over decode processes, so CPU seconds that overlap
inference, not wall time), infer, decide, total (wall). Cold wall time is read around the child
process and includes interpreter start, imports and model load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ctedge.errors import CtedgeError

from .machine import peak_rss_bytes, reset_peak_rss
from .models import ModelUnderTest

STAGES = ("index", "load", "decode", "preprocess", "infer", "decide", "total")
# The edge-runtime issue's targets on the 2-core development machine, FP32 ONNX Runtime.
TARGETS = {"study_total_s": 6.0, "study_slices": 150, "import_s": 0.5}


def stage_times(timings: dict) -> dict[str, float | None]:
    """The pipeline's timings_s under the benchmark's stage names."""
    out = {}
    for stage in STAGES:
        value = timings.get(stage)
        if value is None and stage == "index":
            value = timings.get("read")
        out[stage] = None if value is None else float(value)
    return out


def _summary(study: dict) -> dict:
    s = study.get("study", {})
    return {"slices_read": s.get("slices_read"), "slices_classified": s.get("slices_classified"),
            "decision": study.get("decision", {}).get("label")}


def run_cold(study_dir: Path, model: ModelUnderTest, workers: int = 0,
             timeout_s: float = 600) -> dict:
    """One fresh `python -m ctedge.cli classify --format json` process: wall time, peak RSS
    of that child (from wait4, so only its own), and the stage times it reported."""
    cmd = [sys.executable, "-m", "ctedge.cli", "classify", str(study_dir), "--model",
           str(model.path), "--format", "json", "--workers", str(workers)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            _, status, usage = _wait4(proc, timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise CtedgeError(f"{study_dir}: `ctedge classify` took over {timeout_s:.0f} s; "
                              "check the study with `ctedge classify` directly") from None
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {code}"
        raise CtedgeError(f"{study_dir}: `ctedge classify` failed in the cold run ({last}); "
                          "run it directly with --debug to see why")
    result = json.loads(stdout)
    return {"wall_s": wall, "peak_rss_bytes": usage.ru_maxrss * 1024,
            "stages_s": stage_times(result.get("timings_s", {})), **_summary(result)}


def _wait4(proc: subprocess.Popen, timeout_s: float):
    """os.wait4 on the child (its own rusage, not all children's), with a timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return pid, status, usage
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        time.sleep(0.01)


def run_warm(study_dir: Path, backend, model: ModelUnderTest, workers: int = 0) -> dict:
    """One in-process classification with an already loaded backend."""
    from ctedge.pipeline import ClassifyConfig, classify_study

    config = ClassifyConfig(model=model.path, workers=workers)
    reset_peak_rss()
    start = time.perf_counter()
    result = classify_study(study_dir, config, backend=backend).to_dict()
    wall = time.perf_counter() - start
    return {"wall_s": wall, "peak_rss_bytes": peak_rss_bytes(),
            "stages_s": stage_times(result.get("timings_s", {})), **_summary(result)}


def summarize_runs(runs: list[dict]) -> dict:
    """Median wall time, stage times and slices/s over runs of one study."""
    walls = [r["wall_s"] for r in runs]
    wall = float(np.median(walls))
    stages = {}
    for stage in STAGES:
        values = [r["stages_s"][stage] for r in runs if r["stages_s"].get(stage) is not None]
        stages[stage] = float(np.median(values)) if values else None
    slices = runs[0].get("slices_read") or 0
    return {
        "runs": len(runs),
        "wall_median_s": wall,
        "wall_s": walls,
        "stages_median_s": stages,
        "slices_read": slices,
        "slices_classified": runs[0].get("slices_classified"),
        "slices_per_s": slices / wall if wall > 0 else None,
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
        "decision": runs[0].get("decision"),
    }


def run_studies(studies: list[Path], models: list[ModelUnderTest], cold_runs: int,
                warm_runs: int, threads: int = 0) -> dict:
    """Every study x model, cold then warm; a study that is missing is reported, not fatal."""
    try:
        import ctedge.pipeline  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"ctedge.pipeline is not importable here ({exc})"}
    results = []
    for model in models:
        backend = model.open(threads)
        try:
            for study in studies:
                entry = {"study": _study_name(study), "path": str(study), "model": model.label}
                if not study.is_dir():
                    entry["skipped"] = f"{study}: not found (shared data absent?)"
                    results.append(entry)
                    continue
                try:
                    entry["cold"] = summarize_runs([run_cold(study, model)
                                                    for _ in range(cold_runs)])
                    run_warm(study, backend, model)  # warm-up: page cache, imports
                    entry["warm"] = summarize_runs([run_warm(study, backend, model)
                                                    for _ in range(warm_runs)])
                except CtedgeError as exc:  # one bad study must not lose the others
                    entry.pop("cold", None)
                    entry["error"] = str(exc)
                results.append(entry)
        finally:
            backend.close()
    return {"stages": list(STAGES), "results": results, "targets": targets_met(results)}


def _study_name(path: Path) -> str:
    """`COVID-19/P001`: the last two folder names (enough to tell studies apart, no identifiers
    beyond what the folder already says)."""
    return "/".join(path.parts[-2:])


def targets_met(results: list[dict]) -> list[dict]:
    """Check each FP32 ONNX Runtime study of about 150 slices against the <= 6 s target (cold)."""
    out = []
    for r in results:
        if "cold" not in r or "onnxruntime fp32" not in r["model"]:
            continue
        out.append({"study": r["study"], "model": r["model"], "slices": r["cold"]["slices_read"],
                    "target_s": TARGETS["study_total_s"],
                    "cold_wall_s": r["cold"]["wall_median_s"],
                    "warm_wall_s": r["warm"]["wall_median_s"],
                    "met_cold": r["cold"]["wall_median_s"] <= TARGETS["study_total_s"],
                    "met_warm": r["warm"]["wall_median_s"] <= TARGETS["study_total_s"]})
    return out


IMPORT_PROBE = (
    "import json, sys, time\n"
    "t = time.perf_counter()\n"
    "import ctedge.cli\n"
    "dt = time.perf_counter() - t\n"
    "heavy = [m for m in ('torch', 'tensorrt', 'onnxruntime', 'pydicom') if m in sys.modules]\n"
    "print(json.dumps({'import_s': dt, 'heavy_modules': heavy}))\n"
)


def run_import_time(runs: int) -> dict:
    """`import ctedge.cli` in fresh interpreters (interpreter start excluded), median of runs."""
    samples, heavy = [], set()
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            raise CtedgeError(f"`import ctedge.cli` failed: {proc.stderr.strip()[-300:]}; "
                              "run python -c 'import ctedge.cli' to see why")
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        samples.append(data["import_s"])
        heavy.update(data["heavy_modules"])
    median = float(np.median(samples))
    return {"runs": runs, "median_s": median, "samples_s": samples,
            "heavy_modules_loaded": sorted(heavy), "target_s": TARGETS["import_s"],
            "met": median <= TARGETS["import_s"]}
