"""The CPU engine: an ONNX model with ONNX Runtime's graph optimisations applied offline.

Saved at ORT_ENABLE_EXTENDED: Q/DQ pairs are fused into QLinearConv/QLinearAdd-style kernels,
but no NCHWc layout transforms, which ONNX Runtime marks as hardware-specific (level ALL); at
load time the session applies level ALL on top for this machine. The file still depends on the
ORT version (contrib ops), so the manifest records it and the CPU flags of the build machine.
"""

from __future__ import annotations

from pathlib import Path

from ctedge.artifact import METADATA_KEY, ModelInfo, write_info


def optimize_offline(src: Path, out: Path, info: ModelInfo, threads: int = 0) -> ModelInfo:
    """Write `src` with ORT's extended graph optimisations applied to `out`; returns its info."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out)
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(out))
    # Re-stamp: the graph (and so its hash) changed; keep the metadata in one place.
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY in props:
        info = ModelInfo.from_json(props[METADATA_KEY], str(out))
    info = write_info(model, info)
    onnx.save(model, str(out))
    return info
