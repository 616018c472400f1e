"""Pick and open an inference backend for a model path.

`.onnx` files run on ONNX Runtime (or on OpenVINO with `--backend openvino`). A folder or file
with a `manifest.json` beside it is an engine built by `ctedge build-engine`: its manifest
names the backend (onnxruntime, openvino or tensorrt). Backends load lazily, so a box without
TensorRT or OpenVINO never imports them.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelError
from .base import Backend

BACKENDS = ("auto", "onnxruntime", "tensorrt", "openvino", "triton")
MANIFEST = "manifest.json"


def resolve(model: str | Path) -> tuple[Path, str]:
    """(file to load, backend name) for a model path: an .onnx, an engine, or an engine folder."""
    path, backend, _ = _resolve(model)
    return path, backend


def _resolve(model: str | Path) -> tuple[Path, str, bool]:
    """resolve() plus whether an engine manifest named the backend."""
    path = Path(model)
    if path.is_dir():
        manifest = path / MANIFEST
        if not manifest.is_file():
            raise ModelError(f"{path}: folder has no {MANIFEST}; pass an .onnx or a folder "
                             "made by `ctedge build-engine`")
        try:
            data = json.loads(manifest.read_text())
            return path / data["file"], data["backend"], True
        except (ValueError, KeyError) as exc:
            raise ModelError(f"{manifest}: unreadable engine manifest ({exc}); rebuild with "
                             "`ctedge build-engine`") from exc
    if path.suffix in (".engine", ".plan"):
        return path, "tensorrt", True
    beside = _manifest_backend(path)
    if beside is not None:
        return path, beside, True
    return path, "onnxruntime", False


def _manifest_backend(path: Path) -> str | None:
    """The backend named by the manifest beside `path`, if that manifest describes it."""
    from ..engine_manifest import manifest_path

    mpath = manifest_path(path)
    if mpath is None:
        return None
    try:
        return str(json.loads(mpath.read_text())["backend"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: the backend's own manifest check says so


def open_backend(model: str | Path, backend: str = "auto", **options) -> Backend:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "triton":  # the model is on a server; `model` says what the client expects
        from .triton import TritonBackend

        return TritonBackend(model, **options)
    path, natural, engine = _resolve(model)
    if natural not in BACKENDS:
        raise ModelError(f"{model}: its manifest names an unknown backend {natural!r}; rebuild "
                         "it with `ctedge build-engine`")
    name = natural if backend == "auto" else backend
    # OpenVINO runs any plain ONNX model; engines run only on the backend they were built for.
    portable = name == "openvino" and natural == "onnxruntime" and not engine
    if name != natural and not portable:
        raise ModelError(f"{model}: this is a {natural} model, it cannot run on {name}; "
                         f"use --backend {natural} or auto")
    primary = _open(name, path, options)
    fallback = _fallback(path) if engine else None
    if not fallback:
        return primary
    from .fallback import FallbackBackend

    return FallbackBackend.from_manifest(primary, path.parent, fallback,
                                         lambda ref: _open(name, ref, options))


def _open(name: str, path: Path, options: dict) -> Backend:
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, **options)
    if name == "openvino":
        from .openvino import OpenVinoBackend

        return OpenVinoBackend(path, **options)
    from .tensorrt import TensorRTBackend

    return TensorRTBackend(path, **options)


def _fallback(path: Path) -> dict | None:
    """The `fallback` block of the manifest that describes the engine file `path`, if any."""
    from ..engine_manifest import manifest_path

    mpath = manifest_path(path)
    if mpath is None:
        return None
    try:
        return json.loads(mpath.read_text()).get("fallback") or None
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: the backend's own manifest check has said so already
