"""Durable receive: each instance is on disk (fsynced, renamed into place) before the node
answers success, and a restart finds every one of them again.

Layout: SPOOL/<study key>/<SOP Instance UID>.dcm, temporary files in SPOOL/.incoming/.
The study key is a hash of the StudyInstanceUID, so folder names carry no identifier.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import SpoolFull

INCOMING = ".incoming"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def study_key(study_uid: str) -> str:
    """16 hex digits of sha256(StudyInstanceUID): the study's name in files and logs."""
    return hashlib.sha256(str(study_uid).strip().encode()).hexdigest()[:16]


def instance_name(sop_uid: str) -> str:
    """The spool file name of one instance (the UID itself when it is a valid UID)."""
    sop_uid = str(sop_uid).strip()
    if _UID.match(sop_uid) and len(sop_uid) <= 64:
        return f"{sop_uid}.dcm"
    return f"x{hashlib.sha256(sop_uid.encode()).hexdigest()[:32]}.dcm"


@dataclass(frozen=True)
class SpooledStudy:
    key: str
    instances: int
    last_arrival: float  # newest file's mtime, seconds since the epoch


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Durable per-study folders of received instances. Thread-safe."""

    def __init__(self, root: str | Path, max_study_instances: int = 5000):
        self.root = Path(root)
        self.max_study_instances = max_study_instances
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def open(self) -> list[SpooledStudy]:
        """Create the spool if needed, drop temporary files of interrupted writes (their
        senders were never answered success), and return every spooled study."""
        (self.root / INCOMING).mkdir(parents=True, exist_ok=True)
        for tmp in (self.root / INCOMING).iterdir():
            with contextlib.suppress(OSError):
                tmp.unlink()
        studies = []
        for folder in sorted(p for p in self.root.iterdir()
                             if p.is_dir() and p.name != INCOMING):
            files = list(folder.glob("*.dcm"))
            if not files:
                continue
            last = max(f.stat().st_mtime for f in files)
            studies.append(SpooledStudy(folder.name, len(files), last))
            self._counts[folder.name] = len(files)
        return studies

    def study_dir(self, key: str) -> Path:
        return self.root / key

    def instances(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0)

    def store(self, encoded: bytes, study_uid: str, sop_uid: str) -> tuple[str, bool]:
        """Keep one instance (DICOM file bytes). Returns (study key, True if new, False for a
        duplicate that was already kept). Raises SpoolFull when it cannot be kept."""
        key = study_key(study_uid)
        folder = self.root / key
        target = folder / instance_name(sop_uid)
        if target.exists():
            return key, False
        with self._lock:
            if self._counts.get(key, 0) >= self.max_study_instances:
                raise SpoolFull(f"study {key} already has {self.max_study_instances} "
                                "instances (max_study_instances)")
        try:
            new_folder = not folder.is_dir()
            if new_folder:
                folder.mkdir(parents=True, exist_ok=True)
                _fsync_dir(self.root)
            fd, tmp = tempfile.mkstemp(suffix=".part", dir=self.root / INCOMING)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(encoded)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, 0o640)
                existed = target.exists()
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(folder)
        except OSError as exc:
            raise SpoolFull(f"cannot keep an instance of study {key} in {self.root}: "
                            f"{exc.strerror or exc}") from exc
        if existed:  # a concurrent duplicate won the race; the file is whole either way
            return key, False
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
        return key, True
