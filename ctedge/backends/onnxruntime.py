"""ONNX Runtime backend: CPU by default; CUDA and TensorRT providers with onnxruntime-gpu.

On the CPU a batch is split across one single-threaded session per core (streams, see
`_infer`); with explicit `threads` one session runs with that many intra-op threads, which do
not spin while idle (`spinning=False`): between batches the decode workers need those cores,
and on a shared box spinning threads only burn them (measured: FP32 batch 16, 41-45 ms CPU per
image without spinning, 47-56 ms with). A plain .onnx on the CPU starts from a cached
optimised graph (ctedge.backends.ort_cache).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..artifact import ModelInfo
from ..errors import ModelError
from .base import Backend

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int = 0,
                 spinning: bool = False, cache: bool = True):
        """threads: intra-op threads of one session; 0 (default) on the CPU runs one
        single-threaded session per core instead ("streams", see _infer).
        spinning: let idle intra-op threads spin.
        cache: reuse (and save) the optimised graph of a plain .onnx on the CPU."""
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found; pass --model with an .onnx file")
        from ..engine_manifest import check_cpu_engine, manifest_path

        check_cpu_engine(self.path, ort.__version__)  # a build-engine folder: same ORT and CPU?
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in GPU_PROVIDERS if p in available] + ["CPUExecutionProvider"]
        cpu_only = providers == ["CPUExecutionProvider"]
        streams, per_stream = (cpu_cores(), 1) if cpu_only and threads == 0 else (1, threads)
        # Engine folders hold a graph already optimised offline; GPU graphs are not cached.
        use_cache = cache and cpu_only and manifest_path(self.path) is None
        try:
            opened = [self._open(ort, _options(ort, per_stream, spinning), providers, use_cache)
                      for _ in range(streams)]
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ModelError(f"{self.path}: ONNX Runtime cannot load this model ({first}); "
                             "re-export it with `ctedge export`") from exc
        self.sessions = [session for session, _ in opened]
        self.session = self.sessions[0]
        # The cached optimised graph the first session loaded (None: optimised in memory).
        self.optimized_from = opened[0][1]
        self._threads_per_stream = per_stream
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata_map(meta, str(self.path))
        self._check_signature()

    def _open(self, ort, options, providers, use_cache: bool):
        """(session, the cached optimised graph it loaded or None)."""
        if not use_cache:
            return ort.InferenceSession(str(self.path), options, providers=providers), None
        from ..artifact import file_sha256
        from . import ort_cache

        cached = ort_cache.cached_path(file_sha256(self.path), ort.__version__)
        if cached.is_file():
            level = options.graph_optimization_level
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                return ort.InferenceSession(str(cached), options, providers=providers), str(cached)
            except Exception:  # a damaged cache file: optimise from the model again
                options.graph_optimization_level = level
        temp = ort_cache.writable_temp(cached)
        if temp is not None:
            options.optimized_model_filepath = str(temp)
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers), None
        finally:
            if temp is not None:
                ort_cache.publish(temp, cached)

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
        """Run the batch; with several streams, split it and run the parts at once, one
        single-threaded session each. Streams beat one session with a thread per core here:
        no per-layer barrier between threads (measured on 2 cores, batch 16, 160 px: INT8
        11.5 vs 13.2 ms CPU per image, FP32 40.5 vs 45 ms; docs/speed.md). The threads live
        for one call only, so no Python thread outlives it (decode workers fork only from a
        process without other Python threads, see ctedge.workers)."""
        parts = np.array_split(batch, min(len(self.sessions), len(batch)))
        if len(parts) == 1:
            return self._run(self.session, batch)
        out: list = [None] * len(parts)

        def run(i: int) -> None:
            try:
                out[i] = self._run(self.sessions[i], parts[i])
            except BaseException as exc:  # noqa: BLE001  (re-raised in the caller below)
                out[i] = exc

        helpers = [threading.Thread(target=run, args=(i,)) for i in range(1, len(parts))]
        for t in helpers:
            t.start()
        run(0)
        for t in helpers:
            t.join()
        for o in out:
            if isinstance(o, BaseException):
                raise o
        return np.concatenate(out)

    def _run(self, session, batch: np.ndarray) -> np.ndarray:
        return session.run([self._output], {self._input: batch})[0]

    def _infer_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, maps = self.session.run([self._output, self._maps], {self._input: batch})
        return probs, maps

    @property
    def has_maps(self) -> bool:
        return self._maps is not None

    @property
    def description(self) -> dict:
        return {**super().description, "providers": self.session.get_providers(),
                "streams": len(self.sessions), "threads_per_stream": self._threads_per_stream}

    def close(self) -> None:
        self.session, self.sessions = None, []


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _options(ort, threads: int, spinning: bool):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options
