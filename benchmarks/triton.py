"""Throughput of N concurrent `ctedge classify` clients through one Triton server against N
independent local processes, and per-study latency through Triton, on this machine.

    python -m ctedge.benchmarks.triton --study samples/P001-every8th \\
        --latency-study ../shared/data/covid-ct-md/COVID-19/P001 --clients 1,2,4 --out out/triton

Each client is a whole `ctedge classify` process (a scanner-side box: it decodes and
preprocesses its own study); in `triton` mode inference goes to a local tritonserver that
serves the same model through the Python backend (ctedge's ONNX Runtime inside), in `local`
mode each process runs ONNX Runtime itself. Modes alternate (local, triton) for every N, so
both see the same background load. Server and clients share this machine's cores, so this
measures the overhead and batching of the server path, not a GPU server's capacity
(docs/triton.md estimates that from the per-study work measured here).
Writes triton-bench.json and triton-bench.md under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def classify_command(study: Path, model: Path, out: Path, url: str | None) -> list[str]:
    command = [sys.executable, "-m", "ctedge.cli", "classify", str(study), "--model", str(model),
               "--format", "json", "--out", str(out)]
    if url:
        command += ["--backend", "triton", "--url", url]
    return command


def run_clients(n: int, study: Path, model: Path, url: str | None, workdir: Path) -> dict:
    """Start n classify processes at once; wall time of the whole wave and of each client."""
    outs = [workdir / f"{'triton' if url else 'local'}-{n}-{i}.json" for i in range(n)]
    start = time.perf_counter()
    procs = [(subprocess.Popen(classify_command(study, model, o, url), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE), o) for o in outs]
    latencies = []
    for proc, _ in procs:
        _, err = proc.communicate()
        latencies.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"classify failed ({proc.returncode}): {err.decode()[-500:]}")
    wall = time.perf_counter() - start
    results = [json.loads(o.read_text()) for o in outs]
    slices = sum(r["study"]["slices_classified"] for r in results)
    return {
        "clients": n, "mode": "triton" if url else "local", "wall_s": round(wall, 3),
        "studies_per_min": round(60 * n / wall, 2), "slices_per_s": round(slices / wall, 2),
        "latency_s_median": round(statistics.median(latencies), 3),
        "latency_s_max": round(max(latencies), 3),
        "infer_s_mean": round(statistics.mean(r["timings_s"]["infer"] for r in results), 3),
        "labels": sorted({r["decision"]["label"] for r in results}),
    }


def inference_worker(model: Path, url: str | None, batches: int, batch: int,
                     start_at: float) -> dict:
    """One client process of the inference-only comparison: open the backend (local ORT, or
    Triton at `url`), warm up, wait for the common start time, infer `batches` batches."""
    import numpy as np

    from ctedge.backends import open_backend

    backend = (open_backend(model, "triton", url=url, model_name="ctedge", timeout_s=600)
               if url else open_backend(model))
    with backend:
        x = np.random.default_rng(0).normal(0, 1, (batch, *backend.info.input_shape))
        x = x.astype(np.float32)
        backend.infer(x)
        time.sleep(max(0.0, start_at - time.time()))
        begin = time.time()
        for _ in range(batches):
            backend.infer(x)
        return {"begin": begin, "end": time.time(), "slices": batches * batch}


def run_inference_only(n: int, model: Path, url: str | None, batches: int, batch: int) -> dict:
    """n processes infer preprocessed batches at the same moment: slices/s of the whole group.
    Isolates inference (no decoding, no process start) from the per-study numbers."""
    start_at = time.time() + 8 + 2 * n  # after every process has imported and warmed up
    command = [sys.executable, "-m", "ctedge.benchmarks.triton", "--worker", str(model),
               url or "-", str(batches), str(batch), repr(start_at)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(n)]
    parts = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"inference worker failed: {err.decode()[-500:]}")
        parts.append(json.loads(out.decode().strip().splitlines()[-1]))
    if min(p["begin"] for p in parts) < start_at - 0.5:
        raise RuntimeError("a worker started late; raise the start delay")
    wall = max(p["end"] for p in parts) - min(p["begin"] for p in parts)
    slices = sum(p["slices"] for p in parts)
    return {"clients": n, "mode": "triton" if url else "local", "wall_s": round(wall, 3),
            "slices_per_s": round(slices / wall, 2), "batch": batch}


def max_probability_difference(a: dict, b: dict) -> float:
    diffs = [abs(x["probabilities"][k] - y["probabilities"][k])
             for x, y in zip(a["slices"], b["slices"], strict=True) if x["probabilities"]
             for k in x["probabilities"]]
    return max(diffs) if diffs else 0.0


def latency(study: Path, model: Path, url: str, workdir: Path, repeats: int) -> dict:
    """One client at a time, `repeats` times per mode (alternating): per-study wall time and
    the classify result's own timings; parity of the two results."""
    runs: dict[str, list[dict]] = {"local": [], "triton": []}
    results = {}
    for _ in range(repeats):
        for mode, target in (("local", None), ("triton", url)):
            out = workdir / f"latency-{mode}.json"
            start = time.perf_counter()
            subprocess.run(classify_command(study, model, out, target), check=True,
                           stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            results[mode] = json.loads(out.read_text())
            runs[mode].append({"wall_s": wall, **results[mode]["timings_s"]})
    summary = {}
    for mode, items in runs.items():
        summary[mode] = {key: round(statistics.median(i[key] for i in items), 3)
                         for key in ("wall_s", "read", "decode", "preprocess", "infer", "total")}
    local, remote = results["local"], results["triton"]
    summary["slices"] = local["study"]["slices_read"]
    summary["slices_classified"] = local["study"]["slices_classified"]
    summary["same_decision"] = local["decision"]["label"] == remote["decision"]["label"]
    summary["max_abs_dp"] = max_probability_difference(local, remote)
    return summary


def main(argv: list[str] | None = None) -> int:
    from ctedge.artifact import default_model_path
    from ctedge.triton.repository import RepositoryConfig, export_repository
    from ctedge.triton.server import LocalTritonServer

    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        model, url, batches, batch, start_at = sys.argv[2:7]
        print(json.dumps(inference_worker(Path(model), None if url == "-" else url,
                                          int(batches), int(batch), float(start_at))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="study each client classifies")
    parser.add_argument("--latency-study", type=Path, default=None,
                        help="study for per-study latency (default: --study)")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--clients", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=2, help="latency runs per mode")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--inference-batches", type=int, default=6,
                        help="batches of 16 per client in the inference-only comparison "
                             "(0: skip it)")
    parser.add_argument("--skip-studies", action="store_true",
                        help="only the inference-only comparison")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    model = args.model or default_model_path()
    counts = [int(c) for c in args.clients.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctedge-triton-bench-") as tmp:
        workdir = Path(tmp)
        export_repository(model, workdir / "repo", RepositoryConfig(
            python_backend=True, max_batch=args.max_batch))
        with LocalTritonServer(workdir / "repo") as server:
            url = server.http_url
            waves, inference, lat = [], [], None
            if not args.skip_studies:
                run_clients(1, args.study, model, url, workdir)  # warm-up: both paths, cache
                run_clients(1, args.study, model, None, workdir)
                for n in counts:
                    for target in (None, url):
                        waves.append(run_clients(n, args.study, model, target, workdir))
                        print(json.dumps(waves[-1]), flush=True)
                lat = latency(args.latency_study or args.study, model, url, workdir,
                              args.repeats)
                print(json.dumps(lat), flush=True)
            for n in counts if args.inference_batches else []:
                for target in (None, url):
                    inference.append(run_inference_only(n, model, target,
                                                        args.inference_batches, 16))
                    print(json.dumps(inference[-1]), flush=True)
            stats = _batch_stats(url)
    report = {
        "machine": {"cpus": os.cpu_count(), "processor": _cpu_name(),
                    "python": platform.python_version(), "load_avg_at_end": os.getloadavg()},
        "model": str(model), "study": str(args.study),
        "latency_study": str(args.latency_study or args.study),
        "waves": waves, "latency": lat, "inference_only": inference,
        "server_batch_stats": stats,
    }
    (args.out / "triton-bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "triton-bench.md").write_text(_markdown(report))
    print(f"wrote {args.out / 'triton-bench.json'} and triton-bench.md")
    return 0


def _batch_stats(url: str) -> dict:
    """{batch size: executions} the server ran over the whole benchmark."""
    import tritonclient.http as http

    stats = http.InferenceServerClient(url).get_inference_statistics("ctedge")["model_stats"][0]
    return {str(b["batch_size"]): b["compute_infer"]["count"] for b in stats["batch_stats"]}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _markdown(report: dict) -> str:
    lines = [f"# Triton against local processes ({report['machine']['cpus']} CPUs, "
             f"{report['machine']['processor']})", "",
             f"Model `{Path(report['model']).name}`, study `{report['study']}`.", "",
             "| clients | mode | wall s | studies/min | slices/s | latency median s | "
             "latency max s |", "|---|---|---|---|---|---|---|"]
    for w in report["waves"]:
        lines.append(f"| {w['clients']} | {w['mode']} | {w['wall_s']} | {w['studies_per_min']} "
                     f"| {w['slices_per_s']} | {w['latency_s_median']} | {w['latency_s_max']} |")
    if report["inference_only"]:
        lines += ["", "Inference only (preprocessed batches of 16, warm clients):", "",
                  "| clients | mode | wall s | slices/s |", "|---|---|---|---|"]
        lines += [f"| {r['clients']} | {r['mode']} | {r['wall_s']} | {r['slices_per_s']} |"
                  for r in report["inference_only"]]
    lat = report["latency"]
    if lat is None:
        return "\n".join(lines + [""])
    lines += ["", f"Per-study latency, one client, `{report['latency_study']}` "
              f"({lat['slices']} slices, {lat['slices_classified']} classified), medians:", "",
              "| mode | wall s (process) | read | decode (sum) | infer | total |",
              "|---|---|---|---|---|---|"]
    for mode in ("local", "triton"):
        m = lat[mode]
        lines.append(f"| {mode} | {m['wall_s']} | {m['read']} | {m['decode']} | {m['infer']} "
                     f"| {m['total']} |")
    lines += ["", f"Same decision: {lat['same_decision']}; max |dp| {lat['max_abs_dp']:.2e}.",
              f"Server batches (size: executions): {report['server_batch_stats']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
