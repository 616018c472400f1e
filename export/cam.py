"""Class-activation maps as a second ONNX output, by graph surgery on any ctedge model.

ResNet-50 ends in GlobalAveragePool -> Flatten -> Gemm(W, b). Because the pooling is a plain
mean, the logit of class c equals the mean over positions of the map

    cam[n, c, y, x] = sum_k W[c, k] * F[n, k, y, x] + b[c]

where F is the last convolutional feature map (Zhou et al. 2016, "Learning deep features for
discriminative localization"). That map is a 1x1 Conv of F with the fc weights reshaped to
(C, K, 1, 1): no gradient, no torch, a few hundred kFLOPs per slice against ~2 GFLOPs for the
network. `add_cam` appends that Conv (reading the Gemm's own weight and bias tensors, so it
works on FP32, FP16-stored ("compact") and Q/DQ models alike) and declares the output in the
ctedge metadata; `strip_cam` removes it again (the quantisers and TensorRT build from a model
without it). onnx only.
"""

from __future__ import annotations

from ctedge.artifact import METADATA_KEY, ModelInfo, write_info
from ctedge.errors import ModelError

CAM_OUTPUT = "class_activation_maps"
PREFIX = "ctedge_cam/"  # names of every node and tensor the surgery adds


def add_cam(model, info: ModelInfo | None = None):
    """Append the CAM output to onnx.ModelProto `model` in place and stamp the metadata.

    info: the metadata to stamp (default: the model's own). Returns the new ModelInfo.
    Raises ModelError when the graph does not end in GlobalAveragePool -> Flatten -> Gemm.
    A model that already has the output is returned unchanged (its info re-read).
    """
    from onnx import TensorProto, helper

    info = info or _own_info(model)
    if any(o.name == CAM_OUTPUT for o in model.graph.output):
        return info if info.cam else write_info(model, info.with_(cam=_declaration(model)))
    pool, gemm = _pool_and_gemm(model)
    if _attr(gemm, "transA", 0) != 0:
        raise ModelError("the classifier Gemm has transA=1; CAM surgery supports torchvision "
                         "ResNet exports only")
    features, weight = pool.input[0], gemm.input[1]
    nodes = []
    if _attr(gemm, "transB", 0) == 0:  # W stored (K, C): make it (C, K)
        nodes.append(helper.make_node("Transpose", [weight], [PREFIX + "weight_t"],
                                      perm=[1, 0], name=PREFIX + "transpose"))
        weight = PREFIX + "weight_t"
    shape = helper.make_tensor(PREFIX + "kernel_shape", TensorProto.INT64, [4], [0, -1, 1, 1])
    model.graph.initializer.append(shape)
    nodes.append(helper.make_node("Reshape", [weight, shape.name], [PREFIX + "kernel"],
                                  name=PREFIX + "kernel"))
    conv_inputs = [features, PREFIX + "kernel"] + ([gemm.input[2]] if len(gemm.input) > 2
                                                   and gemm.input[2] else [])
    elem = _elem_type(model, features)
    conv_out = CAM_OUTPUT if elem == TensorProto.FLOAT else PREFIX + "maps"
    nodes.append(helper.make_node("Conv", conv_inputs, [conv_out], kernel_shape=[1, 1],
                                  name=PREFIX + "conv"))
    if conv_out != CAM_OUTPUT:  # an FP16 graph: the output stays float32 like the probabilities
        nodes.append(helper.make_node("Cast", [conv_out], [CAM_OUTPUT], to=TensorProto.FLOAT,
                                      name=PREFIX + "cast"))
    model.graph.node.extend(nodes)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    n = batch.dim_param or (batch.dim_value if batch.dim_value else "N")
    model.graph.output.append(helper.make_tensor_value_info(
        CAM_OUTPUT, TensorProto.FLOAT, [n, len(info.classes), None, None]))
    return write_info(model, info.with_(cam=_declaration(model)))


def strip_cam(model, info: ModelInfo | None = None):
    """Remove the CAM output and its nodes from `model` in place; returns the new ModelInfo."""
    info = info or _own_info(model)
    keep = [n for n in model.graph.node if not n.name.startswith(PREFIX)]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    inits = [t for t in model.graph.initializer if not t.name.startswith(PREFIX)]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    outputs = [o for o in model.graph.output if o.name != CAM_OUTPUT]
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    return write_info(model, info.with_(cam={}))


def has_cam(model) -> bool:
    return any(o.name == CAM_OUTPUT for o in model.graph.output)


def add_cam_file(src, out) -> ModelInfo:
    """Read the ctedge ONNX at `src`, add the CAM output, write it to `out` atomically."""
    import onnx

    from ctedge.artifact import read_info
    from ctedge.io import atomic_path

    info = read_info(src)  # ModelError for a missing or foreign file
    model = onnx.load(str(src))
    info = add_cam(model, info)
    onnx.checker.check_model(model)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return info


def _declaration(model) -> dict:
    """What the metadata says about the maps: output name, layout, what they are."""
    return {"output": CAM_OUTPUT, "layout": "NCHW",
            "values": "class logit contribution per feature-map position (before softmax); "
                      "the mean over positions is the class logit",
            "source": "last conv feature map x classifier weights (CAM, Zhou et al. 2016)"}


def _own_info(model) -> ModelInfo:
    props = {p.key: p.value for p in model.metadata_props}
    return ModelInfo.from_metadata_map(props)


def _pool_and_gemm(model):
    """The GlobalAveragePool feeding (through Flatten/Reshape/Q-DQ) the classifier Gemm."""
    producers = {o: n for n in model.graph.node for o in n.output}
    gemms = [n for n in model.graph.node if n.op_type in ("Gemm",)
             and not n.name.startswith(PREFIX)]
    for gemm in gemms:
        node, hops = producers.get(gemm.input[0]), 0
        while node is not None and hops < 6:
            if node.op_type == "GlobalAveragePool":
                return node, gemm
            if node.op_type not in ("Flatten", "Reshape", "Squeeze", "QuantizeLinear",
                                    "DequantizeLinear", "Cast"):
                break
            node, hops = producers.get(node.input[0]), hops + 1
    raise ModelError("no GlobalAveragePool -> Flatten -> Gemm classifier head found; class-"
                     "activation maps need a ResNet-style model exported by `ctedge export`")


def _elem_type(model, name: str) -> int:
    """The element type of tensor `name` (float32 unless shape inference says otherwise)."""
    from onnx import TensorProto, shape_inference

    for vi in list(model.graph.value_info) + list(model.graph.input):
        if vi.name == name:
            return vi.type.tensor_type.elem_type
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001  (inference is a hint only)
        return TensorProto.FLOAT
    for vi in inferred.graph.value_info:
        if vi.name == name:
            return vi.type.tensor_type.elem_type
    return TensorProto.FLOAT


def _attr(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


__all__ = ["CAM_OUTPUT", "METADATA_KEY", "add_cam", "add_cam_file", "has_cam", "strip_cam"]
