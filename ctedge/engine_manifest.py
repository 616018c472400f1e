"""Engine manifests: what an engine folder holds and where it may run (torch- and TRT-free).

`ctedge build-engine` writes `manifest.json` beside every engine. It names the engine file and
backend, the precision, the source ONNX's sha256, the calibration key, the classes and
preprocessing, the parity result, and the runtime it was built for: ONNX Runtime (or OpenVINO)
version and CPU flags for a CPU engine; TensorRT version, GPU name and compute capability for a
TensorRT engine. A CPU engine also records why its backend was chosen (`backend_choice`).
Backends compare that against the machine they run on and refuse a mismatch with a message
that says how to rebuild, instead of failing later with "version tag does not match".
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .errors import ModelError

MANIFEST = "manifest.json"
SCHEMA = 1
ENGINE_BACKENDS = ("onnxruntime", "tensorrt", "openvino")
TARGETS = ("cpu", "tensorrt")
# CPU features an offline-optimised ORT graph may have been specialised for (x86 and Arm).
RELEVANT_CPU_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimddp", "sve", "i8mm",
)
REBUILD = "rebuild it here with `ctedge build-engine`"


@dataclass(frozen=True)
class EngineManifest:
    """The contents of an engine folder's manifest.json (see docs/engines.md)."""

    file: str  # engine file name, relative to the folder
    backend: str  # onnxruntime | tensorrt | openvino
    target: str  # cpu | tensorrt
    precision: str  # fp32 | fp16 | int8
    engine_sha256: str  # of `file`
    onnx_sha256: str  # of the FP32 source ONNX the engine was built from
    classes: tuple[str, ...]
    negative_class: str
    preprocessing: dict
    runtime: dict  # see cpu_runtime() / the TensorRT builder
    calibration: dict = field(default_factory=dict)  # key, method, list hashes (INT8 only)
    parity: dict = field(default_factory=dict)  # ParityResult.to_dict()
    backend_choice: dict = field(default_factory=dict)  # CPU: how onnxruntime/openvino was picked
    # near-tie fallback (ctedge.backends.fallback): FP32 file, its sha256, margin, share re-run
    fallback: dict = field(default_factory=dict)
    ctedge_version: str = __version__
    schema: int = SCHEMA

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.backend not in ENGINE_BACKENDS:
            raise ValueError(f"backend must be one of {ENGINE_BACKENDS}, got {self.backend!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        if not self.file or Path(self.file).name != self.file:
            raise ValueError(f"file must be a plain file name inside the folder, got {self.file!r}")
        if self.schema != SCHEMA:
            raise ValueError(f"unsupported manifest schema {self.schema} (this ctedge reads "
                             f"{SCHEMA})")

    def to_json(self) -> str:
        data = asdict(self)
        data["classes"] = list(self.classes)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST) -> EngineManifest:
        try:
            data = json.loads(text)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise ModelError(f"{source}: unreadable engine manifest ({exc}); {REBUILD}") from exc


def manifest_path(model: str | Path) -> Path | None:
    """The manifest that describes `model` (an engine folder, or a file inside one), if any."""
    path = Path(model)
    if path.is_dir():
        return path / MANIFEST
    candidate = path.parent / MANIFEST
    if candidate.is_file():
        try:
            if json.loads(candidate.read_text()).get("file") == path.name:
                return candidate
        except ValueError:
            return candidate  # unreadable: let read_manifest say so
    return None


def read_manifest(path: str | Path) -> EngineManifest:
    """Read a manifest.json (or the one inside an engine folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise ModelError(f"{path}: engine manifest not found; pass an .onnx or a folder made by "
                         "`ctedge build-engine`")
    return EngineManifest.from_json(path.read_text(), str(path))


def write_manifest(folder: str | Path, manifest: EngineManifest) -> Path:
    from .io import atomic_write

    path = Path(folder) / MANIFEST
    atomic_write(path, manifest.to_json())
    return path


# --- where am I running ----------------------------------------------------------------------


def cpu_facts(cpuinfo: str | None = None) -> dict:
    """{"model": ..., "flags": [...relevant flags...], "machine": arch} of this CPU."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    model = model or platform.processor() or "unknown"
    return {"model": model, "machine": platform.machine(),
            "flags": sorted(f for f in RELEVANT_CPU_FLAGS if f in flags)}


