"""Store an FP32 ONNX model's weights as FP16 to halve the file, keeping an FP32 graph.

Every float32 initializer with at least `min_elements` values is replaced by its float16
rounding plus a `Cast(to=FLOAT)` node that rebuilds the float32 tensor under the original name.
The computation is then exactly the FP32 graph with FP16-rounded weights (inputs, activations,
outputs stay float32). ONNX Runtime folds the casts once at session start. `expand` turns such a
model back into plain FP32 initializers (for tools that want weights as initializers, e.g. INT8
quantizers that insert Q/DQ on Conv weights). onnx only, no torch.
"""

from __future__ import annotations

import numpy as np

SUFFIX = "__fp16"


def compact_fp16_weights(model, min_elements: int = 1024):
    """Return a copy of onnx.ModelProto `model` with large float32 weights stored as float16."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    keep, casts = [], []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= min_elements:
            half = numpy_helper.to_array(init).astype(np.float16)
            keep.append(numpy_helper.from_array(half, init.name + SUFFIX))
            casts.append(helper.make_node("Cast", [init.name + SUFFIX], [init.name],
                                          to=TensorProto.FLOAT, name=f"cast_{init.name}"))
        else:
            keep.append(init)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return out


def round_fp16_weights(model, min_elements: int = 1024):
    """The same weights as `compact_fp16_weights` gives, kept as float32 initializers."""
    import onnx
    from onnx import TensorProto, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    for i, init in enumerate(out.graph.initializer):
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= min_elements:
            rounded = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            out.graph.initializer[i].CopyFrom(numpy_helper.from_array(rounded, init.name))
    return out


def expand(model):
    """Undo `compact_fp16_weights`: float16 initializer + Cast -> one float32 initializer."""
    import onnx
    from onnx import TensorProto, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    halves = {t.name: t for t in graph.initializer if t.name.endswith(SUFFIX)}
    expanded, nodes = {}, []
    for node in graph.node:
        if (node.op_type == "Cast" and len(node.input) == 1 and node.input[0] in halves
                and any(a.name == "to" and a.i == TensorProto.FLOAT for a in node.attribute)):
            value = numpy_helper.to_array(halves[node.input[0]]).astype(np.float32)
            expanded[node.input[0]] = numpy_helper.from_array(value, node.output[0])
        else:
            nodes.append(node)
    inits = [expanded.get(t.name, t) for t in graph.initializer]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.node[:]
    graph.node.extend(nodes)
    return out
