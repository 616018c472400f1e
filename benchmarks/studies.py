"""End to end, DICOM folder to decision: cold (a fresh `ctedge classify` process) and warm
(in-process, model loaded), with the pipeline's stage breakdown; the plain loop as a peer; and
`import ctedge.cli` time.

Where the wall time goes (seconds, from the pipeline's own `timings_s`): startup (cold only:
interpreter start, imports and writing the result, = cold wall - total), index (header read;
the pipeline calls it `read`), workers (starting the decode processes), load (model), wait
(the main process waiting for decoded slices), infer, decide; total is the pipeline's wall.
decode and preprocess are seconds inside the decode processes summed over slices, not wall
time of the study.

The plain loop (`ctedge.benchmarks.plain_loop`: what a user writes first) runs cold in the same
rounds, alternating with every ctedge model (plain, model 1, model 2, plain, ...), so each
round gives a ctedge/plain wall-time ratio measured under the same load.
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

STAGES = ("startup", "index", "workers", "load", "wait", "infer", "decide", "total", "decode",
          "preprocess")
WALL_STAGES = ("startup", "index", "workers", "load", "wait", "infer", "decide")
# The edge-runtime issue's targets on the 2-core development machine, FP32 ONNX Runtime.
TARGETS = {"study_total_s": 6.0, "study_slices": 150, "import_s": 0.5}
# The pipeline issue's speed targets (2-core machine, cold processes, ratios from one run).
SPEED_TARGETS = {"fp32_vs_plain": 0.6, "int8_study_s": 2.0, "full_study_slices": (130, 170),
                 "sample_s": 1.0, "sample_slices": (1, 32), "peak_rss_bytes": 800 * 2 ** 20}
PLAIN = "plain loop (pydicom + PIL + ONNX Runtime batch 1)"


def stage_times(timings: dict, wall: float | None = None) -> dict[str, float | None]:
    """The pipeline's timings_s under the benchmark's stage names; `wall` (a cold run's) gives
    the startup stage."""
    out = {}
    for stage in STAGES:
        value = timings.get(stage)
        if value is None and stage == "index":
            value = timings.get("read")
        if stage == "startup" and wall is not None and timings.get("total") is not None:
            value = max(0.0, wall - float(timings["total"]))
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
    wall, code, usage, stdout, stderr = _run_child(cmd, timeout_s)
    if code is None:
        raise CtedgeError(f"{study_dir}: `ctedge classify` took over {timeout_s:.0f} s; "
                          "check the study with `ctedge classify` directly")
    if code != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {code}"
        raise CtedgeError(f"{study_dir}: `ctedge classify` failed in the cold run ({last}); "
                          "run it directly with --debug to see why")
    result = json.loads(stdout)
    return {"wall_s": wall, "cpu_s": _cpu_s(usage), "peak_rss_bytes": usage.ru_maxrss * 1024,
            "stages_s": stage_times(result.get("timings_s", {}), wall), **_summary(result)}


def _cpu_s(usage) -> float:
    """User + system CPU seconds of a child and the children it waited for (decode workers):
    steadier than wall time on a shared machine, and what the cores had to do."""
    return float(usage.ru_utime + usage.ru_stime)


def run_plain_cold(study_dir: Path, model: ModelUnderTest, timeout_s: float = 600) -> dict:
    """One fresh process of the plain loop on `model` (an FP32 .onnx): wall time and peak RSS."""
    cmd = [sys.executable, "-m", "ctedge.benchmarks.plain_loop", str(study_dir),
           str(model.path)]
    wall, code, usage, stdout, stderr = _run_child(cmd, timeout_s)
    if code is None:
        raise CtedgeError(f"{study_dir}: the plain loop took over {timeout_s:.0f} s")
    if code != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
        raise CtedgeError(f"{study_dir}: the plain loop failed ({last}); run python -m "
                          "ctedge.benchmarks.plain_loop STUDY MODEL to see why")
    result = json.loads(stdout.strip().splitlines()[-1])
    stages = dict.fromkeys(STAGES)
    stages["total"] = result["wall_s"]
    stages["startup"] = max(0.0, wall - result["wall_s"])
    return {"wall_s": wall, "cpu_s": _cpu_s(usage), "peak_rss_bytes": usage.ru_maxrss * 1024,
            "stages_s": stages, "slices_read": result["slices"],
            "slices_classified": result["slices"], "decision": result["label"]}


def _run_child(cmd: list[str], timeout_s: float):
    """Run one fresh process: (wall s, exit code or None on timeout, its rusage, stdout,
    stderr). The child is killed at the timeout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            _, status, usage = _wait4(proc, timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return time.perf_counter() - start, None, None, "", ""
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return wall, os.waitstatus_to_exitcode(status), usage, stdout, stderr


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
    cpu = [r["cpu_s"] for r in runs if r.get("cpu_s") is not None]
    return {
        "runs": len(runs),
        "wall_median_s": wall,
        "wall_s": walls,
        "cpu_median_s": float(np.median(cpu)) if cpu else None,
        "stages_median_s": stages,
        "slices_read": slices,
        "slices_classified": runs[0].get("slices_classified"),
        "slices_per_s": slices / wall if wall > 0 else None,
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
        "decision": runs[0].get("decision"),
    }


def run_studies(studies: list[Path], models: list[ModelUnderTest], cold_runs: int,
                warm_runs: int, threads: int = 0, plain: ModelUnderTest | None = None) -> dict:
    """Every study x model, cold then warm; a study that is missing is reported, not fatal.

    plain: an FP32 .onnx for the plain loop, run cold in the same alternating rounds.
    """
    try:
        import ctedge.pipeline  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"ctedge.pipeline is not importable here ({exc})"}
    results = []
    for study in studies:
        labels = ([PLAIN] if plain is not None else []) + [m.label for m in models]
        entries = {label: {"study": _study_name(study), "path": str(study), "model": label}
                   for label in labels}
        if not study.is_dir():
            for entry in entries.values():
                entry["skipped"] = f"{study}: not found (shared data absent?)"
            results += entries.values()
            continue
        cold: dict[str, list[dict]] = {label: [] for label in labels}
        for _ in range(cold_runs):  # one round: plain, then each model, under the same load
            for label in labels:
                entry = entries[label]
                if "error" in entry:
                    continue
                try:
                    if label == PLAIN:
                        cold[label].append(run_plain_cold(study, plain))
                    else:
                        model = next(m for m in models if m.label == label)
                        cold[label].append(run_cold(study, model))
                except CtedgeError as exc:  # one bad study or model must not lose the others
                    entry["error"] = str(exc)
        for label in labels:
            if "error" not in entries[label]:
                entries[label]["cold"] = summarize_runs(cold[label])
        for model in models:
            entry = entries[model.label]
            if "error" in entry:
                continue
            try:
                backend = model.open(threads)
                try:
                    run_warm(study, backend, model)  # warm-up: page cache, imports
                    entry["warm"] = summarize_runs([run_warm(study, backend, model)
                                                    for _ in range(warm_runs)])
                finally:
                    backend.close()
            except CtedgeError as exc:
                entry.pop("cold", None)
                entry["error"] = str(exc)
            if plain is not None and cold[PLAIN] and "cold" in entry:
                entry["vs_plain"] = ratio_per_round(cold[model.label], cold[PLAIN])
        results += entries.values()
    return {"stages": list(STAGES), "wall_stages": list(WALL_STAGES), "results": results,
            "targets": targets_met(results), "speed_targets": speed_targets(results)}


def ratio_per_round(runs: list[dict], plain_runs: list[dict]) -> dict:
    """ctedge wall / plain-loop wall, round by round (< 1: ctedge is faster)."""
    ratios = [r["wall_s"] / p["wall_s"] for r, p in zip(runs, plain_runs, strict=False)]
    return {"per_round": ratios, "median": float(np.median(ratios)), "min": min(ratios),
            "max": max(ratios)}


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


def speed_targets(results: list[dict]) -> list[dict]:
    """The pipeline issue's targets, each with what was measured and whether it was met."""
    lo, hi = SPEED_TARGETS["full_study_slices"]
    small_lo, small_hi = SPEED_TARGETS["sample_slices"]
    out = []
    for r in results:
        cold = r.get("cold")
        if cold is None:
            continue
        slices, wall = cold["slices_read"] or 0, cold["wall_median_s"]
        full, small = lo <= slices <= hi, small_lo <= slices <= small_hi
        row = {"study": r["study"], "model": r["model"], "slices": slices}
        if full and "fp32" in r["model"] and "vs_plain" in r:
            ratio = r["vs_plain"]["median"]
            out.append({**row, "target": f"cold wall <= {SPEED_TARGETS['fp32_vs_plain']}x "
                        "the plain loop's", "measured": ratio,
                        "met": ratio <= SPEED_TARGETS["fp32_vs_plain"]})
        if full and "int8" in r["model"]:
            out.append({**row, "target": f"cold wall <= {SPEED_TARGETS['int8_study_s']} s",
                        "measured": wall, "met": wall <= SPEED_TARGETS["int8_study_s"]})
        if small and r["model"] != PLAIN:
            out.append({**row, "target": f"cold wall <= {SPEED_TARGETS['sample_s']} s",
                        "measured": wall, "met": wall <= SPEED_TARGETS["sample_s"]})
        if r["model"] != PLAIN:
            rss = cold["peak_rss_bytes"]
            out.append({**row, "target": "peak RSS <= 800 MiB", "measured": rss / 2 ** 20,
                        "met": rss <= SPEED_TARGETS["peak_rss_bytes"]})
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
