"""ONNX Runtime's optimised graph, saved once and reused: session start without re-optimising.

`ORT_ENABLE_ALL` rewrites a ResNet-50 graph (fusions, the NCHWc layout for this CPU's vector
width) every time a session starts: about 0.1-0.25 s of a cold `ctedge classify` on 2 cores.
The first session on a machine saves the result (`optimized_model_filepath`); later ones load
that file with optimisation off. The optimised graph is specific to the CPU and the ONNX
Runtime version, so the file is keyed by the model's sha256, the ONNX Runtime version and the
CPU model and flags, and lives in `$CTEDGE_CACHE/ort` (default `~/.cache/ctedge/ort`).
A cache that cannot be written is skipped: the session optimises in memory as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..cache import cache_root, writable_folder

SUFFIX = ".ort-optimized.onnx"


def cache_dir() -> Path:
    return cache_root() / "ort"


def cache_key(model_sha256: str, ort_version: str) -> str:
    from ..engine_manifest import cpu_facts

    basis = json.dumps({"model": model_sha256, "onnxruntime": ort_version, "cpu": cpu_facts()},
                       sort_keys=True)
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def cached_path(model_sha256: str, ort_version: str) -> Path:
    return cache_dir() / (cache_key(model_sha256, ort_version) + SUFFIX)


def writable_temp(target: Path) -> Path | None:
    """A temporary name beside `target` to save into, or None if the folder cannot be made."""
    if writable_folder(target.parent) is None:
        return None
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def publish(temp: Path, target: Path) -> None:
    """Move a saved optimised model into place (atomic rename); never fails the caller."""
    try:
        if temp.is_file() and temp.stat().st_size > 0:
            os.replace(temp, target)
    except OSError:
        pass
    finally:
        temp.unlink(missing_ok=True)
