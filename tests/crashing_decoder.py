"""Decode tasks that kill their worker process, for the worker-death tests.

Importable by name (tests/ is on pytest's pythonpath) so that forkserver workers can load them.
"""

from __future__ import annotations

import os
import signal
import time

from ctedge.slices import prepare_slice


def square_or_die(index: int, value: int) -> int:
    """value squared; value -11 kills the worker with SIGSEGV, -3 makes it exit with code 3,
    -1 raises a BaseException that is not an Exception (as a Rust panic in a decoder does),
    -2 hangs."""
    if value == -11:
        os.kill(os.getpid(), signal.SIGSEGV)
    if value == -3:
        os._exit(3)
    if value == -2:
        time.sleep(3600)
    if value == -1:
        raise Panic("decoder panicked")
    return value * value


class Panic(BaseException):
    """Like pyo3's PanicException: a BaseException, and it does not pickle."""

    def __reduce__(self):
        raise TypeError("cannot pickle a panic")


def prepare_or_segfault(index, ref, preprocessing, lungs):
    """ctedge.slices.prepare_slice, except that a file named *segv* crashes the worker, as a
    decoder bug on a malformed file would."""
    if "segv" in ref.path.name:
        os.kill(os.getpid(), signal.SIGSEGV)
    return prepare_slice(index, ref, preprocessing, lungs)
