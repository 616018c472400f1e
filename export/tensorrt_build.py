"""Build a TensorRT engine from a ctedge ONNX (FP32, FP16 or TensorRT-form Q/DQ INT8).

Written against NVIDIA's documented Python API for TensorRT 10 and 11, chosen by feature
detection. NEVER RUN HERE: no development, CI or GPU machine of this project has TensorRT
(FACTS.md); treat the first build on a TensorRT box as its first test.

- TensorRT 11: networks are always strongly typed; `BuilderFlag.FP16/INT8` are gone. Precision
  comes from the ONNX: FP16 engines from the FP16 ONNX, INT8 from the Q/DQ ONNX.
- TensorRT 10: weakly typed networks with builder flags. The same ONNX inputs are used; FP16
  is also allowed for the layers a Q/DQ model leaves unquantised (INT8 slower than FP16 is a
  common complaint when they are left in FP32).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ctedge.errors import BackendUnavailable, ModelError
from ctedge.io import atomic_path, atomic_write

INPUT_NAME = "input"


@dataclass(frozen=True)
class TensorRTBuildConfig:
    """precision: fp32|fp16|int8; profile: (min, opt, max) batch; workspace in GiB."""

    precision: str = "fp16"
    profile: tuple[int, int, int] = (1, 32, 64)
    workspace_gib: float = 4.0
    timing_cache: Path | None = None

    def __post_init__(self):
        object.__setattr__(self, "profile", tuple(int(b) for b in self.profile))
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        lo, opt, hi = self.profile
        if not 1 <= lo <= opt <= hi:
            raise ValueError(f"profile must satisfy 1 <= min <= opt <= max, got {self.profile}")
        if self.workspace_gib <= 0:
            raise ValueError("workspace must be > 0 GiB")


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable("TensorRT is not installed here; install NVIDIA TensorRT 10 or "
                                 "11 with cuda-python (pip install 'ctedge[tensorrt]' on a "
                                 "machine that can reach NVIDIA's index), or use --target "
                                 "cpu") from exc
    return trt


def strongly_typed_only(trt) -> bool:
    """True on TensorRT 11+, where builder precision flags no longer exist."""
    return not hasattr(trt.BuilderFlag, "FP16")


def build_tensorrt_engine(onnx_path: Path, out: Path, config: TensorRTBuildConfig,
                          log=print) -> dict:
    """Build and write the engine; returns the manifest's `runtime` block."""
    trt = import_tensorrt()
    from ctedge.artifact import read_info
    from ctedge.backends.tensorrt import gpu_facts

    info = read_info(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strong = strongly_typed_only(trt)
    flags = 0
    if strong and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # ignored on 11
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{onnx_path}: TensorRT cannot parse it ({errors[:300]}); re-export "
                         "it with `ctedge export`")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                         int(config.workspace_gib * (1 << 30)))
    if hasattr(trt, "ProfilingVerbosity"):
        builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # for the inspector
    if not strong:
        if config.precision in ("fp16", "int8"):
            builder_config.set_flag(trt.BuilderFlag.FP16)
        if config.precision == "int8":
            builder_config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ, no calibrator
    size = info.preprocessing.size
    lo, opt, hi = config.profile
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (lo, 3, size, size), (opt, 3, size, size), (hi, 3, size, size))
    builder_config.add_optimization_profile(profile)
    cache = _timing_cache(builder_config, config.timing_cache)
    log(f"building TensorRT {trt.__version__} {config.precision} engine "
        f"(profile {lo},{opt},{hi}; {'strongly' if strong else 'weakly'} typed) ...")
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise ModelError(f"{onnx_path}: TensorRT failed to build an engine (see its log above); "
                         "try a larger --workspace or another precision")
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(bytes(serialized))
    if cache is not None and config.timing_cache is not None:
        atomic_write(config.timing_cache, bytes(cache.serialize()))
    gpu = gpu_facts()
    return {"tensorrt": trt.__version__, "gpu": gpu["name"],
            "compute_capability": gpu["compute_capability"],
            "profile": {"min": lo, "opt": opt, "max": hi},
            "typing": "strong" if strong else "weak",
            "layers": layer_precisions(trt, bytes(serialized), logger)}


def _timing_cache(builder_config, path: Path | None):
    """Load (or start) a timing cache so rebuilds on the same GPU skip kernel timing."""
    if not hasattr(builder_config, "create_timing_cache"):
        return None
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = builder_config.create_timing_cache(data)
    builder_config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def layer_precisions(trt, serialized: bytes, logger) -> dict:
    """Count of engine layers per reported precision, via the engine inspector if present."""
    import json

    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None or not hasattr(engine, "create_engine_inspector"):
        return {}
    inspector = engine.create_engine_inspector()
    try:
        data = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    except (ValueError, AttributeError):
        return {}
    counts: dict[str, int] = {}
    for layer in data.get("Layers", []):
        if isinstance(layer, dict):
            for out in layer.get("Outputs", []):
                fmt = str(out.get("Format/Datatype", "unknown")).split()[0]
                counts[fmt] = counts.get(fmt, 0) + 1
    return counts
