"""The CPU engine, served by ONNX Runtime or OpenVINO, whichever is faster here.

ONNX Runtime: an ONNX model with ORT's graph optimisations applied offline, saved at
ORT_ENABLE_EXTENDED: Q/DQ pairs are fused into QLinearConv/QLinearAdd-style kernels, but no
NCHWc layout transforms, which ONNX Runtime marks as hardware-specific (level ALL); at load time
the session applies level ALL on top for this machine. The file still depends on the ORT
version (contrib ops), so the manifest records it and the CPU flags of the build machine.

OpenVINO (optional extra): the un-optimised ONNX (CPU-form Q/DQ for INT8), compiled at load.
Which one serves is measured at build time (`measure_cpu_backends`): on one Intel VM OpenVINO
ran the INT8 ResNet-50 about 1.5x faster than ORT, on an AMD Zen 4 machine ORT was faster.
"""

from __future__ import annotations

import importlib.util
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ctedge.artifact import METADATA_KEY, ModelInfo, write_info
from ctedge.engine_manifest import cpu_runtime, openvino_runtime
from ctedge.errors import BackendUnavailable, ModelError


def optimize_offline(src: Path, out: Path, info: ModelInfo, threads: int = 0) -> ModelInfo:
    """Write `src` with ORT's extended graph optimisations applied to `out`; returns its info."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out)
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(out))
    # Re-stamp: the graph (and so its hash) changed; keep the metadata in one place.
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY in props:
        info = ModelInfo.from_json(props[METADATA_KEY], str(out))
    info = write_info(model, info)
    onnx.save(model, str(out))
    return info


# --- which runtime serves the CPU engine --------------------------------------------------

CPU_BACKENDS = ("auto", "onnxruntime", "openvino")


@dataclass(frozen=True)
class BackendChoice:
    """Which runtime serves a CPU engine and why (the manifest's `backend_choice`).

    chosen_by: "measurement" (both timed here), "--cpu-backend" (forced by the user),
    "openvino not installed" or "openvino failed: <why>" (it could not load the model).
    Throughputs are img/s, the median over `rounds` timed batches of `batch` random inputs,
    the two runtimes alternating (A B, B A, ...) so drift in a shared machine's load hits both
    alike.
    """

    backend: str
    chosen_by: str
    onnxruntime_img_s: float | None = None
    openvino_img_s: float | None = None
    batch: int | None = None
    rounds: int | None = None

    def __post_init__(self):
        if self.backend not in CPU_BACKENDS[1:]:
            raise ValueError(f"backend must be onnxruntime or openvino, got {self.backend!r}")

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        for key in ("onnxruntime_img_s", "openvino_img_s"):
            if key in data:
                data[key] = round(data[key], 2)
        return data

    def summary(self) -> str:
        if self.chosen_by != "measurement":
            return f"cpu backend: {self.backend} ({self.chosen_by})"
        return (f"cpu backend: onnxruntime {self.onnxruntime_img_s:.1f} img/s, openvino "
                f"{self.openvino_img_s:.1f} img/s (batch {self.batch}, median of {self.rounds} "
                f"alternating rounds) -> {self.backend}")


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def measure_cpu_backends(ort_model: Path, ov_model: Path, batch: int = 16, rounds: int = 5,
                         warmup: int = 2) -> BackendChoice:
    """Time ONNX Runtime on `ort_model` against OpenVINO on `ov_model` (the same network) and
    choose the faster; a tie goes to ONNX Runtime, the base dependency."""
    from ctedge.backends.onnxruntime import OnnxRuntimeBackend
    from ctedge.backends.openvino import OpenVinoBackend

    if batch < 1 or rounds < 1 or warmup < 0:
        raise ValueError("batch and rounds must be >= 1, warmup >= 0")
    with OnnxRuntimeBackend(ort_model, providers=["CPUExecutionProvider"]) as ort_backend, \
            OpenVinoBackend(ov_model) as ov_backend:
        shape = (batch, *ort_backend.info.input_shape)
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        runners = {"onnxruntime": ort_backend, "openvino": ov_backend}
        for backend in runners.values():
            for _ in range(warmup):
                backend.infer(x)
        speeds: dict[str, list[float]] = {name: [] for name in runners}
        for r in range(rounds):
            for name in (("onnxruntime", "openvino") if r % 2 == 0 else
                         ("openvino", "onnxruntime")):
                start = time.perf_counter()
                runners[name].infer(x)
                speeds[name].append(batch / (time.perf_counter() - start))
    ort_speed, ov_speed = (statistics.median(speeds[n]) for n in ("onnxruntime", "openvino"))
    return BackendChoice("openvino" if ov_speed > ort_speed else "onnxruntime", "measurement",
                         ort_speed, ov_speed, batch, rounds)


@dataclass(frozen=True)
class CpuEngine:
    """A built CPU engine: its file in the folder, the backend that serves it, the manifest's
    `runtime` block and the backend choice."""

    file: Path
    backend: str
    runtime: dict
    choice: BackendChoice


def build_cpu_engine(folder: Path, source: Path, stem: str, info: ModelInfo, precision: str,
                     cpu_backend: str = "auto", log=print) -> CpuEngine:
    """Write the CPU engine for `source` (the FP32, FP16 or CPU-form Q/DQ ONNX) into `folder`.

    ONNX Runtime serves `<stem>.<precision>.cpu.onnx` (optimised offline, see above).
    OpenVINO cannot read that file (ORT's fused QLinear*/contrib ops), so it serves the
    un-optimised source ONNX itself, copied into the folder when it is not there yet. With
    `cpu_backend` "auto" both are built and timed when openvino is installed; the slower one's
    file is not kept, so the folder holds only what its manifest names and the gate checked.
    """
    if cpu_backend not in CPU_BACKENDS:
        raise ValueError(f"cpu backend must be one of {CPU_BACKENDS}, got {cpu_backend!r}")
    choice = None
    if cpu_backend == "auto" and not openvino_installed():
        choice = BackendChoice("onnxruntime", "openvino not installed")
    elif cpu_backend != "auto":
        choice = BackendChoice(cpu_backend, "--cpu-backend")
    ort_file = folder / f"{stem}.{precision}.cpu.onnx"
    if choice is None or choice.backend == "onnxruntime":
        optimize_offline(source, ort_file, info)
    if choice is None:
        try:
            choice = measure_cpu_backends(ort_file, source)
        except (ModelError, BackendUnavailable) as exc:  # an optional extra must not fail a build
            choice = BackendChoice("onnxruntime", f"openvino failed: {str(exc)[:200]}")
        log(choice.summary())
    if choice.backend == "onnxruntime":
        import onnxruntime

        return CpuEngine(ort_file, "onnxruntime", cpu_runtime(onnxruntime.__version__), choice)
    from ctedge.backends.openvino import import_openvino

    ov = import_openvino()
    ort_file.unlink(missing_ok=True)
    engine = source
    if source.parent.resolve() != folder.resolve():
        engine = folder / f"{stem}.{precision}.onnx"
        shutil.copyfile(source, engine)
    return CpuEngine(engine, "openvino", openvino_runtime(ov.__version__), choice)

