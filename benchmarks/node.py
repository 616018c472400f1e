"""Benchmark of `ctedge serve` against the issue's targets (this machine, loopback only):

1. receive throughput from one dcmtk `storescu` association (JPEG Lossless CT), instances/s;
2. latency from the end of the quiet period to the SR arriving at a destination, against the
   time `ctedge classify` takes for the same study (target: <= classify time + 1 s);
3. the node's resident memory over many studies received back to back (target: flat).

    python -m ctedge.benchmarks.node --out benchmarks/results/node-{date}

The node runs as its own process (`ctedge serve`); the destination is a small pynetdicom
Storage SCP inside this process that notes when each object arrives. Needs the node extra and
dcmtk (storescu). Writes node.json; numbers quoted in docs/node.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .machine import describe_machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout_s, what, every_s=0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")


class _Node:
    def __init__(self, folder: Path, model: Path, quiet_s: float, dest_port: int | None):
        self.folder, self.port = folder, _free_port()
        folder.mkdir(parents=True, exist_ok=True)
        lines = ['state_dir = "state"', f"port = {self.port}", f"quiet_period_s = {quiet_s}",
                 f'model = "{model.resolve()}"', "max_pdu = 0"]
        if dest_port:
            lines += ["[destination]", 'ae_title = "SINK"', 'host = "127.0.0.1"',
                      f"port = {dest_port}"]
        (folder / "node.toml").write_text("\n".join(lines) + "\n")
        self.state = folder / "state"
        log = open(folder / "node.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ctedge.cli", "serve", "--config", str(folder / "node.toml")],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        _wait(self._running, 120, "the node to start")

    def status(self) -> dict:
        try:
            return json.loads((self.state / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def _running(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError((self.folder / "node.log").read_text()[-2000:])
        s = self.status()
        return s.get("pid") == self.process.pid and s.get("state") == "running"

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def results(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in (self.state / "results").glob("*.json")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class _Sink:
    """A destination Storage SCP that records the arrival time of each object."""

    def __init__(self):
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.arrivals: list[tuple[float, str]] = []
        self.port = _free_port()
        ae = AE(ae_title="SINK")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)

        def on_store(event):
            self.arrivals.append((time.time(), str(event.dataset.StudyInstanceUID)))
            return 0x0000

        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, on_store)])

    def stop(self):
        self.server.shutdown()


def _storescu(port: int, folder: Path) -> float:
    start = time.perf_counter()
    run = subprocess.run(["storescu", "-xs", "+sd", "-aet", "BENCH", "-aec", "CTEDGE",
                          "127.0.0.1", str(port), str(folder)], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"storescu failed: {run.stderr[-500:]}")
    return time.perf_counter() - start


def throughput(study: Path, model: Path, work: Path, runs: int) -> dict:
    n = sum(1 for p in study.rglob("*") if p.is_file())
    rows = []
    for i in range(runs):
        node = _Node(work / f"recv{i}", model, quiet_s=3600, dest_port=None)
        try:
            seconds = _storescu(node.port, study)
            stored = _wait(lambda node=node: node.status().get("counters", {}).get(
                "instances_stored") == n and n, 10, "the status file to count every instance")
            rows.append({"seconds": round(seconds, 3), "instances_per_s": round(n / seconds, 1),
                         "stored": stored})
        finally:
            node.stop()
    best = max(r["instances_per_s"] for r in rows)
    return {"study_instances": n, "runs": rows, "best_instances_per_s": best,
            "dcmtk_storescp_instances_per_s": _storescp_reference(study, work, n),
            "target_instances_per_s": 100, "met": best >= 100}


def _storescp_reference(study: Path, work: Path, n: int) -> float | None:
    """The same transfer into dcmtk's own storescp (C++, no fsync): what the machine allows."""
    if shutil.which("storescp") is None:
        return None
    port, out = _free_port(), work / "storescp"
    out.mkdir()
    scp = subprocess.Popen(["storescp", "-od", str(out), "+xa", "-aet", "CTEDGE", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        return round(n / _storescu(port, study), 1)
    finally:
        scp.terminate()
        scp.wait(10)


def latency(studies: list[Path], model: Path, work: Path, quiet_s: float) -> dict:
    sink = _Sink()
    node = _Node(work / "latency", model, quiet_s=quiet_s, dest_port=sink.port)
    rows = []
    try:
        for study in studies:
            start = time.perf_counter()
            cli = subprocess.run([sys.executable, "-m", "ctedge.cli", "classify", str(study),
                                  "--model", str(model), "--format", "json", "--out",
                                  str(work / "cli.json")], capture_output=True, text=True)
            cli_s = time.perf_counter() - start
            if cli.returncode != 0:
                raise RuntimeError(cli.stderr)
            before = len(sink.arrivals)
            _storescu(node.port, study)
            _wait(lambda b=before: len(sink.arrivals) > b, 600, "the SR")
            arrived = sink.arrivals[-1][0]
            spool = max((node.state / "spool").glob("[0-9a-f]*"), key=lambda p: p.stat().st_mtime)
            last = max(p.stat().st_mtime for p in spool.glob("*.dcm"))
            result = json.loads((node.state / "results" / f"{spool.name}.json").read_text())
            after_quiet = arrived - (last + quiet_s)
            rows.append({"slices": len(list(spool.glob("*.dcm"))),
                         "cli_classify_s": round(cli_s, 2),
                         "node_classify_s": result["node"]["classify_s"],
                         "sent_after_quiet_s": round(after_quiet, 2),
                         "overhead_s": round(after_quiet - result["node"]["classify_s"], 2),
                         "met": after_quiet <= cli_s + 1.0})
    finally:
        node.stop()
        sink.stop()
    return {"quiet_period_s": quiet_s, "studies": rows, "met": all(r["met"] for r in rows)}


def memory(study: Path, model: Path, work: Path, count: int) -> dict:
    """Send `count` copies of `study` (new UIDs each) back to back; sample the node's RSS."""
    import pydicom
    from pydicom.uid import generate_uid
    from pynetdicom import AE

    originals = [pydicom.dcmread(p) for p in sorted(study.iterdir()) if p.is_file()]
    node = _Node(work / "memory", model, quiet_s=0.5, dest_port=None)
    samples = [(0, round(node.rss_mb(), 1))]
    try:
        ae = AE(ae_title="BENCH")
        for sop_class, syntax in {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID))
                                  for d in originals}:
            ae.add_requested_context(sop_class, syntax)
        for i in range(count):
            study_uid, series_uid = generate_uid(), generate_uid()
            assoc = ae.associate("127.0.0.1", node.port, ae_title="CTEDGE")
            for ds in originals:
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code != 0:
                    log = (node.folder / "node.log").read_text()[-1500:]
                    raise RuntimeError(f"study {i}: C-STORE status {code}; node log:\n{log}")
            assoc.release()
            if i % 10 == 9:
                samples.append((len(node.results()), round(node.rss_mb(), 1)))
        while len(node.results()) < count:
            time.sleep(1.0)
            samples.append((len(node.results()), round(node.rss_mb(), 1)))
        samples.append((count, round(node.rss_mb(), 1)))
    finally:
        node.stop()
    rss = [mb for done, mb in samples if done >= 1]
    first, last = rss[: max(1, len(rss) // 5)], rss[-max(1, len(rss) // 5):]
    growth = sum(last) / len(last) - sum(first) / len(first)
    return {"studies": count, "slices_per_study": len(originals),
            "samples_results_done_rss_mb": samples, "growth_mb_first_to_last_fifth":
            round(growth, 1), "met": growth < 50}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = Path("../shared/data/covid-ct-md")
    parser.add_argument("--model", type=Path, default=Path("models/ctedge-resnet50-ucsd.onnx"))
    parser.add_argument("--recv-study", type=Path, default=data / "Normal" / "normal001")
    parser.add_argument("--recv-runs", type=int, default=3)
    parser.add_argument("--latency-study", type=Path, action="append")
    parser.add_argument("--quiet", type=float, default=2.0)
    parser.add_argument("--memory-study", type=Path, default=Path("samples/P001-every8th"))
    parser.add_argument("--memory-studies", type=int, default=100)
    parser.add_argument("--memory-model", type=Path, default=None,
                        help="model for the memory section (default: --model)")
    parser.add_argument("--sections", default="throughput,latency,memory")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    work = Path(tempfile.mkdtemp(prefix="ctedge-node-bench-"))
    out = Path(str(args.out).replace("{date}", time.strftime("%Y-%m-%d")))
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": describe_machine(), "model": str(args.model),
              "load_average_start": os.getloadavg()}

    def save(section: str, value: dict) -> None:  # after each section: a long run keeps its part
        report[section] = value
        report["load_average_end"] = os.getloadavg()
        (out / "node.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps({k: v for k, v in value.items() if not k.startswith("samples")}),
              flush=True)

    try:
        if "throughput" in sections:
            save("throughput", throughput(args.recv_study, args.model, work, args.recv_runs))
        if "latency" in sections:
            studies = args.latency_study or [data / "COVID-19" / "P001"]
            save("latency", latency(studies, args.model, work, args.quiet))
        if "memory" in sections:
            model = args.memory_model or args.model
            save("memory", {"model": str(model), **memory(args.memory_study, model, work,
                                                           args.memory_studies)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out / 'node.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
