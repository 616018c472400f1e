"""The model artifact contract: what every ctedge ONNX model says about itself.

An ONNX model's `metadata_props` hold one entry, key `ctedge`, whose value is the JSON of
`ModelInfo`: class names, the negative class, the preprocessing, the robust rule's thresholds,
the precision, a hash of the graph and the ctedge version that wrote it. The runtime reads
everything it needs from there; nothing about a model lives in constants.

Model graph contract: one float32 input (N, 3, size, size), one float32 output (N, n_classes)
holding probabilities (softmax inside the graph), and optionally a second float32 output, the
class-activation maps (N, n_classes, h, w), declared in `ModelInfo.cam`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import __version__
from .decision import DecisionThresholds
from .errors import ModelError
from .preprocess import Preprocessing

METADATA_KEY = "ctedge"
SCHEMA = 1

# The paper's five classes, in this order (index = output column).
PAPER_CLASSES = ("normal", "covid19", "viral_pneumonia", "bacterial_pneumonia", "tuberculosis")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ModelInfo:
    classes: tuple[str, ...] = PAPER_CLASSES
    negative_class: str = "normal"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    thresholds: DecisionThresholds = field(default_factory=DecisionThresholds)
    precision: str = "fp32"
    graph_sha256: str = ""
    ctedge_version: str = __version__
    training: dict = field(default_factory=dict)  # data summary, metrics; free-form, may be empty
    quantization: dict = field(default_factory=dict)  # calibration key and form, for INT8 models
    # Class-activation maps: {"output": name, ...} when the graph has the second output
    # (N, n_classes, h, w) written by ctedge.export.cam; empty for models without it.
    cam: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if len(self.classes) < 2:
            raise ValueError("a model needs at least two classes")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"class names must be unique, got {self.classes}")
        if self.negative_class not in self.classes:
            raise ValueError(
                f"negative class {self.negative_class!r} is not one of {list(self.classes)}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        s = self.preprocessing.size
        return (3, s, s)

    def to_json(self) -> str:
        data = {
            "schema": SCHEMA,
            "classes": list(self.classes),
            "negative_class": self.negative_class,
            "preprocessing": self.preprocessing.to_dict(),
            "thresholds": self.thresholds.to_dict(),
            "precision": self.precision,
            "graph_sha256": self.graph_sha256,
            "ctedge_version": self.ctedge_version,
            "training": self.training,
            "quantization": self.quantization,
        }
        if self.cam:  # only when present, so models without maps keep their exact metadata
            data["cam"] = self.cam
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelInfo:
        try:
            data = json.loads(text)
            if data.pop("schema", None) != SCHEMA:
                raise ValueError(f"unsupported metadata schema (this ctedge reads {SCHEMA})")
            data["preprocessing"] = Preprocessing.from_dict(data["preprocessing"])
            data["thresholds"] = DecisionThresholds.from_dict(data["thresholds"])
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"{source}: ctedge metadata is invalid ({exc}); re-export it with `ctedge export`"
            ) from exc

    @classmethod
    def from_metadata_map(cls, props: dict[str, str], source: str = "model") -> ModelInfo:
        if METADATA_KEY not in props:
            raise ModelError(
                f"{source}: not a ctedge model (no '{METADATA_KEY}' metadata); "
                "export it with `ctedge export`"
            )
        return cls.from_json(props[METADATA_KEY], source)

    def with_(self, **changes) -> ModelInfo:
        return replace(self, **changes)


def graph_sha256(model) -> str:
    """sha256 of an onnx.ModelProto's graph (weights included, metadata excluded)."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, computed once per (file, size, mtime) in this process: a
    classification checks the engine, keys the optimised-model cache and reports the model
    from one hash (~70 ms for a 47 MB model)."""
    stat = os.stat(path)
    return _sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_info(model, info: ModelInfo) -> ModelInfo:
    """Stamp `info` (with the graph hash filled in) into an onnx.ModelProto, in place."""
    info = info.with_(graph_sha256=graph_sha256(model))
    props = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, info.to_json()
    return info


def read_info(path: str | Path) -> ModelInfo:
    """Read ModelInfo from an ONNX file without loading its weights."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found; pass --model with an exported .onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for corrupt files
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}); "
                         "re-export it with `ctedge export`") from exc
    return ModelInfo.from_metadata_map({p.key: p.value for p in model.metadata_props}, str(path))


DEFAULT_MODEL = "ctedge-resnet50-ucsd-sarscov2-ctmd.onnx"
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def default_model_path() -> Path:
    """The model `classify` uses without --model: $CTEDGE_MODEL, else the repo's reference model."""
    import os

    env = os.environ.get("CTEDGE_MODEL")
    path = Path(env) if env else MODELS_DIR / DEFAULT_MODEL
    if not path.exists():
        raise ModelError(f"no default model at {path}; pass --model with an exported .onnx "
                         "or set CTEDGE_MODEL")
    return path
