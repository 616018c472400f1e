"""Pick and open an inference backend for a model path.

`.onnx` files run on ONNX Runtime. A folder or file with a `manifest.json` beside it is an
engine built by `ctedge build-engine`: its manifest names the backend. Backends load lazily,
so a box without TensorRT never imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelError
from .base import Backend

BACKENDS = ("auto", "onnxruntime", "tensorrt")
MANIFEST = "manifest.json"


def resolve(model: str | Path) -> tuple[Path, str]:
    """(file to load, backend name) for a model path: an .onnx, an engine, or an engine folder."""
    path = Path(model)
    if path.is_dir():
        manifest = path / MANIFEST
        if not manifest.is_file():
            raise ModelError(f"{path}: folder has no {MANIFEST}; pass an .onnx or a folder "
                             "made by `ctedge build-engine`")
        try:
            data = json.loads(manifest.read_text())
            return path / data["file"], data["backend"]
        except (ValueError, KeyError) as exc:
            raise ModelError(f"{manifest}: unreadable engine manifest ({exc}); rebuild with "
                             "`ctedge build-engine`") from exc
    if path.suffix in (".engine", ".plan"):
        return path, "tensorrt"
    return path, "onnxruntime"


def open_backend(model: str | Path, backend: str = "auto", **options) -> Backend:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    path, natural = resolve(model)
    name = natural if backend == "auto" else backend
    if name != natural:
        raise ModelError(f"{model}: this is a {natural} model, it cannot run on {name}; "
                         f"use --backend {natural} or auto")
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, **options)
    from .tensorrt import TensorRTBackend

    return TensorRTBackend(path, **options)
