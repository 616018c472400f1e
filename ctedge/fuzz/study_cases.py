"""Whole-study fuzz cases through the CLI: `ctedge classify --format json --out` on a small
study with one or two mutated slices, in its own limited process.

A case passes when the command exits 0 with strict JSON (no NaN/Infinity) or exits 2 with one
line on stderr and no output file, and when no patient identifier appears in stdout, stderr or
the JSON. Anything else (exit 1, a traceback, a raw library warning, a timeout) is a failure.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .campaign import REPO, WALL_FACTOR, _keep, _safe_name, _scrub, child_env, limited
from .mutate import mutate
from .seeds import (
    DEFLATED,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    J2K_LOSSLESS,
    RLE,
    SYNTHETIC_IDENTIFIERS,
    synthetic_slice,
)
from .worker import leaks

SAMPLE = REPO / "samples" / "P001-every8th"
SYNTAXES = (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED, RLE, J2K_LOSSLESS)


def run_cli_cases(config, report, work: Path, progress=None, offset: int = 0,
                  start: float | None = None) -> None:
    model = tiny_model(work / "tiny.onnx")
    for n in range(config.cli_cases):
        folder, identifiers, what = _study(work, config.seed, n)
        result = run_cli_case(folder, model, identifiers, config.cli_timeout_s,
                              config.cli_memory_mb)
        result["detail"] = _scrub(result.get("detail", ""), identifiers)
        report.add("cli", n, folder.parent.name, what, result)
        _keep(config, result, folder, f"cli-{n}")
        shutil.rmtree(folder.parent, ignore_errors=True)
        if progress:
            if start is not None:
                report.wall_s = time.perf_counter() - start
            progress(offset + n + 1, offset + config.cli_cases, report)


def _study(work: Path, master: int, index: int) -> tuple[Path, list[str], str]:
    """Case `index`: a 4-slice synthetic study (any encoding) or the repo's 19-slice sample,
    with one or two slices mutated."""
    rng = random.Random(f"ctedge-fuzz-cli:{master}:{index}")
    if SAMPLE.is_dir() and rng.random() < 0.25:
        kind = "sample"
        files = {p.name: p.read_bytes() for p in sorted(SAMPLE.glob("*.dcm"))}
        identifiers, encapsulated = ["98C14734-ASSH"], True
    else:
        syntax = rng.choice(SYNTAXES)
        kind = f"synthetic {syntax}"
        pid = _safe_name(SYNTHETIC_IDENTIFIERS[0])
        files = {f"{pid}_{k}.dcm": synthetic_slice(syntax, z=2.5 * k, instance=k + 1)
                 for k in range(4)}
        identifiers, encapsulated = list(SYNTHETIC_IDENTIFIERS), syntax in (RLE, J2K_LOSSLESS)
    folder = work / f"cli{index}" / _safe_name(identifiers[0])
    folder.mkdir(parents=True)
    names = sorted(files)
    changes = []
    for name in rng.sample(names, rng.choice([1, 1, 2])):
        files[name], what = mutate(files[name], rng, encapsulated)
        changes.append(what)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder, identifiers, f"{kind}: " + "; ".join(changes)


def run_cli_case(folder: Path, model: Path, identifiers, timeout_s: float,
                 memory_mb: int) -> dict:
    out = folder.parent / "result.json"
    cmd = [sys.executable, "-m", "ctedge.cli", "classify", str(folder), "--model", str(model),
           "--format", "json", "--out", str(out), "--workers", "1", "--batch-size", "4"]
    proc = run_limited(cmd, timeout_s, memory_mb)
    if proc is None:
        return {"outcome": "hang", "key": f"cli hang: over {timeout_s:g} s", "detail": ""}
    stderr_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    texts = [proc.stdout, proc.stderr]
    if proc.returncode == 0:
        try:
            text = out.read_text()
            json.loads(text, parse_constant=_reject_constant)
        except (OSError, ValueError) as exc:
            return {"outcome": "crash", "key": f"cli exit 0: invalid JSON ({type(exc).__name__})",
                    "detail": str(exc)[:100]}
        texts.append(text)
    elif proc.returncode == 2:
        if out.exists():
            return {"outcome": "crash", "key": "cli exit 2: output file written", "detail": ""}
        if len(stderr_lines) != 1 or "Traceback" in proc.stderr:
            return {"outcome": "crash", "key": "cli exit 2: not one line on stderr",
                    "detail": _last(stderr_lines)}
    elif proc.returncode < 0:
        return {"outcome": "killed", "key": f"cli killed (signal {-proc.returncode})",
                "detail": _last(stderr_lines)}
    else:
        return {"outcome": "crash", "key": f"cli exit {proc.returncode}: "
                f"{_error_kind(stderr_lines)}", "detail": _last(stderr_lines)}
    if any("Warning" in line and not line.startswith("ctedge:") for line in stderr_lines):
        return {"outcome": "warning", "key": "cli: raw library warning on stderr",
                "detail": _last(stderr_lines)}
    if leaks(texts, identifiers):
        return {"outcome": "leak", "key": f"cli exit {proc.returncode}: identifier in output",
                "detail": ""}
    return {"outcome": "ok", "key": "ok", "detail": ""}


def run_limited(cmd: list[str], timeout_s: float, memory_mb: int):
    """Run `cmd` in its own process group under the memory limit; None when the group has
    used `timeout_s` of CPU time (or WALL_FACTOR x that of wall time), else the completed
    process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=child_env(),
                                preexec_fn=limited(memory_mb))
        start = time.monotonic()
        while proc.poll() is None:
            time.sleep(0.2)
            wall = time.monotonic() - start
            cpu = _group_cpu_seconds(proc.pid)
            if (cpu if cpu >= 0 else wall) >= timeout_s or wall >= WALL_FACTOR * timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return None
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def _group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used by the live processes of a process group and their reaped children;
    -1 where /proc cannot tell."""
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 14 and fields[2] == str(pgid):
            found = True
            total += sum(int(v) for v in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK") if found else -1.0


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _last(lines: list[str]) -> str:
    return lines[-1][:160] if lines else ""


def _error_kind(lines: list[str]) -> str:
    """The exception type named in the last error line ('internal error: KeyError: ...')."""
    last = _last(lines)
    if "internal error:" in last:
        return last.split("internal error:")[1].split(":")[0].strip()
    return "traceback" if any("Traceback" in line for line in lines) else "other"


def tiny_model(path: Path, size: int = 32) -> Path:
    """A few-KB ctedge model (average pool, linear, softmax): the pipeline without the cost
    of ResNet-50."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..artifact import PAPER_CLASSES, ModelInfo, write_info
    from ..preprocess import Preprocessing

    rng = np.random.default_rng(0)
    n = len(PAPER_CLASSES)
    weight = numpy_helper.from_array(rng.normal(0, 2, (3, n)).astype(np.float32), "weight")
    bias = numpy_helper.from_array(np.zeros(n, np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n])],
        initializer=[weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    write_info(model, ModelInfo(classes=tuple(PAPER_CLASSES), negative_class=PAPER_CLASSES[0],
                                preprocessing=Preprocessing(size=size)))
    onnx.save(model, str(path))
    return path
