"""Export a ctedge model or engine as a Triton Inference Server model repository.

    REPO/NAME/config.pbtxt
    REPO/NAME/1/model.onnx      platform onnxruntime_onnx   (a ctedge .onnx)
    REPO/NAME/1/model.plan      platform tensorrt_plan      (a TensorRT build-engine folder)
    REPO/NAME/1/model.py        backend python              (--python-backend: ctedge serves it)

config.pbtxt holds the artifact's input and output names, shapes (batch dimension implicit)
and dtypes, max_batch_size, dynamic batching (preferred sizes, queue delay), instance groups,
and the ctedge metadata (`ModelInfo` JSON) as the model parameter `ctedge`, so a client can
check classes and preprocessing before sending slices. The config is built as Triton's
`ModelConfig` protobuf (from tritonclient, the `triton` extra), written in text format, and
parsed back to check that what is on disk is what was meant.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..artifact import ModelInfo, read_info
from ..errors import BackendUnavailable, CtedgeError, ModelError

CONFIG = "config.pbtxt"
VERSION = "1"
DEVICES = ("auto", "gpu", "cpu")
INFO_PARAMETER = "ctedge"  # the ModelInfo JSON, as in the ONNX metadata
# The ONNX contract's tensor names (ctedge.export.onnx_export); TensorRT engines keep them.
INPUT_NAME, OUTPUT_NAME = "input", "probabilities"
PYTHON_MODEL = Path(__file__).with_name("python_model.py")
ONNX_DTYPES = {1: "TYPE_FP32", 10: "TYPE_FP16"}  # onnx.TensorProto FLOAT, FLOAT16


class RepositoryError(CtedgeError):
    """A Triton model repository cannot be written or its config does not validate."""


@dataclass(frozen=True)
class RepositoryConfig:
    """How to export one model into a Triton repository.

    name: the model's name on the server (a folder name).
    max_batch: max_batch_size; dynamic batching gathers requests up to it.
    queue_delay_us: how long the batcher may hold a request to fill a batch (microseconds).
    instances: model instances per device.
    device: gpu | cpu | auto (gpu for ONNX and TensorRT, cpu for the Python backend).
    python_backend: serve through ctedge's own backends (model.py) instead of Triton's.
    """

    name: str = "ctedge"
    max_batch: int = 64
    queue_delay_us: int = 2000
    instances: int = 1
    device: str = "auto"
    python_backend: bool = False

    def __post_init__(self):
        if not self.name or Path(self.name).name != self.name or self.name.startswith("."):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")
        if not 1 <= self.max_batch <= 4096:
            raise ValueError(f"max_batch must be 1..4096, got {self.max_batch}")
        if not 0 <= self.queue_delay_us <= 10_000_000:
            raise ValueError(f"queue_delay_us must be 0..10000000, got {self.queue_delay_us}")
        if not 1 <= self.instances <= 64:
            raise ValueError(f"instances must be 1..64, got {self.instances}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")

    @property
    def preferred_batch_sizes(self) -> list[int]:
        """Powers of two from 8 up to max_batch, and max_batch itself."""
        sizes = [b for b in (8, 16, 32, 64, 128, 256, 512, 1024, 2048) if b < self.max_batch]
        return sizes[-3:] + [self.max_batch]


@dataclass(frozen=True)
class Artifact:
    """What is being exported: the file(s), the ctedge metadata and the tensor signature."""

    source: Path  # the .onnx file, or the engine folder
    kind: str  # onnx | plan | engine (a CPU engine folder: Python backend only)
    info: ModelInfo
    input_name: str
    output_name: str
    input_dtype: str  # Triton TYPE_*
    output_dtype: str
    max_batch: int | None  # the engine's profile maximum, None: any


@dataclass(frozen=True)
class ExportedRepository:
    repository: Path
    model_dir: Path
    config_path: Path
    platform: str  # onnxruntime_onnx | tensorrt_plan | python
    info: ModelInfo


def load_artifact(model: str | Path) -> Artifact:
    """Describe a ctedge .onnx, a TensorRT engine (file or folder) or a CPU engine folder."""
    from ..backends import resolve
    from ..engine_manifest import manifest_path, read_manifest
    from ..preprocess import Preprocessing

    path = Path(model)
    if not path.exists():
        raise ModelError(f"{path}: not found; pass a ctedge .onnx or a `ctedge build-engine` "
                         "folder")
    if path.is_file() and path.suffix == ".onnx" and manifest_path(path) is None:
        return _onnx_artifact(path)
    file, backend = resolve(path)
    folder = path if path.is_dir() else file.parent
    manifest = read_manifest(folder)
    info = ModelInfo(classes=manifest.classes, negative_class=manifest.negative_class,
                     preprocessing=Preprocessing.from_dict(manifest.preprocessing),
                     precision=manifest.precision)
    if backend == "tensorrt":
        profile = manifest.runtime.get("profile", {})
        return Artifact(folder, "plan", info, INPUT_NAME, OUTPUT_NAME, "TYPE_FP32", "TYPE_FP32",
                        int(profile["max"]) if "max" in profile else None)
    onnx_file = folder / manifest.file
    if onnx_file.suffix != ".onnx":  # an OpenVINO engine: only ctedge's own backend runs it
        return Artifact(folder, "engine", info, INPUT_NAME, OUTPUT_NAME, "TYPE_FP32",
                        "TYPE_FP32", None)
    described = _onnx_artifact(onnx_file)
    return Artifact(folder, "engine", described.info, described.input_name,
                    described.output_name, described.input_dtype, described.output_dtype, None)


def _onnx_artifact(path: Path) -> Artifact:
    import onnx

    info = read_info(path)
    graph = onnx.load(str(path), load_external_data=False).graph
    initialisers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    # the class-activation maps (docs/report.md) stay local: Triton serves the probabilities
    cam = info.cam.get("output") if info.cam else None
    outputs = [o for o in graph.output if o.name != cam]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{path}: expected one input and one output; re-export it with "
                         "`ctedge export`")
    (inp,), (out,) = inputs, outputs

    def dtype(value) -> str:
        elem = value.type.tensor_type.elem_type
        if elem not in ONNX_DTYPES:
            raise ModelError(f"{path}: tensor {value.name} has ONNX type {elem}; ctedge models "
                             "take and return float32; re-export it")
        return ONNX_DTYPES[elem]

    return Artifact(path, "onnx", info, inp.name, out.name, dtype(inp), dtype(out), None)


def build_config(artifact: Artifact, config: RepositoryConfig, model_file: str):
    """The ModelConfig protobuf for `artifact` (tritonclient's model_config_pb2)."""
    mc = _model_config_pb2()
    if artifact.max_batch is not None and config.max_batch > artifact.max_batch:
        raise RepositoryError(f"{artifact.source}: the engine takes batches up to "
                              f"{artifact.max_batch}; pass --max-batch {artifact.max_batch} or "
                              "less, or rebuild the engine with a larger profile")
    if artifact.kind == "engine" and not config.python_backend:
        raise RepositoryError(f"{artifact.source}: a CPU engine folder is served by ctedge's own "
                              "backends; add --python-backend (or export the FP32 .onnx)")
    info = artifact.info
    cfg = mc.ModelConfig(name=config.name, max_batch_size=config.max_batch)
    if config.python_backend:
        cfg.backend = "python"
        device = "cpu" if config.device == "auto" else config.device
    else:
        cfg.platform = {"onnx": "onnxruntime_onnx", "plan": "tensorrt_plan"}[artifact.kind]
        cfg.default_model_filename = model_file
        device = "gpu" if config.device == "auto" else config.device
    inp = cfg.input.add(name=artifact.input_name, dims=list(info.input_shape))
    inp.data_type = getattr(mc, artifact.input_dtype)
    out = cfg.output.add(name=artifact.output_name, dims=[len(info.classes)])
    out.data_type = getattr(mc, artifact.output_dtype)
    cfg.dynamic_batching.preferred_batch_size.extend(config.preferred_batch_sizes)
    cfg.dynamic_batching.max_queue_delay_microseconds = config.queue_delay_us
    group = cfg.instance_group.add(count=config.instances)
    group.kind = (mc.ModelInstanceGroup.KIND_GPU if device == "gpu"
                  else mc.ModelInstanceGroup.KIND_CPU)
    cfg.parameters[INFO_PARAMETER].string_value = info.to_json()
    if config.python_backend:
        cfg.parameters["ctedge_model_file"].string_value = model_file
        cfg.parameters["ctedge_backend"].string_value = "auto"
    return cfg


def parse_config(text: str, source: str = CONFIG):
    """Parse config.pbtxt text into Triton's ModelConfig; RepositoryError when it is invalid."""
    from google.protobuf import text_format

    mc = _model_config_pb2()
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise RepositoryError(f"{source}: not a valid Triton ModelConfig ({exc}); re-run "
                              "`ctedge export-triton`") from exc


def served_info(config, source: str) -> ModelInfo:
    """The ctedge ModelInfo a ModelConfig carries in its `ctedge` parameter."""
    if INFO_PARAMETER not in config.parameters:
        raise ModelError(f"{source}: no '{INFO_PARAMETER}' parameter in the model config; "
                         "export the model with `ctedge export-triton`")
    return ModelInfo.from_json(config.parameters[INFO_PARAMETER].string_value, source)


def export_repository(model: str | Path, out: str | Path,
                      config: RepositoryConfig = RepositoryConfig()) -> ExportedRepository:
    """Write REPO/NAME/{config.pbtxt, 1/model.*}. The model folder appears whole or not at all;
    an existing NAME folder is refused (other models in REPO are left alone)."""
    from google.protobuf import text_format

    artifact = load_artifact(model)
    out = Path(out)
    final = out / config.name
    if final.exists():
        raise RepositoryError(f"{final}: already exists; remove it or pick another --name")
    if config.python_backend:
        model_file = "model.py"
        payload = "ctedge-engine" if artifact.kind in ("engine", "plan") else "ctedge.onnx"
    else:
        model_file = {"onnx": "model.onnx", "plan": "model.plan", "engine": "model.onnx"}[
            artifact.kind]
        payload = model_file
    cfg = build_config(artifact, config, payload if config.python_backend else model_file)
    text = text_format.MessageToString(cfg)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{config.name}.", suffix=".part", dir=out))
    try:
        version = staging / VERSION
        version.mkdir()
        if config.python_backend:
            # copied, not imported: it imports Triton's stub-only triton_python_backend_utils
            shutil.copyfile(PYTHON_MODEL, version / model_file)
        source = artifact.source
        if artifact.kind == "onnx":
            shutil.copyfile(source, version / payload)
        elif config.python_backend:
            shutil.copytree(source, version / payload)
        else:  # the engine file itself; its manifest stays with the source folder
            from ..engine_manifest import read_manifest

            shutil.copyfile(source / read_manifest(source).file, version / payload)
        (staging / CONFIG).write_text(text)
        written = parse_config((staging / CONFIG).read_text(), str(final / CONFIG))
        if written != cfg:
            raise RepositoryError(f"{final / CONFIG}: reads back differently from what was "
                                  "written; report this as a bug")
        staging.chmod(0o755)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportedRepository(out, final, final / CONFIG,
                              "python" if config.python_backend else cfg.platform, artifact.info)


def _model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise BackendUnavailable("Triton support needs tritonclient: "
                                 "pip install 'ctedge[triton]'") from exc
    return model_config_pb2
