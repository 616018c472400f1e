"""Helpers shared by the Triton tests (importable; conftest.py holds the fixtures)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HAS_CLIENT = importlib.util.find_spec("tritonclient") is not None
needs_client = pytest.mark.skipif(not HAS_CLIENT, reason="tritonclient not installed "
                                  "(pip install 'ctedge[triton]')")
REFERENCE_MODEL = (Path(__file__).resolve().parents[2] / "models"
                   / "ctedge-resnet50-ucsd-sarscov2-ctmd.onnx")
TINY_SIZE = 64


def tritonserver_missing() -> str:
    if not HAS_CLIENT:
        return "tritonclient not installed (pip install 'ctedge[triton]')"
    from ctedge.errors import BackendUnavailable
    from ctedge.triton.server import check_python, triton_home

    try:
        triton_home()
        check_python()
    except BackendUnavailable as exc:
        return str(exc)
    return ""
