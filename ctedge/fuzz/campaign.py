"""Run N fuzz cases, each in a worker process with a memory limit and a time limit, and
count the failures by class.

Library cases: one mutated file in a folder named by the seed's patient ID (so path redaction
is exercised), read by `ctedge.fuzz.worker`. CLI cases: a small study with one or two mutated
slices, classified by `ctedge classify --format json` in its own process; exit 0 must give
strict JSON, exit 2 one line on stderr and no output file, and nothing may name the patient.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .mutate import mutate
from .seeds import Seed, real_seeds, synthetic_seeds

REPO = Path(__file__).resolve().parents[2]
FAILURES = ("crash", "hang", "killed", "leak", "warning")
# A case that has used its CPU-time limit hangs; one that has not, but has waited this many
# times the limit in wall time, is blocked (measured: on a 2-core machine at load 24, a
# 4-slice `ctedge classify` took over 10 x 60 s of wall time for a few CPU-seconds).
WALL_FACTOR = 30


@dataclass(frozen=True)
class CampaignConfig:
    """cases: library cases; cli_cases: whole-study cases through `ctedge classify`.
    seed: master seed (case i of seed s is always the same file). timeout_s / memory_mb: limits
    per library case; CLI cases get cli_timeout_s and cli_memory_mb. only: run just these case
    indices (replay). keep: folder to copy failing cases into. shared_data: real data root."""

    cases: int = 300
    cli_cases: int = 0
    seed: int = 0
    timeout_s: float = 20.0
    memory_mb: int = 1536
    cli_timeout_s: float = 60.0
    cli_memory_mb: int = 4096
    shared_data: Path | None = None
    only: tuple[int, ...] = ()
    keep: Path | None = None

    def __post_init__(self):
        if self.cases < 0 or self.cli_cases < 0:
            raise ValueError("cases and cli_cases must be >= 0")
        if self.timeout_s <= 0 or self.memory_mb < 256:
            raise ValueError("timeout_s must be > 0 and memory_mb >= 256")


@dataclass
class CampaignReport:
    """Counts by outcome, failure classes with their first example, and the run's timing."""

    seed: int
    outcomes: Counter = field(default_factory=Counter)
    classes: dict = field(default_factory=dict)  # key -> {"count", "outcome", "first"}
    wall_s: float = 0.0

    def add(self, mode: str, index: int, seed_name: str, mutation: str, result: dict) -> None:
        self.outcomes[f"{mode}:{result['outcome']}"] += 1
        if result["outcome"] in FAILURES:
            entry = self.classes.setdefault(result["key"], {
                "count": 0, "outcome": result["outcome"],
                "first": {"mode": mode, "case": index, "seed": seed_name, "mutation": mutation,
                          "detail": result.get("detail", "")}})
            entry["count"] += 1

    @property
    def failures(self) -> int:
        return sum(e["count"] for e in self.classes.values())

    def __bool__(self) -> bool:
        return self.failures == 0

    def to_dict(self) -> dict:
        return {"seed": self.seed, "wall_s": round(self.wall_s, 1), "failures": self.failures,
                "outcomes": dict(sorted(self.outcomes.items())),
                "classes": dict(sorted(self.classes.items(), key=lambda kv: -kv[1]["count"]))}

    def to_text(self) -> str:
        total = sum(self.outcomes.values())
        lines = [f"fuzz seed {self.seed}: {total} cases in {self.wall_s:.0f} s, "
                 f"{self.failures} failures in {len(self.classes)} classes",
                 "  " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))]
        for key, e in sorted(self.classes.items(), key=lambda kv: -kv[1]["count"]):
            f = e["first"]
            lines.append(f"  {e['count']:>5} x {e['outcome']:<7} {key}")
            lines.append(f"          first: {f['mode']} case {f['case']} ({f['seed']}: "
                         f"{f['mutation']}) {f['detail']}")
        return "\n".join(lines) + "\n"


def case_input(seeds: list[Seed], master: int, index: int) -> tuple[Seed, bytes, str]:
    """The mutated file of case `index`: deterministic for (seeds, master, index)."""
    rng = random.Random(f"ctedge-fuzz:{master}:{index}")
    seed = rng.choice(seeds)
    data, what = mutate(seed.data, rng, seed.encapsulated)
    if rng.random() < 0.25:  # sometimes two mutations at once
        data, more = mutate(data, rng, seed.encapsulated)
        what = f"{what}; {more}"
    return seed, data, what


