"""The node's status file (state_dir/status.json): counters, queue depths, last results and
errors, rewritten atomically as things happen. No patient identifiers: studies are named by
their key (a hash of the StudyInstanceUID)."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path

from .files import write_json

STATUS_FILE = "status.json"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Status:
    def __init__(self, path: str | Path, ae_title: str, port: int):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.counters = {"associations": 0, "associations_refused": 0, "instances_stored": 0,
                         "instances_duplicate": 0, "instances_refused": 0,
                         "instances_malformed": 0, "studies_classified": 0,
                         "studies_failed": 0, "results_sent": 0, "send_failures": 0}
        self.info = {"ae_title": ae_title, "port": port, "pid": os.getpid(),
                     "started_at": _now(), "state": "starting"}
        self.queues: dict[str, int] = {}
        self.last_results: deque = deque(maxlen=20)
        self.errors: deque = deque(maxlen=20)
        self._dirty = True
        self._written = 0.0

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n
            self._dirty = True

    def set(self, **info) -> None:
        with self._lock:
            self.info.update(info)
            self._dirty = True

    def set_queues(self, **queues: int) -> None:
        with self._lock:
            if queues != {k: self.queues.get(k) for k in queues}:
                self.queues.update(queues)
                self._dirty = True

    def result(self, key: str, label: str | None, status: str) -> None:
        with self._lock:
            self.last_results.appendleft({"study_key": key, "label": label, "status": status,
                                          "at": _now()})
            self._dirty = True

    def error(self, what: str) -> None:
        with self._lock:
            self.errors.appendleft({"at": _now(), "error": what})
            self._dirty = True

    def snapshot(self) -> dict:
        with self._lock:
            return {**self.info, "updated_at": _now(), "counters": dict(self.counters),
                    "queues": dict(self.queues), "last_results": list(self.last_results),
                    "errors": list(self.errors)}

    def write(self, force: bool = False, every_s: float = 1.0) -> None:
        """Rewrite the file when something changed (at most every `every_s` unless forced)."""
        now = time.monotonic()
        if not force and (not self._dirty or now - self._written < every_s):
            return
        data = self.snapshot()
        self._dirty, self._written = False, now
        try:
            write_json(self.path, data, sync=False)
        except OSError:
            pass  # status is informative; a full disk must not stop the node
