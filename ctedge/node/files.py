"""Crash-safe files: written to a temporary name in the same folder, fsynced, renamed."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def durable_write(path: str | Path, data: bytes | str, sync: bool = True) -> None:
    """Make `path` hold `data`, whole or not at all, surviving a crash once this returns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | Path, data: dict, sync: bool = True) -> None:
    durable_write(path, json.dumps(data, indent=2) + "\n", sync=sync)


def remove_stale_parts(folder: Path) -> None:
    """Drop temporary files an interrupted durable_write left in `folder`."""
    for tmp in folder.glob(".*.part"):
        with contextlib.suppress(OSError):
            tmp.unlink()
