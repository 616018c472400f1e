"""`ctedge build-engine`: FP32 ONNX -> FP16 / INT8 / FP32 engine for CPU or TensorRT, gated.

Steps: read the FP32 model's metadata; choose calibration and parity slices (disjoint,
deterministic); for INT8 calibrate once (cached) and write both Q/DQ forms; for FP16 write the
FP16 ONNX; build the engine for the target (for `cpu`, ONNX Runtime or OpenVINO, whichever
runs it faster here, see cpu_engine.py); compare it with the FP32 reference on the parity
slices, on the backend that will serve it; write manifest.json. Everything happens in a
staging folder that becomes the output folder only when the parity gate passes, so a failed
build leaves no engine behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctedge.artifact import ModelInfo, file_sha256, read_info
from ctedge.engine_manifest import MANIFEST, EngineManifest, write_manifest
from ctedge.errors import CalibrationError, ModelError

from .calibration import CalibrationConfig, calibrate
from .cpu_engine import CPU_BACKENDS
from .parity import DEFAULT_THRESHOLDS, ParityResult, compare
from .slices import SliceSplit, discover, load_inputs, split_slices

PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("cpu", "tensorrt")
DEFAULT_PROFILE = (1, 32, 64)
# Twice the largest INT8 probability move seen on the parity slices of the reference model
# (0.045, docs/engines.md), rounded up: a slice closer to a tie than this is re-run in FP32.
DEFAULT_FALLBACK_MARGIN = 0.1


@dataclass(frozen=True)
class EngineConfig:
    """What to build. batch: TensorRT optimisation profile (min, opt, max) batch sizes."""

    model: Path
    precision: str = "int8"
    target: str = "cpu"
    out: Path | None = None
    calib: Path | None = None
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    parity_set: Path | None = None
    parity_size: int = 256
    parity_threshold: float | None = None
    data_root: Path | None = None
    batch: tuple[int, int, int] = DEFAULT_PROFILE
    workspace_gib: float = 4.0
    timing_cache: Path | None = None
    cpu_backend: str = "auto"  # cpu target: auto (measure) | onnxruntime | openvino
    # near-tie fallback (ctedge.backends.fallback): None = DEFAULT_FALLBACK_MARGIN for CPU INT8
    fallback_margin: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "model", Path(self.model))
        for name in ("out", "calib", "parity_set", "data_root", "timing_cache"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else Path(value))
        object.__setattr__(self, "batch", tuple(int(b) for b in self.batch))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.cpu_backend not in CPU_BACKENDS:
            raise ValueError(f"cpu backend must be one of {CPU_BACKENDS}, got "
                             f"{self.cpu_backend!r}")
        if self.cpu_backend != "auto" and self.target != "cpu":
            raise ValueError(f"cpu backend {self.cpu_backend} applies to target cpu only")
        lo, opt, hi = self.batch if len(self.batch) == 3 else (0, 0, 0)
        if len(self.batch) != 3 or not 1 <= lo <= opt <= hi:
            raise ValueError(f"batch must be min,opt,max with 1 <= min <= opt <= max, "
                             f"got {self.batch}")
        if self.parity_size < 1:
            raise ValueError("parity size must be >= 1")
        if self.parity_threshold is not None and not 0 < self.parity_threshold <= 1:
            raise ValueError(f"parity threshold must be in (0, 1], got {self.parity_threshold}")
        if self.fallback_margin is not None:
            if not 0 <= self.fallback_margin <= 1:
                raise ValueError(f"fallback margin must be in [0, 1], got {self.fallback_margin}")
            if self.fallback_margin > 0 and (self.target != "cpu" or self.precision == "fp32"):
                raise ValueError("the FP32 fallback applies to FP16 and INT8 engines on the cpu "
                                 "target only")

    @property
    def fallback(self) -> float:
        """Top-two probability gap under which a slice is re-run on the FP32 model (0: never)."""
        if self.fallback_margin is not None:
            return self.fallback_margin
        return DEFAULT_FALLBACK_MARGIN if (self.target, self.precision) == ("cpu", "int8") else 0.0

    @property
    def threshold(self) -> float:
        return self.parity_threshold or DEFAULT_THRESHOLDS[self.precision]

    def out_dir(self) -> Path:
        return self.out or Path("engines") / f"{self.model.stem}-{self.precision}-{self.target}"


@dataclass(frozen=True)
class EngineBuild:
    """A finished build: the folder, its manifest, the gate's result(s)."""

    folder: Path
    manifest: EngineManifest
    parity: ParityResult
    extra_parity: dict  # name -> ParityResult of side artifacts (e.g. the TensorRT Q/DQ form)
    calibration_reused: bool | None = None


def default_target() -> str:
    """tensorrt when TensorRT imports and a CUDA GPU is present, else cpu."""
    if importlib.util.find_spec("tensorrt") is None:
        return "cpu"
    try:
        from ctedge.backends.tensorrt import gpu_count

        return "tensorrt" if gpu_count() > 0 else "cpu"
    except Exception:  # any CUDA/TensorRT import or driver problem means: not usable here
        return "cpu"


