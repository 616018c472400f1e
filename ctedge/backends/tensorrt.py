"""TensorRT backend: a serialized engine built by `ctedge build-engine --target tensorrt`.

Thin, against NVIDIA's documented API (TensorRT 10/11 name-based I/O: `set_input_shape`,
`set_tensor_address`, `execute_async_v3`) and cuda-python (`cuda.bindings.runtime` in
cuda-python 12.6+/13, `cuda.cudart` before). Device buffers for the profile's max batch, one
stream, pinned host buffers; larger batches are chunked by the base class (`max_batch`).
Before deserialising, the engine's manifest is checked against this TensorRT and GPU, so a
mismatch says "rebuild" instead of failing inside TensorRT. Never run on this project's
machines (none has TensorRT); tests marked `tensorrt` run where it exists.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from ..artifact import ModelInfo
from ..engine_manifest import (
    check_engine_file,
    check_tensorrt_runtime,
    manifest_path,
    read_manifest,
)
from ..errors import BackendUnavailable, ModelError
from .base import Backend


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 / 13
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise BackendUnavailable("the TensorRT backend needs cuda-python; install it with "
                                     "pip install 'ctedge[tensorrt]'") from exc
    return cudart


def _check(result):
    """cuda-python returns (error, *values); raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    cudart = _cudart()
    if err != cudart.cudaError_t.cudaSuccess:
        raise BackendUnavailable(f"CUDA call failed ({err}); check the GPU driver with nvidia-smi")
    return values[0] if len(values) == 1 else values


def gpu_count() -> int:
    cudart = _cudart()
    err, count = cudart.cudaGetDeviceCount()
    return int(count) if err == cudart.cudaError_t.cudaSuccess else 0


def gpu_facts(device: int | None = None) -> dict:
    """{"name": ..., "compute_capability": "9.0"} of the current (or given) CUDA device."""
    cudart = _cudart()
    if device is None:
        device = _check(cudart.cudaGetDevice())
    props = _check(cudart.cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"name": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}"}


def _dtype(trt, trt_type) -> np.dtype:
    return np.dtype(trt.nptype(trt_type))


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: str | Path, check_manifest: bool = True,
                 info: ModelInfo | None = None):
        """check_manifest=False and `info` are for `build-engine`'s parity run, before the
        manifest exists; everything else loads through the manifest."""
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendUnavailable("TensorRT is not installed here; install TensorRT 10/11 "
                                     "(pip install 'ctedge[tensorrt]') or run the .onnx model "
                                     "on ONNX Runtime") from exc
        from ..artifact import file_sha256

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: engine file not found; build it with "
                             "`ctedge build-engine --target tensorrt`")
        self._cudart = cudart = _cudart()
        gpu = gpu_facts()
        mpath = manifest_path(self.path)
        if check_manifest:
            if mpath is None:
                raise ModelError(f"{self.path}: no manifest.json beside the engine; rebuild it "
                                 "with `ctedge build-engine`")
            manifest = read_manifest(mpath)
            check_engine_file(manifest, self.path.parent, file_sha256(self.path))
            check_tensorrt_runtime(manifest, trt.__version__, gpu["name"],
                                   gpu["compute_capability"], str(self.path))
        manifest = read_manifest(mpath) if mpath is not None else None
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ModelError(f"{self.path}: TensorRT could not deserialize the engine (another "
                             "TensorRT version or GPU?); rebuild it with `ctedge build-engine`")
        self.context = self.engine.create_execution_context()
        self.info = info or self._model_info(manifest)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{self.path}: expected one input and one output, got {names}; "
                             "rebuild it with `ctedge build-engine`")
        (self._input,), (self._output,) = inputs, outputs
        self.max_batch = int(self.engine.get_tensor_profile_shape(self._input, 0)[2][0])
        self._in_dtype = _dtype(trt, self.engine.get_tensor_dtype(self._input))
        self._out_dtype = _dtype(trt, self.engine.get_tensor_dtype(self._output))
        n_classes = len(self.info.classes)
        in_bytes = self.max_batch * int(np.prod(self.info.input_shape)) * self._in_dtype.itemsize
        out_bytes = self.max_batch * n_classes * self._out_dtype.itemsize
        self._stream = _check(cudart.cudaStreamCreate())
        self._d_in = _check(cudart.cudaMalloc(in_bytes))
        self._d_out = _check(cudart.cudaMalloc(out_bytes))
        self._h_in_ptr = _check(cudart.cudaMallocHost(in_bytes))
        self._h_out_ptr = _check(cudart.cudaMallocHost(out_bytes))
        self._h_in = np.frombuffer((ctypes.c_byte * in_bytes).from_address(self._h_in_ptr),
                                   dtype=self._in_dtype)
        self._h_out = np.frombuffer((ctypes.c_byte * out_bytes).from_address(self._h_out_ptr),
                                    dtype=self._out_dtype)
        self.context.set_tensor_address(self._input, int(self._d_in))
        self.context.set_tensor_address(self._output, int(self._d_out))
        self._gpu = gpu

    def _model_info(self, manifest) -> ModelInfo:
        if manifest is None:
            raise ModelError(f"{self.path}: no manifest.json beside the engine, so its classes "
                             "and preprocessing are unknown; rebuild it with `ctedge build-engine`")
        from ..preprocess import Preprocessing

        return ModelInfo(classes=manifest.classes, negative_class=manifest.negative_class,
                         preprocessing=Preprocessing.from_dict(manifest.preprocessing),
                         precision=manifest.precision)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        n = len(batch)
        flat_in = batch.astype(self._in_dtype, copy=False).ravel()
        self._h_in[: flat_in.size] = flat_in
        self.context.set_input_shape(self._input, tuple(batch.shape))
        kind = cudart.cudaMemcpyKind
        _check(cudart.cudaMemcpyAsync(self._d_in, self._h_in_ptr, flat_in.nbytes,
                                      kind.cudaMemcpyHostToDevice, self._stream))
        if not self.context.execute_async_v3(int(self._stream)):
            raise ModelError(f"{self.path}: TensorRT execution failed; rebuild the engine with "
                             "`ctedge build-engine`")
        n_out = n * len(self.info.classes)
        _check(cudart.cudaMemcpyAsync(self._h_out_ptr, self._d_out,
                                      n_out * self._out_dtype.itemsize,
                                      kind.cudaMemcpyDeviceToHost, self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        return self._h_out[:n_out].reshape(n, -1).astype(np.float32)  # a copy: buffer is reused

    @property
    def description(self) -> dict:
        return {**super().description, "gpu": self._gpu["name"],
                "compute_capability": self._gpu["compute_capability"]}

    def close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for name, free in (("_d_in", cudart.cudaFree), ("_d_out", cudart.cudaFree),
                           ("_h_in_ptr", cudart.cudaFreeHost), ("_h_out_ptr", cudart.cudaFreeHost),
                           ("_stream", cudart.cudaStreamDestroy)):
            handle = getattr(self, name, None)
            if handle is not None:
                free(handle)
                setattr(self, name, None)
        self.context = self.engine = None
