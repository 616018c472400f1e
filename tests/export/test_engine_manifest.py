"""Engine manifest read/write/validation, with hand-written manifests (no TensorRT needed)."""

from __future__ import annotations

import pytest

from ctedge.engine_manifest import (
    EngineManifest,
    check_cpu_runtime,
    check_engine_file,
    check_source,
    cpu_facts,
    manifest_path,
    openvino_runtime,
    read_manifest,
    write_manifest,
)
from ctedge.errors import ModelError

CPUINFO = """processor\t: 0
model name\t: Example CPU 9000
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni sha_ni
"""


def _manifest(**changes) -> EngineManifest:
    fields = dict(
        file="m.int8.cpu.onnx", backend="onnxruntime", target="cpu", precision="int8",
        engine_sha256="e" * 64, onnx_sha256="o" * 64, classes=("normal", "covid19"),
        negative_class="normal", preprocessing={"size": 224},
        runtime={"onnxruntime": "1.32.0",
                 "cpu": {"model": "Example CPU 9000", "machine": "x86_64",
                         "flags": ["avx", "avx2", "avx512_vnni", "avx512f", "fma"]}})
    fields.update(changes)
    return EngineManifest(**fields)


def test_cpu_facts_keep_only_relevant_flags():
    facts = cpu_facts(CPUINFO)
    assert facts["model"] == "Example CPU 9000"
    assert facts["flags"] == ["avx", "avx2", "avx512_vnni", "avx512f", "fma"]


def test_manifest_round_trip_and_lookup(tmp_path):
    manifest = _manifest()
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    (tmp_path / manifest.file).write_bytes(b"x")
    assert manifest_path(tmp_path / manifest.file) == tmp_path / "manifest.json"
    assert manifest_path(tmp_path / "other.onnx") is None


@pytest.mark.parametrize("changes, message", [
    ({"backend": "tflite"}, "backend must be"),
    ({"precision": "int4"}, "precision must be"),
    ({"file": "../escape.onnx"}, "plain file name"),
    ({"schema": 99}, "unsupported manifest schema"),
])
def test_invalid_manifests_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        _manifest(**changes)


def test_unreadable_manifest_says_rebuild(tmp_path):
    (tmp_path / "manifest.json").write_text('{"file": "x.onnx"}')
    with pytest.raises(ModelError, match="unreadable engine manifest.*ctedge build-engine"):
        read_manifest(tmp_path)


def test_cpu_runtime_checks():
    here = cpu_facts(CPUINFO) | {"machine": "x86_64"}
    check_cpu_runtime(_manifest(), "1.32.0", here)  # same: no error
    with pytest.raises(ModelError, match="built for ONNX Runtime 1.32.0, this is 1.33.0"):
        check_cpu_runtime(_manifest(), "1.33.0", here)
    older = here | {"flags": ["avx", "avx2", "fma"]}
    with pytest.raises(ModelError, match="avx512_vnni, avx512f, which this CPU"):
        check_cpu_runtime(_manifest(), "1.32.0", older)
    with pytest.raises(ModelError, match="built for x86_64 CPUs, this is aarch64"):
        check_cpu_runtime(_manifest(), "1.32.0", here | {"machine": "aarch64"})
    newer = here | {"flags": [*here["flags"], "amx_int8"]}
    check_cpu_runtime(_manifest(), "1.32.0", newer)  # extra features are fine


def test_openvino_engine_runtime_checks(tmp_path):
    here = cpu_facts(CPUINFO) | {"machine": "x86_64"}
    manifest = _manifest(backend="openvino", file="m.int8-qdq-cpu.onnx",
                         runtime=openvino_runtime("2026.4.1-x", here),
                         backend_choice={"backend": "openvino", "chosen_by": "measurement",
                                         "onnxruntime_img_s": 36.2, "openvino_img_s": 62.2})
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest  # backend_choice survives the round trip
    check_cpu_runtime(manifest, "2026.4.1-x", here)
    with pytest.raises(ModelError, match="built for OpenVINO 2026.4.1-x, this is 2026.5.0"):
        check_cpu_runtime(manifest, "2026.5.0", here)
    with pytest.raises(ModelError, match="avx512_vnni, avx512f, which this CPU"):
        check_cpu_runtime(manifest, "2026.4.1-x", here | {"flags": ["avx", "avx2", "fma"]})


def test_file_and_source_hash_checks(tmp_path):
    manifest = _manifest()
    check_engine_file(manifest, tmp_path, "e" * 64)
    with pytest.raises(ModelError, match="does not match its manifest"):
        check_engine_file(manifest, tmp_path, "f" * 64)
    check_source(manifest, "o" * 64, tmp_path)
    with pytest.raises(ModelError, match="built from ONNX"):
        check_source(manifest, "p" * 64, tmp_path)
