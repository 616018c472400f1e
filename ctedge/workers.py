"""Decode processes that survive a crash.

Each worker holds at most one slice at a time, so when a worker dies (SIGSEGV in a codec,
`os._exit`, the kernel's OOM killer) the pool knows which slice it was holding: that slice is
reported as a problem, a fresh worker takes the dead one's place, and the study goes on.
A `concurrent.futures` pool cannot do this: one dead worker breaks the whole pool and every
pending slice with it.

Why processes and not threads: pydicom's decoders (pylibjpeg and gdcm alike) hold the GIL
(measured: two threads decode no faster than one), and a codec that crashes must not take the
study, or a DICOM node serving many studies, down with it.

Start method: `fork` when the calling process runs no other Python thread, so workers start in
milliseconds with every decoder already imported; `forkserver` otherwise (a DICOM node with its
network threads), which starts clean interpreters that import the decoders themselves. Native
threads do not stop a fork: OpenBLAS's pool (started by `import numpy`) has fork handlers, and
an ONNX Runtime pool is never used in a worker, which only decodes and then leaves with
`os._exit` like every forked multiprocessing worker.
"""

from __future__ import annotations

import faulthandler
import importlib
import multiprocessing
import os
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

# Modules a slice-decoding worker needs. Each worker imports them as soon as it starts (already
# loaded after a fork, else while the main process loads the model), before its first slice.
DECODE_MODULES = ("ctedge.slices", "scipy.ndimage", "pydicom.pixels", "gdcm")


@dataclass(frozen=True)
class WorkerDied:
    """A worker exited while holding slice `index`; `exitcode` < 0 is the killing signal;
    `timed_out`: the pool killed it after the item's time limit."""

    index: int
    exitcode: int | None
    timed_out: float | None = None

    @property
    def why(self) -> str:
        if self.timed_out is not None:
            return f"decoding this file took over {self.timed_out:g} s and was stopped"
        if self.exitcode is not None and self.exitcode < 0:
            try:
                name = signal.Signals(-self.exitcode).name
            except ValueError:
                name = f"signal {-self.exitcode}"
            return f"the decoder crashed on this file ({name})"
        return f"the decode worker exited on this file (exit code {self.exitcode})"


class WorkerError(RuntimeError):
    """The task raised inside a worker: the remote type, message and traceback as text (some
    decoder exceptions, such as a Rust panic, cannot be pickled back)."""


def start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


