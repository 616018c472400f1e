"""`run_bench(config)`: every requested section, one JSON-ready report; `write_outputs` writes
bench.json, report.md and the plots under the output folder (each file atomically).

Order of work: everything that can fail on a missing backend or model is checked first, before
any measurement, so a run that cannot finish fails in seconds with a message that says why.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path

from ctedge.errors import BackendUnavailable, CtedgeError

from . import schema
from .config import DEFAULT_MANIFEST, DEFAULT_STUDIES, BenchConfig
from .machine import describe_machine
from .models import ModelUnderTest, engine_model, reference_model, select_models
from .runners import PEER_LABELS, CtedgeRunner, install_hint

DISCLAIMER = "ctedge is decision support, not a medical device."
RESNET50_CONVS = 53  # Conv nodes of a torchvision ResNet-50 graph (49 + 4 downsample)


def installed(module: str) -> bool:
    """Whether an optional library is importable here (without importing it)."""
    return importlib.util.find_spec(module) is not None


def peer_status(peer: str, reference: ModelUnderTest | None, torch_factory) -> str | None:
    """None when `peer` can run here, else why not (one line)."""
    family = peer.split("-")[0]
    needs = {"torch": ("torch",), "openvino": ("openvino", "nncf") if peer.endswith("int8")
             else ("openvino",), "ort": ("onnxruntime",)}[family]
    missing = [m for m in needs if not installed(m)]
    if missing:
        return f"not installed ({install_hint(peer)})"
    if reference is None:
        return "needs the FP32 .onnx model among --model"
    if family == "torch":
        if "graph" in peer:
            import torch

            if not torch.cuda.is_available():
                return "needs a CUDA GPU (none visible to torch)"
        if torch_factory is None and _conv_count(reference.path) != RESNET50_CONVS:
            return "the model is not a ResNet-50; PyTorch peers must time the same architecture"
    return None


def _conv_count(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sum(node.op_type == "Conv" for node in model.graph.node)


def resolve_peers(config: BenchConfig, reference, torch_factory) -> tuple[list[str], dict]:
    """(peers to run, {peer: why not} for the rest); raises when a requested one cannot run."""
    run, skipped = [], {}
    if "peers" not in config.sections and "accuracy" not in config.sections:
        return run, skipped
    for peer in config.peers:
        why = peer_status(peer, reference, torch_factory)
        if why is None:
            run.append(peer)
        elif config.requested_peers:
            raise BackendUnavailable(f"peer {peer} ({PEER_LABELS[peer]}) was requested but "
                                     f"cannot run here: {why}; drop it from --peers")
        else:
            skipped[peer] = why
    return run, skipped


class _Context:
    """What building peers needs, loaded once: the reference model, calibration inputs."""

    def __init__(self, config: BenchConfig, models: list[ModelUnderTest],
                 reference: ModelUnderTest | None, torch_factory):
        self.config, self.reference, self.torch_factory = config, reference, torch_factory
        self.models = models
        self._calibration = None
        self._ov_int8 = None  # NNCF result, reused by the accuracy and peers sections
        self.calibration_info: dict = {}

    def calibration(self):
        if self._calibration is None:
            from ctedge.artifact import read_info
            from ctedge.export.slices import discover, load_inputs, split_slices

            source = self.config.calibration or self.config.data
            refs = discover(source, self.config.data_root)
            split = split_slices(refs, calib_size=self.config.calibration_size)
            info = read_info(self.reference.path)
            self._calibration = load_inputs(split.calibration, info.preprocessing)
            sha = split.calibration_sha256
            # Same slices as the INT8 engine? Its metadata records the slice list's hash.
            engine_shas = {q.get("slices_sha256") for q in self._int8_quantization()} - {None}
            self.calibration_info = {
                "source": str(source), "slices": len(split.calibration), "sha256": sha,
                "matches_int8_model": (sha in engine_shas) if engine_shas else None}
        return self._calibration

    def _int8_quantization(self) -> list[dict]:
        """Calibration records of the INT8 models: ONNX metadata and engine manifests."""
        from ctedge.artifact import read_info
        from ctedge.backends import resolve

        from .models import manifest_of

        out = []
        for m in self.models:
            if m.precision != "int8":
                continue
            file, _ = resolve(m.path)
            if file.suffix == ".onnx":
                out.append(read_info(file).quantization)
            calibration = manifest_of(m.path).get("calibration") or {}
            out.append({"slices_sha256": calibration.get("calibration_slices_sha256")
                        or calibration.get("slices_sha256")})
        return out

    def make_peer(self, peer: str):
        from .runners import OpenVinoRunner, TorchRunner, resnet50_factory

        threads = self.config.threads
        if peer == "ort-fp32":
            runner = CtedgeRunner(self.reference, threads)
            runner.name, runner.label = peer, PEER_LABELS[peer]
            return runner
        if peer.startswith("openvino"):
            precision = peer.split("-")[1]
            calibration = self.calibration() if precision == "int8" else None
            runner = OpenVinoRunner(self.reference.path, precision, calibration, threads,
                                    quantized=self._ov_int8 if precision == "int8" else None)
            if precision == "int8":
                self._ov_int8 = runner.model
            return runner
        classes = self.reference.classes
        if self.torch_factory is not None:
            make, real = self.torch_factory, False
        else:
            make, real = resnet50_factory(len(classes), self.config.checkpoint)
        return TorchRunner(peer, make, real, threads)


def run_bench(config: BenchConfig, torch_factory: Callable | None = None,
              log: Callable[[str], None] = lambda s: None,
              command: str = "ctedge.benchmarks.harness.run_bench (Python API)") -> dict:
    """Run the configured sections and return the report (see `schema`).

    torch_factory: () -> torch module with the same architecture as the model, for models
        that are not ResNet-50 (tests use it with tiny models); weights are then random.
    """
    started = time.perf_counter()
    models, models_skipped = select_models(config)
    reference = reference_model(models)
    engine = engine_model(models, config.engine)
    peers, peers_skipped = resolve_peers(config, reference, torch_factory)
    if "accuracy" in config.sections and reference is None:
        raise CtedgeError("the accuracy section needs the FP32 .onnx reference among --model; "
                          "add it or drop accuracy from --sections")
    ctx = _Context(config, models, reference, torch_factory)
    size = (ctx_info := _info(reference or engine)).preprocessing.size
    report = schema.new_report(config, describe_machine(), DISCLAIMER, command)
    report["models"] = [m.to_dict() for m in models]
    report["models_skipped"] = models_skipped
    report["engine"] = engine.to_dict()
    sections = report["sections"]

    for name in config.sections:
        log(f"bench: {name} ...")
        t0 = time.perf_counter()
        try:
            sections[name] = _SECTIONS[name](config, models, reference, engine, peers,
                                             peers_skipped, ctx, size, ctx_info, sections)
        except CtedgeError as exc:
            sections[name] = {"error": str(exc)}
        sections[name]["section_s"] = time.perf_counter() - t0
        log(f"bench: {name} done in {sections[name]['section_s']:.1f} s")
    report["duration_s"] = time.perf_counter() - started
    schema.validate(report)
    return report


def _info(model: ModelUnderTest):
    from ctedge.artifact import read_info
    from ctedge.backends import resolve

    file, _ = resolve(model.path)
    if file.suffix != ".onnx":
        with model.open() as backend:
            return backend.info
    return read_info(file)


# --- sections: each returns a JSON-ready dict ------------------------------------------------

def _accuracy(config, models, reference, engine, peers, peers_skipped, ctx, size, info, done):
    from .accuracy import run_accuracy

    if config.data == DEFAULT_MANIFEST and not config.data_root.is_dir():
        return {"skipped": f"default labelled set needs {config.data_root} (shared data)"}
    ref_runner = CtedgeRunner(reference, config.threads)
    candidates = [(m.label, CtedgeRunner(m, config.threads), m.precision) for m in models
                  if m != reference]
    for peer in peers:
        if peer == "ort-fp32" or "graph" in peer:
            continue  # same model as the reference / GPU-only duplicates of torch-fp32
        if peer.startswith("torch") and config.checkpoint is None:
            continue  # random weights: timing only
        runner = ctx.make_peer(peer)
        if runner.real_weights:
            precision = {"openvino-int8": "int8", "torch-bf16-cl": "bf16"}.get(peer, "fp32")
            candidates.append((runner.label, runner, precision))
        else:
            runner.close()
    try:
        out = run_accuracy(config.data, config.data_root, config.split, config.limit,
                           (reference.label, ref_runner, info), candidates)
    finally:
        ref_runner.close()
        for _, runner, _ in candidates:
            runner.close()
    if ctx.calibration_info:
        out["openvino_calibration"] = ctx.calibration_info
    return out


def _throughput(config, models, reference, engine, peers, peers_skipped, ctx, size, info, done):
    from .throughput import run_throughput

    return run_throughput(models, lambda m: CtedgeRunner(m, config.threads), size,
                          config.batch_sizes, config.timing)


def _peers(config, models, reference, engine, peers, peers_skipped, ctx, size, info, done):
    from .throughput import compare_peer

    rows = [{"peer": p, "label": PEER_LABELS[p], "status": why}
            for p, why in peers_skipped.items()]
    with CtedgeRunner(engine, config.threads) as engine_runner:
        for peer in peers:
            row = {"peer": peer, "label": PEER_LABELS[peer]}
            try:
                with ctx.make_peer(peer) as runner:
                    row.update(status="ok", description=runner.description,
                               **compare_peer(engine_runner, runner, config.peer_batch, size,
                                              config.peer_rounds, config.timing))
            except BackendUnavailable as exc:
                row["status"] = f"unavailable: {exc}"
            except Exception as exc:  # noqa: BLE001  keep the other peers' measurements
                row["status"] = f"error: {type(exc).__name__}: {exc}"
            rows.append(row)
    out = {"engine": engine.label, "ratio": "peer median latency / engine median latency "
           "(> 1: ctedge's engine is faster), per alternating round", "rows": rows}
    if ctx.calibration_info:
        out["openvino_calibration"] = ctx.calibration_info
    return out


def _study_models(models, reference, engine) -> list[ModelUnderTest]:
    chosen = [m for m in (reference, engine) if m is not None]
    return list(dict.fromkeys(chosen))


def _studies(config, models, reference, engine, peers, peers_skipped, ctx, size, info, done):
    from .studies import run_studies

    if config.studies == DEFAULT_STUDIES and not any(s.is_dir() for s in config.studies):
        return {"skipped": "default studies need ../shared/data/covid-ct-md (shared data)"}
    # The plain loop (what a user writes first) runs the FP32 .onnx, as a user would.
    plain = (reference if reference is not None and reference.precision == "fp32"
             and reference.path.suffix == ".onnx" else None)
    return run_studies(list(config.studies), _study_models(models, reference, engine),
                       config.cold_runs, config.warm_runs, config.threads, plain=plain)


def _import_time(config, models, reference, engine, peers, peers_skipped, ctx, size, info, done):
    from .studies import run_import_time

    return run_import_time(config.import_runs)


def _reading_time(config, models, reference, engine, peers, peers_skipped, ctx, size, info,
                  done):
    from .reading import reading_speedups

    studies = done.get("studies", {})
    if "results" not in studies:
        return {"skipped": "needs the studies section (per-study wall times) in the same run"}
    return reading_speedups(studies["results"])


_SECTIONS = {"accuracy": _accuracy, "throughput": _throughput, "peers": _peers,
             "studies": _studies, "import_time": _import_time, "reading_time": _reading_time}


# --- outputs ---------------------------------------------------------------------------------

def write_outputs(report: dict, out: Path, plots: bool = True) -> list[Path]:
    """bench.json, report.md and (with matplotlib) PNG plots in `out`; returns the paths."""
    from ctedge.io import atomic_write

    from .report import render_markdown

    out = Path(out)
    written = []
    plot_files: list[Path] = []
    plot_note = None
    if plots:
        try:
            from .plots import write_plots

            plot_files = write_plots(report, out)
        except BackendUnavailable as exc:
            plot_note = str(exc)
    json_path = out / "bench.json"
    atomic_write(json_path, json.dumps(report, indent=2, default=_jsonable) + "\n")
    written.append(json_path)
    md_path = out / "report.md"
    atomic_write(md_path, render_markdown(report, [p.name for p in plot_files], plot_note))
    written.append(md_path)
    return written + plot_files


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
