"""The outbox: DICOM result objects wait on disk until the destination has them.

Layout: OUTBOX/pending/<study key>/<name>.dcm; OUTBOX/sent/<study key>.json once every object
of the study was accepted. An object file is deleted right after the destination accepted it;
a crash between the two sends it once more, with the same SOP Instance UID, so the PACS keeps
one copy. A study's objects are sent only once its result JSON exists (see results.py).
Failures are retried with exponential backoff; nothing is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Destination
from .files import durable_write, remove_stale_parts, write_json

LOG = logging.getLogger("ctedge.node")
SUCCESS_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}  # success and the storage warnings


@dataclass
class Backoff:
    """Exponential backoff in seconds: initial, doubled after each failure, capped."""

    initial_s: float
    max_s: float
    delay_s: float = 0.0
    next_at: float = 0.0

    def failed(self, now: float) -> float:
        self.delay_s = min(self.max_s, self.delay_s * 2 if self.delay_s else self.initial_s)
        self.next_at = now + self.delay_s
        return self.delay_s

    def succeeded(self) -> None:
        self.delay_s, self.next_at = 0.0, 0.0

    def ready(self, now: float) -> bool:
        return now >= self.next_at


class SendFailed(Exception):
    pass


class Outbox:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.pending_root = self.root / "pending"
        self.sent_root = self.root / "sent"

    def open(self) -> None:
        self.pending_root.mkdir(parents=True, exist_ok=True)
        self.sent_root.mkdir(parents=True, exist_ok=True)
        for folder in self.pending_root.iterdir():
            remove_stale_parts(folder)
        remove_stale_parts(self.sent_root)

    def put(self, key: str, objects: list[tuple[str, object]]) -> list[str]:
        """Write each (name, pydicom Dataset) durably under pending/<key>/; returns file names.
        A previous attempt's files for this study are replaced."""
        from pydicom.filebase import DicomBytesIO

        folder = self.pending_root / key
        if folder.exists():
            shutil.rmtree(folder)
        names = []
        for name, ds in objects:
            buffer = DicomBytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            durable_write(folder / f"{name}.dcm", buffer.getvalue())
            names.append(f"{name}.dcm")
        return names

    def pending(self) -> list[str]:
        """Study keys with objects waiting, oldest first."""
        if not self.pending_root.is_dir():
            return []
        folders = [p for p in self.pending_root.iterdir() if p.is_dir()]
        return [p.name for p in sorted(folders, key=lambda p: (p.stat().st_mtime, p.name))]

    def files(self, key: str) -> list[Path]:
        return sorted((self.pending_root / key).glob("*.dcm"))

    def is_sent(self, key: str) -> bool:
        return (self.sent_root / f"{key}.json").is_file()

    def mark_sent(self, key: str, record: dict) -> None:
        write_json(self.sent_root / f"{key}.json", record)
        with contextlib.suppress(OSError):
            (self.pending_root / key).rmdir()


class Sender:
    """C-STORE of outbox files to one destination (pynetdicom SCU)."""

    def __init__(self, destination: Destination, calling_ae_title: str, timeout_s: float = 30):
        self.destination = destination
        self.calling = destination.calling_ae_title or calling_ae_title
        self.timeout_s = timeout_s

    def send(self, paths: list[Path], on_stored: Callable[[Path, str], None]) -> None:
        """Send every file in one association; `on_stored(path, sop_uid)` after each success.
        Raises SendFailed (with the reason) on the first failure."""
        import pydicom
        from pynetdicom import AE

        datasets = [(p, pydicom.dcmread(p)) for p in paths]
        ae = AE(ae_title=self.calling)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        ae.connection_timeout = min(self.timeout_s, 10)
        for sop_class, syntax in {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                                  for _, ds in datasets}:
            ae.add_requested_context(sop_class, syntax)
        d = self.destination
        assoc = ae.associate(d.host, d.port, ae_title=d.ae_title)
        if not assoc.is_established:
            raise SendFailed(f"no association with {d.ae_title}@{d.host}:{d.port} "
                             f"({'rejected' if assoc.is_rejected else 'unreachable or aborted'})")
        try:
            for path, ds in datasets:
                status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code is None:
                    raise SendFailed(f"{d.ae_title} did not answer a C-STORE")
                if code not in SUCCESS_STATUSES:
                    raise SendFailed(f"{d.ae_title} answered C-STORE status 0x{code:04X}")
                on_stored(path, str(ds.SOPInstanceUID))
        finally:
            if assoc.is_established:
                assoc.release()


def send_pending(outbox: Outbox, sender: Sender, key: str) -> list[str]:
    """Send the study's pending objects; on full success record it as sent. Returns the SOP
    Instance UIDs stored (raises SendFailed on failure; the rest stays pending)."""
    stored: list[str] = []

    def on_stored(path: Path, sop_uid: str) -> None:
        path.unlink()
        stored.append(sop_uid)

    files = outbox.files(key)
    if files:  # none left: a crash came after the last object was accepted
        sender.send(files, on_stored)
    outbox.mark_sent(key, {"study_key": key, "sent_at": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "destination": sender.destination.ae_title,
        "objects": len(stored)})
    return stored
