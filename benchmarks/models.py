"""The ctedge models a benchmark runs: which files, on which backend, at which precision."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from ctedge.artifact import ModelInfo, read_info
from ctedge.backends import MANIFEST, Backend, open_backend, resolve
from ctedge.errors import BackendUnavailable, ModelError

from .config import BenchConfig

# Backend name -> (module that must be importable, extra that installs it).
BACKEND_NEEDS = {"onnxruntime": ("onnxruntime", "ctedge"), "tensorrt": ("tensorrt", "tensorrt"),
                 "openvino": ("openvino", "openvino")}


@dataclass(frozen=True)
class ModelUnderTest:
    """One ctedge model: `path` as given (.onnx, engine file or engine folder)."""

    path: Path
    backend: str
    precision: str
    form: str = ""  # quantization form, e.g. the CPU INT8 engine's, from metadata
    classes: tuple[str, ...] = ()
    fallback: float = 0.0  # near-tie FP32 fallback margin (ctedge.backends.fallback), 0: none

    @property
    def label(self) -> str:
        kind = self.precision + (f"-{self.form}" if self.form else "")
        tail = f" +fp32<{self.fallback:g}" if self.fallback else ""
        return f"ctedge {self.backend} {kind}{tail}"

    @property
    def is_engine_folder(self) -> bool:
        return self.path.is_dir()

    def open(self, threads: int = 0) -> Backend:
        options = {"threads": threads} if self.backend in ("onnxruntime", "openvino") else {}
        return open_backend(self.path, "auto", **options)

    def to_dict(self) -> dict:
        return {"label": self.label, "path": str(self.path), "backend": self.backend,
                "precision": self.precision, "form": self.form, "fallback": self.fallback}


def describe(path: Path) -> ModelUnderTest:
    """Read what a model is without loading it for inference."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model not found; pass --model with an .onnx or an engine "
                         "folder made by `ctedge export`")
    file, backend = resolve(path)
    manifest = _manifest(path)
    info: ModelInfo | None = None
    if file.suffix == ".onnx":
        info = read_info(file)
    precision = manifest.get("precision") or (info.precision if info else "")
    form = manifest.get("form") or (info.quantization.get("form", "") if info else "") \
        or (manifest.get("target", "") if precision == "int8" else "")
    classes = tuple(info.classes) if info else tuple(manifest.get("classes") or ())
    if not precision:
        raise ModelError(f"{path}: its precision is not recorded; rebuild it with `ctedge export`")
    fallback = float((manifest.get("fallback") or {}).get("margin") or 0.0)
    return ModelUnderTest(path, backend, precision, str(form), classes, fallback)


def manifest_of(path: Path) -> dict:
    """The engine manifest for a model path ({} for a bare .onnx)."""
    return _manifest(Path(path))


def _manifest(path: Path) -> dict:
    candidate = path / MANIFEST if path.is_dir() else path.parent / MANIFEST
    if path.is_dir() or (path.suffix in (".engine", ".plan") and candidate.is_file()):
        try:
            return json.loads(candidate.read_text())
        except (OSError, ValueError):
            return {}
    return {}


def backend_installed(backend: str) -> bool:
    return importlib.util.find_spec(BACKEND_NEEDS[backend][0]) is not None


def require_backend(backend: str) -> None:
    """Raise BackendUnavailable naming the extra when a requested backend is not installed."""
    if not backend_installed(backend):
        module, extra = BACKEND_NEEDS[backend]
        raise BackendUnavailable(
            f"backend {backend} was requested but {module} is not installed here; "
            f"install it with: pip install 'ctedge[{extra}]' (or drop --backend {backend})")


def select_models(config: BenchConfig) -> tuple[list[ModelUnderTest], list[dict]]:
    """The models to run and the ones skipped (with why).

    Explicit --backend names must be installed and have a model; otherwise models whose
    backend is not installed are skipped with the reason recorded.
    """
    for backend in config.backends:
        require_backend(backend)
    paths = list(config.models) or default_models()
    models, skipped = [], []
    for path in paths:
        m = describe(path)
        if config.backends and m.backend not in config.backends:
            skipped.append({**m.to_dict(), "reason": f"backend {m.backend} not requested"})
        elif not backend_installed(m.backend):
            module, extra = BACKEND_NEEDS[m.backend]
            skipped.append({**m.to_dict(), "reason": f"not installed (pip install "
                                                      f"'ctedge[{extra}]')"})
        else:
            models.append(m)
    for backend in config.backends:
        if not any(m.backend == backend for m in models):
            raise ModelError(f"backend {backend} was requested but no model runs on it; pass "
                             f"--model with a {backend} engine (see `ctedge export --help`)")
    if not models:
        raise ModelError("no model to benchmark; pass --model with an exported .onnx or engine "
                         "folder")
    return models, skipped


def default_models() -> list[Path]:
    """The default model and its siblings in the same folder (same classes): every precision."""
    from ctedge.artifact import default_model_path

    default = default_model_path()
    ref = describe(default)
    found = [default]
    folder = default.parent
    for candidate in sorted(folder.iterdir()):
        if candidate == default:
            continue
        if not (candidate.suffix == ".onnx" or (candidate / MANIFEST).is_file()):
            continue
        try:
            m = describe(candidate)
        except ModelError:
            continue  # not a ctedge model: not ours to benchmark
        if m.classes == ref.classes:
            found.append(candidate)
    return found


def reference_model(models: list[ModelUnderTest]) -> ModelUnderTest | None:
    """The FP32 ONNX Runtime model: the accuracy reference."""
    for m in models:
        if m.precision == "fp32" and m.backend == "onnxruntime":
            return m
    return None


def engine_model(models: list[ModelUnderTest], chosen: Path | None) -> ModelUnderTest:
    """The model peers are compared with: `chosen`, else a TensorRT engine, else the CPU INT8
    engine folder, else FP32 (a bare INT8 Q/DQ .onnx is the TensorRT form, slow on CPU)."""
    if chosen is not None:
        for m in models:
            if m.path.resolve() == chosen.resolve():
                return m
        return describe(chosen)

    def rank(m: ModelUnderTest) -> tuple:
        return (m.backend != "tensorrt", not (m.precision == "int8" and m.is_engine_folder),
                m.precision != "fp32")

    return sorted(models, key=rank)[0]