def cpu_runtime(ort_version: str, cpu: dict | None = None) -> dict:
    """The `runtime` block of a CPU (ONNX Runtime) engine manifest."""
    return {"onnxruntime": ort_version, "cpu": cpu or cpu_facts()}


def openvino_runtime(ov_version: str, cpu: dict | None = None) -> dict:
    """The `runtime` block of a CPU engine served by OpenVINO."""
    return {"openvino": ov_version, "cpu": cpu or cpu_facts()}


# backend -> (runtime key in the manifest, name in messages)
_CPU_RUNTIMES = {"onnxruntime": ("onnxruntime", "ONNX Runtime"),
                 "openvino": ("openvino", "OpenVINO")}


def check_cpu_runtime(manifest: EngineManifest, version: str, cpu: dict,
                      source: str = "engine") -> None:
    """Raise ModelError unless this runtime version (ONNX Runtime or OpenVINO, per the
    manifest's backend) and this CPU can run the engine as built."""
    built = manifest.runtime
    key, label = _CPU_RUNTIMES.get(manifest.backend, _CPU_RUNTIMES["onnxruntime"])
    if built.get(key) != version:
        raise ModelError(f"{source}: built for {label} {built.get(key)}, this is "
                         f"{version}; {REBUILD}")
    want = (built.get("cpu") or {})
    if want.get("machine") and want["machine"] != cpu.get("machine"):
        raise ModelError(f"{source}: built for {want['machine']} CPUs, this is "
                         f"{cpu.get('machine')}; {REBUILD}")
    missing = sorted(set(want.get("flags", ())) - set(cpu.get("flags", ())))
    if missing:
        raise ModelError(f"{source}: built on a CPU with {', '.join(missing)}, which this CPU "
                         f"({cpu.get('model', 'unknown')}) lacks; {REBUILD}")


def check_cpu_engine(model: str | Path, version: str, cpu: dict | None = None,
                     backend: str = "onnxruntime") -> None:
    """If `model` belongs to an engine folder, raise ModelError unless `backend` (onnxruntime
    or openvino, at `version`) on this CPU can run it as built."""
    from .artifact import file_sha256

    mpath = manifest_path(model)
    if mpath is None:
        return  # a plain .onnx: nothing was specialised for a machine
    manifest = read_manifest(mpath)
    if manifest.backend != backend:
        raise ModelError(f"{model}: its manifest says backend {manifest.backend}, not "
                         f"{backend}; run the engine folder {mpath.parent} with --backend auto")
    check_engine_file(manifest, mpath.parent, file_sha256(Path(model)))
    check_cpu_runtime(manifest, version, cpu or cpu_facts(), str(model))


def check_tensorrt_runtime(manifest: EngineManifest, trt_version: str, gpu_name: str,
                           compute_capability: str, source: str = "engine") -> None:
    """Raise ModelError unless this TensorRT version and GPU match the engine's build.

    TensorRT engines are specific to the TensorRT version and the GPU model (compute
    capability); deserialising elsewhere fails or, worse, runs an untested plan.
    """
    built = manifest.runtime
    if built.get("tensorrt") != trt_version:
        raise ModelError(f"{source}: built with TensorRT {built.get('tensorrt')}, this is "
                         f"TensorRT {trt_version}; {REBUILD}")
    if built.get("compute_capability") != compute_capability:
        raise ModelError(f"{source}: built for compute capability "
                         f"{built.get('compute_capability')} ({built.get('gpu')}), this GPU "
                         f"({gpu_name}) is {compute_capability}; {REBUILD}")
    if built.get("gpu") != gpu_name:
        raise ModelError(f"{source}: built on {built.get('gpu')}, this GPU is {gpu_name}; "
                         f"{REBUILD}")


def check_engine_file(manifest: EngineManifest, folder: Path, sha256: str) -> None:
    """Raise ModelError when the engine file is not the one the manifest describes."""
    if sha256 != manifest.engine_sha256:
        raise ModelError(f"{folder / manifest.file}: file does not match its manifest "
                         f"(sha256 {sha256[:12]}..., manifest {manifest.engine_sha256[:12]}...); "
                         f"{REBUILD}")


def check_source(manifest: EngineManifest, onnx_sha256: str, folder: Path) -> None:
    """Raise ModelError when the engine was built from another ONNX than the one expected."""
    if onnx_sha256 != manifest.onnx_sha256:
        raise ModelError(f"{folder}: engine was built from ONNX {manifest.onnx_sha256[:12]}..., "
                         f"not {onnx_sha256[:12]}...; {REBUILD} from the current model")