class SliceWorkers:
    """`count` processes that run `task(index, *args)`, one item per worker at a time.

    `submit(index, *args)` hands an item to an idle worker; `collect` waits for finished items
    and returns their results, or `WorkerDied` for an item whose worker died (the worker is
    replaced).
    A task's exception is raised from `collect` as `WorkerError`.
    """

    def __init__(self, count: int, task: Callable, method: str | None = None,
                 preload: tuple[str, ...] = (), timeout_s: float | None = None):
        """preload: modules each worker imports when it starts (missing ones are skipped);
        timeout_s: a worker still busy with one item after this long is killed and replaced,
        and the item reported as WorkerDied (None: no limit)."""
        if count < 1:
            raise ValueError(f"need at least one worker, got {count}")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 s, got {timeout_s}")
        self.task, self.preload, self.timeout_s = task, tuple(preload), timeout_s
        # Read by BLAS libraries that a forkserver or spawned worker loads afresh.
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        self.method = method or start_method()
        self._context = multiprocessing.get_context(self.method)
        if self.method == "forkserver":
            self._context.set_forkserver_preload(list(self.preload))
        self._idle: list[_Worker] = []
        self._busy: dict[Any, _Worker] = {}  # connection -> worker
        self.deaths = 0
        for _ in range(count):
            self._idle.append(self._spawn())

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        # A forked worker inherits the main process's ends of every worker's pipe; it closes
        # them, or it would never see EOF on its own pipe if the main process died.
        inherited = ([w.conn for w in (*self._idle, *self._busy.values())] + [parent]
                     if self.method == "fork" else [])
        process = self._context.Process(target=_serve, daemon=True, name="ctedge-decode",
                                        args=(child, self.task, self.preload, inherited,
                                              os.getpid() if self.method == "fork" else None))
        with warnings.catch_warnings():
            # Python >= 3.12 warns on fork() beside native threads; see the module docstring.
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    message=".*fork.*")
            process.start()
        child.close()
        return _Worker(process, parent)

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def busy(self) -> int:
        return len(self._busy)

    def submit(self, index: int, *args) -> None:
        if not self._idle:
            raise RuntimeError("no idle worker; collect results first")
        worker = self._idle.pop()
        worker.index, worker.since = index, time.monotonic()
        self._busy[worker.conn] = worker
        try:
            worker.conn.send((index, args))
        except (BrokenPipeError, ConnectionResetError):
            pass  # died while idle: the next collect reports it against this item

    def collect(self, timeout: float | None = None) -> list:
        """Results of the items that finish next (waits up to `timeout` s; None = until one)."""
        if not self._busy:
            return []
        if self.timeout_s is not None:
            now = time.monotonic()
            expired = [w for w in self._busy.values() if now - w.since >= self.timeout_s]
            if expired:
                return [self._replace(w, kill=True) for w in expired]
            left = min(w.since for w in self._busy.values()) + self.timeout_s - now
            timeout = left if timeout is None else min(timeout, left)
        conns = list(self._busy)
        sentinels = {w.process.sentinel: w for w in self._busy.values()}
        ready = wait(conns + list(sentinels), timeout)
        out, done = [], set()
        for obj in ready:
            worker = self._busy.get(obj) or sentinels.get(obj)
            if worker is None or id(worker) in done:
                continue
            done.add(id(worker))
            try:
                if obj is worker.conn or worker.conn.poll():
                    kind, value = worker.conn.recv()
                    del self._busy[worker.conn]
                    self._idle.append(worker)
                    if kind == "error":
                        raise WorkerError(value)
                    out.append(value)
                    continue
            except (EOFError, ConnectionResetError, OSError):
                pass
            out.append(self._replace(worker))
        return out

    def _replace(self, worker: _Worker, kill: bool = False) -> WorkerDied:
        del self._busy[worker.conn]
        worker.conn.close()
        if kill:
            worker.process.kill()
        worker.process.join(timeout=5)
        if worker.process.is_alive():  # closed its pipe but lives on: not ours to trust
            worker.process.kill()
            worker.process.join()
        self.deaths += 1
        self._idle.append(self._spawn())
        return WorkerDied(worker.index, worker.process.exitcode,
                          self.timeout_s if kill else None)

    def close(self) -> None:
        for worker in [*self._idle, *self._busy.values()]:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in [*self._idle, *self._busy.values()]:
            worker.process.join(timeout=2)
            if worker.process.is_alive():  # still decoding a slice nobody waits for
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._idle, self._busy = [], {}

    def __enter__(self) -> SliceWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _Worker:
    process: Any
    conn: Any
    index: int = -1  # the item it holds while busy
    since: float = 0.0  # time.monotonic() when it got that item


def _one_blas_thread() -> None:
    """One BLAS thread per worker: the workers already fill the cores, and BLAS threads inside
    each oversubscribe them (measured: preprocessing 95 ms instead of 5 ms per slice). A forked
    worker inherits the parent's already-started BLAS, so the environment alone cannot do it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def _die_with_parent(parent: int | None) -> None:
    """Linux: have the kernel kill this worker when its parent dies (kill -9 of `ctedge
    classify`, the OOM killer), so no worker outlives the study it decodes for.
    parent: the pid that started this worker, if known (a forked worker)."""
    parent = parent or os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _serve(conn, task, preload, inherited=(), parent: int | None = None) -> None:
    """A worker's loop: receive (index, args), send ("ok", result) or ("error", text)."""
    _die_with_parent(parent)
    for other in inherited:
        other.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    faulthandler.disable()  # a crash here becomes the slice's problem, not a dump on stderr
    _one_blas_thread()
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:  # gdcm is optional; the others fail on first use with their error
            pass
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        index, args = job
        try:
            reply = ("ok", task(index, *args))
        except BaseException as exc:  # noqa: BLE001  (a Rust panic is not an Exception)
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            reply = ("error", f"{text}\n{traceback.format_exc()}")
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return
        except Exception as exc:  # the result would not pickle
            conn.send(("error", f"result of item {index} cannot be sent back: {exc!r}"))