def build_engine(config: EngineConfig, log=print) -> EngineBuild:
    """Build, gate and write the engine folder described by `config`."""
    if config.target == "tensorrt":
        from .tensorrt_build import import_tensorrt

        import_tensorrt()  # fail before any work when TensorRT is not here
    if config.target == "cpu" and config.cpu_backend == "openvino":
        from ctedge.backends.openvino import import_openvino

        import_openvino()  # same for a forced OpenVINO
    info = read_info(config.model)
    if info.precision != "fp32":
        raise ModelError(f"{config.model}: is a {info.precision} model; build engines from the "
                         "FP32 ONNX written by `ctedge export`")
    out = config.out_dir()
    _check_out(out)
    onnx_sha = file_sha256(config.model)
    slices = _choose_slices(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; an engine folder is not secret
    try:
        result = _build_in(staging, config, info, onnx_sha, slices, log)
        if out.exists():
            shutil.rmtree(out)  # an earlier engine folder (checked by _check_out)
        staging.rename(out)
        return EngineBuild(out, result[0], result[1], result[2], result[3])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                              and not (out / MANIFEST).is_file())):
        raise ModelError(f"{out}: exists and is not an engine folder; pass another --out")


def _choose_slices(config: EngineConfig) -> SliceSplit | None:
    if config.precision == "int8" and config.calib is None:
        raise CalibrationError("INT8 needs calibration slices; pass --calib with a folder of "
                               "validation PNG/JPG slices, a CSV manifest or DICOM studies")
    source = discover(config.calib, config.data_root) if config.calib else None
    parity = discover(config.parity_set, config.data_root) if config.parity_set else None
    if source is None and parity is None:
        return None
    if source is None:
        return SliceSplit((), tuple(parity[: config.parity_size]))
    return split_slices(source, config.calibration.size, config.parity_size, parity)


def _build_in(folder: Path, config: EngineConfig, info: ModelInfo, onnx_sha: str,
              slices: SliceSplit | None, log):
    from . import fp16, quantize

    calibration = None
    artifacts: dict[str, Path] = {}
    source = _plain_fp32(config.model, folder / "source-fp32.onnx")
    maps, info = bool(info.cam), info.with_(cam={})  # maps are re-added after conversion
    if config.precision == "int8":
        prepared = quantize.prepare_for_quantization(source, folder / "prepared.onnx")
        log(f"calibrating ({config.calibration.method}) on {len(slices.calibration)} slices ...")
        calibration = calibrate(prepared, onnx_sha, list(slices.calibration), info.preprocessing,
                                config.calibration)
        log(f"calibration key {calibration.key[:16]} "
            f"({'reused from cache' if calibration.reused else 'computed'})")
        for form in (quantize.QuantForm.tensorrt(), quantize.QuantForm.cpu()):
            path = folder / f"{config.model.stem}.int8-qdq-{form.name}.onnx"
            quantize.quantize(prepared, path, calibration, form, info)
            artifacts[form.name] = path
        (folder / "prepared.onnx").unlink()
    elif config.precision == "fp16":
        path = folder / f"{config.model.stem}.fp16.onnx"
        fp16.convert_fp16(source, path, info)
        artifacts["fp16"] = path
    if maps:
        # The CPU engines keep the class-activation maps; the TensorRT backend reads one
        # output only, so its engine and Q/DQ form are built without them.
        for name, path in artifacts.items():
            if name != "tensorrt":
                _add_maps(path)
    engine_source = {"int8": artifacts.get(config.target if config.target == "tensorrt" else
                                           "cpu"),
                     "fp16": artifacts.get("fp16"),
                     "fp32": config.model if config.target == "cpu" else source
                     }[config.precision]
    choice = None
    if config.target == "cpu":
        from .cpu_engine import build_cpu_engine

        cpu = build_cpu_engine(folder, engine_source, config.model.stem, info, config.precision,
                               config.cpu_backend, log)
        engine, backend, runtime, choice = cpu.file, cpu.backend, cpu.runtime, cpu.choice
    else:
        from .tensorrt_build import TensorRTBuildConfig, build_tensorrt_engine

        engine = folder / f"{config.model.stem}.{config.precision}.plan"
        runtime = build_tensorrt_engine(engine_source, engine, TensorRTBuildConfig(
            precision=config.precision, profile=config.batch,
            workspace_gib=config.workspace_gib, timing_cache=config.timing_cache), log=log)
        backend = "tensorrt"

    if source != config.model:
        source.unlink()
    fallback = {}
    if config.fallback > 0:
        kept = folder / f"{config.model.stem}.fp32.onnx"
        shutil.copyfile(config.model, kept)
        fallback = {"file": kept.name, "sha256": file_sha256(kept), "margin": config.fallback,
                    "precision": "fp32"}
    inputs, labels, kind = _parity_inputs(slices, info)
    with_maps = maps and backend != "tensorrt"
    with _open_engine(config.model, "onnxruntime", None) as runner:
        reference, reference_maps = _run_chunks(runner, inputs, with_maps)
    with _open_engine(engine, backend, info.with_(precision=config.precision),
                      fallback) as runner:
        candidate, engine_maps = _run_chunks(runner, inputs, with_maps)
        if fallback:
            fallback["parity_rerun"] = round(runner.rerun / max(1, runner.slices), 4)
            log(f"fp32 fallback: {runner.rerun} of {runner.slices} parity slices re-run "
                f"(top-two gap < {config.fallback:g})")
    parity = compare(reference, candidate, config.precision, info.classes, labels,
                     config.threshold)
    if with_maps:
        parity = parity.with_maps(reference_maps, engine_maps)
    extra = {}
    if "tensorrt" in artifacts and config.target == "cpu":
        # The TensorRT form cannot run on TensorRT here; check its numerics on ORT CPU instead.
        extra["tensorrt_qdq_on_onnxruntime"] = compare(
            reference, _run_onnx(artifacts["tensorrt"], inputs), "int8", info.classes, labels,
            config.threshold)
    log(parity.table())
    for name, result in extra.items():
        log(f"[{name}] " + result.table().splitlines()[0] + "; " +
            result.table().splitlines()[1].strip())
    parity.require()
    manifest = EngineManifest(
        file=engine.name, backend=backend, target=config.target, precision=config.precision,
        engine_sha256=file_sha256(engine), onnx_sha256=onnx_sha,
        classes=info.classes, negative_class=info.negative_class,
        preprocessing=info.preprocessing.to_dict(), runtime=runtime,
        calibration={
            **(calibration.to_dict() if calibration else {}),
            **({"calibration_slices_sha256": slices.calibration_sha256} if slices else {}),
            **({"parity_slices_sha256": slices.parity_sha256} if slices else {}),
        },
        parity={**parity.to_dict(), "inputs": kind, "backend": backend,
                **{name: r.to_dict() for name, r in extra.items()}},
        backend_choice=choice.to_dict() if choice else {},
        fallback=fallback,
    )
    write_manifest(folder, manifest)
    return manifest, parity, extra, (calibration.reused if calibration else None)