def run_campaign(config: CampaignConfig, progress=None) -> CampaignReport:
    """Run the library cases, then the CLI cases; `progress(done, total, report)` is called
    after each case (the report so far: a long run can be read, or stopped, at any time)."""
    start = time.perf_counter()
    report = CampaignReport(seed=config.seed)
    seeds = synthetic_seeds() + real_seeds(REPO, config.shared_data)
    work = Path(tempfile.mkdtemp(prefix="ctedge-fuzz-"))
    try:
        indices = [i for i in config.only if i < config.cases] if config.only \
            else range(config.cases)
        with _Worker(config.memory_mb) as worker:
            for n, i in enumerate(indices):
                seed, data, what = case_input(seeds, config.seed, i)
                folder = _case_folder(work, seed, data, i)
                result = worker.run({"folder": str(folder),
                                     "identifiers": present(seed.identifiers, data),
                                     "direct": i % 2 == 0}, config.timeout_s)
                result["detail"] = _scrub(result.get("detail", ""), seed.identifiers)
                report.add("library", i, seed.name, what, result)
                _keep(config, result, folder, f"library-{i}")
                shutil.rmtree(folder.parent, ignore_errors=True)
                if progress:
                    report.wall_s = time.perf_counter() - start
                    progress(n + 1, len(indices) + config.cli_cases, report)
        if config.cli_cases:
            from .study_cases import run_cli_cases

            run_cli_cases(config, report, work, progress, offset=len(indices), start=start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.wall_s = time.perf_counter() - start
    return report


# Identifier elements: tag bytes (little endian) and VR.
_ID_ELEMENTS = ((b"\x10\x00\x10\x00", b"PN"), (b"\x10\x00\x20\x00", b"LO"),
                (b"\x10\x00\x30\x00", b"DA"), (b"\x08\x00\x50\x00", b"SH"))


def present(identifiers, data: bytes) -> list[str]:
    """The identifiers a mutated file still declares in an intact element (tag, VR, length
    and value as written): a reader must learn and redact those. One whose element the
    mutation damaged cannot be known, though the case's file and folder names carry it."""
    data = data + _inflated(data)
    out = []
    for value in identifiers:
        raw = value.encode("latin-1", "replace")
        padded = raw + b" " * (len(raw) % 2)
        n = len(padded)
        patterns = []
        for tag, vr in _ID_ELEMENTS:
            big = tag[1::-1] + tag[3:1:-1]
            patterns += [tag + vr + struct.pack("<H", n) + padded,
                         tag + struct.pack("<I", n) + padded,
                         big + vr + struct.pack(">H", n) + padded]
        if any(p in data for p in patterns):
            out.append(value)
    return out


def _inflated(data: bytes) -> bytes:
    """The data set of a deflated file, inflated (as far as it goes); b"" for other files."""
    import zlib

    from .mutate import top_level_elements

    meta = top_level_elements(data)
    if not meta or b"1.2.840.10008.1.2.1.99" not in data[:meta[-1].value + meta[-1].length]:
        return b""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        return inflater.decompress(data[meta[-1].value + meta[-1].length:], 1 << 24)
    except zlib.error:
        return b""


def _case_folder(work: Path, seed: Seed, data: bytes, index: int) -> Path:
    pid = _safe_name(seed.identifiers[0]) if seed.identifiers else "anon"
    folder = work / f"case{index}" / pid
    folder.mkdir(parents=True)
    (folder / f"{pid}_{index}.dcm").write_bytes(data)
    return folder


def _safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", value) or "anon"


def _scrub(text: str, identifiers) -> str:
    for value in identifiers:
        for part in {value, *value.replace("^", "-").split("-")}:
            if len(part) >= 4:
                text = re.sub(re.escape(part), "<id>", text, flags=re.IGNORECASE)
    return text


def _keep(config: CampaignConfig, result: dict, folder: Path, name: str) -> None:
    if config.keep is not None and result["outcome"] in FAILURES:
        target = config.keep / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder, target / folder.name)
        (target / "result.json").write_text(json.dumps(result, indent=2) + "\n")


def limited(memory_mb: int):
    """preexec_fn: cap the child's address space, give it its own process group."""
    def apply():
        os.setpgrp()
        _die_with_parent()
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the campaign process dies, so none is left behind."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def child_env() -> dict:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    env["PYTHONWARNINGS"] = "default"  # show, do not hide, what escapes
    return env


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used; -1 where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return -1.0


class _Worker:
    """A `ctedge.fuzz.worker` process, restarted after it dies or overruns a case."""

    command = [sys.executable, "-m", "ctedge.fuzz.worker"]
    import_allowance_s = 30.0  # a fresh worker's first case also pays for its imports

    def __init__(self, memory_mb: int):
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop()

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_env(),
            preexec_fn=limited(self.memory_mb))
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()

    @staticmethod
    def _read(proc, lines) -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def _stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None

    def run(self, request: dict, timeout_s: float) -> dict:
        """One case. A hang is `timeout_s` of CPU time spent on it (a worker starved by a
        loaded machine is not hanging), or WALL_FACTOR x that of wall time, whichever first."""
        fresh = self.proc is None
        if fresh:
            self._start()
        # The first case of a fresh worker also pays for its imports.
        budget = timeout_s + (self.import_allowance_s if fresh else 0.0)
        start_cpu, start_wall = _cpu_seconds(self.proc.pid), time.monotonic()
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            while True:
                try:
                    line = self.lines.get(timeout=min(budget, 5.0))
                    break
                except queue.Empty:
                    wall = time.monotonic() - start_wall
                    cpu = _cpu_seconds(self.proc.pid) - start_cpu if start_cpu >= 0 else wall
                    if cpu >= budget or wall >= WALL_FACTOR * budget:
                        self._stop()
                        return {"outcome": "hang", "key": f"hang: over {timeout_s:g} s",
                                "detail": f"{cpu:.0f} CPU-s, {wall:.0f} s"}
        except (BrokenPipeError, OSError):
            line = None
        if line is None:
            code = self.proc.wait()
            self.proc = None
            why = f"signal {-code}" if code < 0 else f"exit {code}"
            return {"outcome": "killed", "key": f"worker died ({why})", "detail": ""}
        return json.loads(line)
