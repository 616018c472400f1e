"""ONNX Runtime backend: CPU by default; CUDA and TensorRT providers with onnxruntime-gpu."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifact import ModelInfo
from ..errors import ModelError
from .base import Backend

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int = 0):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found; pass --model with an .onnx file")
        from ..engine_manifest import check_cpu_engine

        check_cpu_engine(self.path, ort.__version__)  # a build-engine folder: same ORT and CPU?
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in GPU_PROVIDERS if p in available] + ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ModelError(f"{self.path}: ONNX Runtime cannot load this model ({first}); "
                             "re-export it with `ctedge export`") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata_map(meta, str(self.path))
        self._check_signature()

    def _check_signature(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self._maps = None
        cam = self.info.cam.get("output") if self.info.cam else None
        if cam is not None and cam in [o.name for o in outputs]:
            self._maps = cam  # the declared class-activation maps, fetched only when asked
            outputs = [o for o in outputs if o.name != cam]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{self.path}: expected one input and one output, got "
                             f"{len(inputs)} and {len(outputs)}; re-export it with `ctedge export`")
        (inp,), (out,) = inputs, outputs
        expected = self.info.input_shape
        dims = tuple(inp.shape[1:])
        if inp.type != "tensor(float)" or dims != expected:
            raise ModelError(f"{self.path}: input is {inp.type} {list(inp.shape)}, metadata needs "
                             f"float [N, {', '.join(map(str, expected))}]; re-export it")
        classes = out.shape[-1] if out.shape else None
        if out.type != "tensor(float)" or classes != len(self.info.classes):
            raise ModelError(f"{self.path}: output is {out.type} {list(out.shape)}, metadata lists "
                             f"{len(self.info.classes)} classes; re-export it")
        self._input, self._output = inp.name, out.name

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self._output], {self._input: batch})[0]

    def _infer_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, maps = self.session.run([self._output, self._maps], {self._input: batch})
        return probs, maps

    @property
    def has_maps(self) -> bool:
        return self._maps is not None

    @property
    def description(self) -> dict:
        return {**super().description, "providers": self.session.get_providers()}

    def close(self) -> None:
        self.session = None