def _plain_fp32(model: Path, out: Path) -> Path:
    """`model`, or a copy at `out` with FP16-stored weights (ctedge.export.compact, as in the
    reference model) expanded back to FP32 initializers, which the quantizers need, and
    without the class-activation maps output (export/cam.py; re-added after conversion)."""
    import onnx

    from .cam import has_cam, strip_cam
    from .compact import SUFFIX, expand

    proto = onnx.load(str(model))
    compact = any(t.name.endswith(SUFFIX) for t in proto.graph.initializer)
    if not compact and not has_cam(proto):
        return model
    if compact:
        proto = expand(proto)
    if has_cam(proto):
        strip_cam(proto)
    onnx.save(proto, str(out))
    return out


def _add_maps(path: Path) -> None:
    """Add the class-activation maps output to the converted model at `path`, in place."""
    import onnx

    from .cam import add_cam

    model = onnx.load(str(path))
    add_cam(model)
    onnx.save(model, str(path))


def _parity_inputs(slices: SliceSplit | None, info: ModelInfo):
    """Parity inputs, labels and what they are; random inputs only when no slices were given."""
    if slices is not None and slices.parity:
        refs = list(slices.parity)
        return load_inputs(refs, info.preprocessing), [r.label for r in refs], "slices"
    if slices is not None and slices.calibration:
        raise CalibrationError("no parity slices left after calibration; pass --parity-set "
                               "with validation slices not used for calibration")
    size = info.preprocessing.size
    rng = np.random.default_rng(0)
    return rng.standard_normal((32, 3, size, size), dtype=np.float32), None, "random"


def _run_onnx(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Probabilities of `inputs` on the ONNX model at `path`, ONNX Runtime CPU."""
    with _open_engine(path, "onnxruntime", None) as runner:
        return _run_chunks(runner, inputs)[0]


def _open_engine(path: Path, backend: str, info: ModelInfo, fallback: dict | None = None):
    """The engine on the backend that will serve it (so parity is what deploys), with its FP32
    fallback when it has one."""
    if backend == "onnxruntime":
        from ctedge.backends.onnxruntime import OnnxRuntimeBackend

        engine = OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"])
    elif backend == "openvino":
        from ctedge.backends.openvino import OpenVinoBackend

        engine = OpenVinoBackend(path)
    else:
        from ctedge.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path, check_manifest=False, info=info)
    if not fallback:
        return engine
    from ctedge.backends.fallback import FallbackBackend

    return FallbackBackend.from_manifest(engine, path.parent, fallback,
                                         lambda ref: _open_engine(ref, backend, info))


def _run_chunks(runner, inputs: np.ndarray, maps: bool = False, chunk: int = 16):
    """(probabilities, class-activation maps or None) of `inputs`, `chunk` at a time: with
    `maps`, both come from one pass."""
    if not maps:
        return np.concatenate([runner.infer(inputs[i:i + chunk])
                               for i in range(0, len(inputs), chunk)]), None
    parts = [runner.infer_maps(inputs[i:i + chunk]) for i in range(0, len(inputs), chunk)]
    return np.concatenate([p for p, _ in parts]), np.concatenate([m for _, m in parts])
