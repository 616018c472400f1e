"""OpenVINO backend: an ONNX model (FP32, FP16 or the CPU-form INT8 Q/DQ) on the CPU.

An optional extra (`pip install 'ctedge[openvino]'`), imported only when this backend opens.
`ctedge build-engine --target cpu` measures it against ONNX Runtime and records the faster one
in the engine folder's manifest; `--backend openvino` also runs any plain ctedge .onnx.

Compiled with inference precision pinned to f32: on CPUs with bf16 OpenVINO otherwise runs
every non-quantised op (FP32 layers, Softmax) in bf16, so an FP32 model would silently stop
being FP32 and INT8 parity numbers would not be the ones measured at build time. bf16 was not
faster for the INT8 ResNet-50 here either (docs/engines.md). THROUGHPUT hint: several CPU
streams; a batch is split across one infer request per stream and run concurrently, which
beat the LATENCY hint (one stream, all threads) at batch 16 on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifact import read_info
from ..cache import cache_root, writable_folder
from ..errors import BackendUnavailable, ModelError
from .base import Backend

HINTS = ("THROUGHPUT", "LATENCY")
DEVICE = "CPU"


def import_openvino():
    """The openvino module, or BackendUnavailable naming the extra."""
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailable("OpenVINO is not installed here; install it with "
                                 "pip install 'ctedge[openvino]', or run the model on ONNX "
                                 "Runtime (--backend onnxruntime)") from exc
    return openvino


def compiled_cache_dir() -> Path | None:
    """Where OpenVINO keeps compiled models: `$CTEDGE_CACHE/openvino`; None when it cannot be
    made writable (then every start compiles, as without a cache). OpenVINO keys each blob by
    the model, the device, its configuration and its own version, and writes it only when the
    compilation succeeded."""
    return writable_folder(cache_root() / "openvino")


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, path: str | Path, threads: int = 0, hint: str = "THROUGHPUT"):
        """threads: CPU threads in all (0: OpenVINO's default, every core);
        hint: OpenVINO performance hint, THROUGHPUT (default) or LATENCY."""
        if hint not in HINTS:
            raise ValueError(f"hint must be one of {HINTS}, got {hint!r}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        ov = import_openvino()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found; pass --model with an .onnx "
                             "file or an engine folder made by `ctedge build-engine`")
        from ..engine_manifest import check_cpu_engine

        # A build-engine folder: built for this OpenVINO and CPU, file unchanged?
        check_cpu_engine(self.path, ov.__version__, backend="openvino")
        self.info = read_info(self.path)  # ModelError for a corrupt file or no ctedge metadata
        core = ov.Core()
        cache = compiled_cache_dir()
        if cache is not None:
            # OpenVINO's own model cache: later starts import the compiled blob instead of
            # compiling (0.08-0.10 s against 0.36-0.44 s for the INT8 engine, docs/speed.md).
            core.set_property({"CACHE_DIR": str(cache)})
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelError(f"{self.path}: OpenVINO cannot read this model ({_first_line(exc)});"
                             " re-export it with `ctedge export`, or run it on ONNX Runtime") \
                from exc
        full = model
        model, self._maps_index = _without_maps(ov, model, self.info.cam.get("output"))
        self._check_signature(model, ov.Type.f32)
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = self._compile(core, model, config)
        # With maps: the full model is compiled on the first infer_maps call only, so plain
        # classification never computes them.
        self._full = (core, full, config) if self._maps_index is not None else None
        self._maps_requests: list = []
        streams = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._requests = [self.compiled.create_infer_request() for _ in range(streams)]
        self._version = ov.__version__
        self._hint = hint
        self._threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))

    def _compile(self, core, model, config):
        try:
            return core.compile_model(model, DEVICE, config)
        except Exception as exc:
            raise ModelError(f"{self.path}: OpenVINO cannot compile this model for {DEVICE} "
                             f"({_first_line(exc)}); run it on ONNX Runtime instead") from exc

    def _check_signature(self, model, f32) -> None:
        inputs, outputs = model.inputs, model.outputs
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{self.path}: expected one input and one output, got "
                             f"{len(inputs)} and {len(outputs)}; re-export it with `ctedge export`")
        (inp,), (out,) = inputs, outputs
        expected = self.info.input_shape
        shape = inp.get_partial_shape()
        if inp.get_element_type() != f32 or _dims(shape)[1:] != expected:
            raise ModelError(f"{self.path}: input is {inp.get_element_type().get_type_name()} "
                             f"{shape}, metadata needs f32 [N, {', '.join(map(str, expected))}]; "
                             "re-export it")
        oshape = out.get_partial_shape()
        n_classes = (_dims(oshape) or (None,))[-1]
        if out.get_element_type() != f32 or n_classes != len(self.info.classes):
            raise ModelError(f"{self.path}: output is {out.get_element_type().get_type_name()} "
                             f"{oshape}, metadata lists {len(self.info.classes)} classes; "
                             "re-export it")

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        # One slice of the batch per infer request (= per CPU stream), run concurrently.
        parts = np.array_split(batch, min(len(self._requests), len(batch)))
        if len(parts) == 1:
            request = self._requests[0]
            request.infer({0: batch})
            return request.get_output_tensor(0).data.copy()
        used = self._requests[:len(parts)]
        for request, part in zip(used, parts, strict=True):
            request.start_async({0: part})
        for request in used:
            request.wait()
        # copies: the output tensors belong to the requests and are reused
        return np.concatenate([request.get_output_tensor(0).data for request in used])

    @property
    def has_maps(self) -> bool:
        return self._maps_index is not None

    def _infer_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self._maps_requests:  # compiled like the probabilities-only model
            core, full, config = self._full
            compiled = self._compile(core, full, config)
            self._maps_requests = [compiled.create_infer_request()
                                   for _ in range(len(self._requests))]
        parts = np.array_split(batch, min(len(self._maps_requests), len(batch)))
        used = self._maps_requests[:len(parts)]
        for request, part in zip(used, parts, strict=True):
            request.start_async({0: part})
        for request in used:
            request.wait()
        probs_index = 1 - self._maps_index
        # copies: the output tensors belong to the requests and are reused
        return (np.concatenate([r.get_output_tensor(probs_index).data for r in used]),
                np.concatenate([r.get_output_tensor(self._maps_index).data for r in used]))

    @property
    def description(self) -> dict:
        return {**super().description, "openvino": self._version, "device": DEVICE,
                "performance_hint": self._hint, "streams": len(self._requests),
                "threads": self._threads, "inference_precision": "f32"}

    def close(self) -> None:
        self._requests = []
        self._maps_requests = []
        self._full = None
        self.compiled = None


def _without_maps(ov, model, name: str | None):
    """(the model with only its probabilities output, index of the maps output or None)."""
    if name is None or len(model.outputs) != 2:
        return model, None
    names = [set(o.get_names()) for o in model.outputs]
    hits = [i for i, n in enumerate(names) if name in n]
    if len(hits) != 1:
        return model, None
    # A model of the same nodes ending at the probabilities only (results keep output order).
    probs_only = ov.Model([model.get_results()[1 - hits[0]]], model.get_parameters(),
                          "probabilities")
    return probs_only, hits[0]


def _dims(shape) -> tuple:
    """An OpenVINO PartialShape as a tuple (None: dynamic dimension; () for dynamic rank)."""
    if not shape.rank.is_static:
        return ()
    return tuple(d.get_length() if d.is_static else None for d in shape)


def _first_line(exc: Exception) -> str:
    """The first informative line of an OpenVINO error (it starts with source locations)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[0][:200]
