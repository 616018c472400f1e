"""ctedge's on-disk caches (the optimised ONNX Runtime graph, OpenVINO's compiled models,
calibration ranges): all under one root, `$CTEDGE_CACHE` (default `~/.cache/ctedge`)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("CTEDGE_CACHE", Path.home() / ".cache" / "ctedge"))


def writable_folder(folder: Path) -> Path | None:
    """`folder`, made if missing, or None when it cannot be made or written: a cache that
    cannot be kept is skipped, never fatal."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None
