"""Everything the benchmark times, behind one small contract: `infer(float32 NCHW) -> probs`.

- `CtedgeRunner`: a ctedge model on its own backend (what ships).
- `TorchRunner`: PyTorch eager FP32 (the paper's stack), bf16 autocast + channels_last on CPU,
  and FP16/bf16 with CUDA graphs on a GPU.
- `OpenVinoRunner`: OpenVINO FP32 on the FP32 ONNX, and INT8 after NNCF post-training
  quantization on the given calibration inputs.
Optional libraries are imported when a runner is made; a missing one raises
BackendUnavailable naming the extra.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ctedge.errors import BackendUnavailable, ModelError

from .models import ModelUnderTest

PEER_LABELS = {
    "torch-fp32": "PyTorch eager FP32",
    "torch-bf16-cl": "PyTorch bf16 autocast + channels_last",
    "torch-cuda-fp16-graph": "PyTorch CUDA FP16 + CUDA graph",
    "torch-cuda-bf16-graph": "PyTorch CUDA bf16 + CUDA graph",
    "ort-fp32": "ONNX Runtime FP32",
    "openvino-fp32": "OpenVINO FP32",
    "openvino-int8": "OpenVINO INT8 (NNCF PTQ)",
}
PEER_EXTRA = {"torch": "train", "openvino": "openvino", "ort": "ctedge"}


def install_hint(peer: str) -> str:
    family = peer.split("-")[0]
    extra = PEER_EXTRA[family]
    target = "ctedge" if extra == "ctedge" else f"ctedge[{extra}]"
    return f"pip install '{target}'"


class Runner:
    """A loaded model: `infer` maps a float32 (N, 3, S, S) batch to (N, n_classes) probabilities.

    `sync` (None on the CPU) waits for queued device work; `description` says what ran.
    `real_weights` is False when the weights are random (timing only, not accuracy).
    """

    name: str = "runner"
    label: str = "runner"
    sync: Callable[[], None] | None = None
    real_weights: bool = True

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def description(self) -> dict:
        return {"name": self.name, "label": self.label, "real_weights": self.real_weights}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CtedgeRunner(Runner):
    def __init__(self, model: ModelUnderTest, threads: int = 0):
        self.model = model
        self.backend = model.open(threads)
        self.name = f"ctedge:{model.backend}:{model.precision}" + (f":{model.form}"
                                                                   if model.form else "")
        self.label = model.label

    def infer(self, batch):
        return self.backend.infer(batch)

    @property
    def description(self) -> dict:
        return {**super().description, **self.backend.description, "path": str(self.model.path)}

    def close(self):
        self.backend.close()


# --- PyTorch -------------------------------------------------------------------------------

def _torch():
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable("PyTorch peers need torch; install it with: "
                                 "pip install 'ctedge[train]'") from exc
    return torch


def resnet50_factory(n_classes: int, checkpoint: Path | None) -> tuple[Callable, bool]:
    """(() -> eval-mode ResNet-50 with softmax, real_weights) from the export helper's builder."""
    try:
        from ctedge.export.model import (
            build_resnet50,
            load_checkpoint,
            model_from_checkpoint,
            with_softmax,
        )
    except ImportError as exc:
        raise BackendUnavailable("PyTorch peers need ctedge.export.model and torch; install "
                                 "with: pip install 'ctedge[train]'") from exc

    def make():
        if checkpoint is not None:
            net = model_from_checkpoint(load_checkpoint(checkpoint))
        else:
            net = build_resnet50(n_classes)
        return with_softmax(net).eval()

    return make, checkpoint is not None


class TorchRunner(Runner):
    """`mode`: torch-fp32 (eager), torch-bf16-cl (bf16 autocast + channels_last),
    torch-cuda-fp16-graph / torch-cuda-bf16-graph (half-precision weights, CUDA graph replay).

    The eager modes run on the GPU when torch sees one (the paper's stack on that machine),
    else on the CPU. `make_module`: () -> torch.nn.Module giving probabilities, the same
    architecture as ctedge's model; random weights are fine for speed (`real_weights` says).
    Host-to-device and device-to-host copies are inside `infer`, as they are for the engines.
    """

    def __init__(self, mode: str, make_module: Callable, real_weights: bool, threads: int = 0):
        torch = _torch()
        if mode not in PEER_LABELS or not mode.startswith("torch"):
            raise ValueError(f"unknown torch mode {mode!r}")
        self.torch, self.name, self.label = torch, mode, PEER_LABELS[mode]
        self.real_weights = real_weights
        self.graph_mode = "graph" in mode
        if self.graph_mode and not torch.cuda.is_available():
            raise BackendUnavailable(f"{mode} needs a CUDA GPU; none is visible to torch here")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if threads:
            torch.set_num_threads(threads)
        net = make_module().eval()
        self._graphs: dict[tuple, tuple] = {}
        self.dtype = torch.float32
        if self.graph_mode:
            self.dtype = torch.float16 if "fp16" in mode else torch.bfloat16
            net = net.to(self.dtype)
        if mode != "torch-fp32":
            net = net.to(memory_format=torch.channels_last)
        if self.device == "cuda":
            torch.backends.cudnn.benchmark = True
            net = net.cuda()
            self.sync = torch.cuda.synchronize
        self.net = net

    def infer(self, batch):
        torch = self.torch
        if self.graph_mode:
            return self._infer_graph(batch)
        x = torch.from_numpy(batch).to(self.device)
        with torch.inference_mode():
            if self.name == "torch-bf16-cl":
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device, dtype=torch.bfloat16):
                    out = self.net(x)
            else:
                out = self.net(x)
        return out.float().cpu().numpy()

    def _infer_graph(self, batch):
        """Replay a CUDA graph captured once per input shape."""
        torch = self.torch
        key = batch.shape
        if key not in self._graphs:
            static_in = torch.zeros(key, device="cuda", dtype=self.dtype).contiguous(
                memory_format=torch.channels_last)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.inference_mode(), torch.cuda.stream(stream):
                for _ in range(3):  # warm up on a side stream before capture (PyTorch docs)
                    self.net(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                static_out = self.net(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(torch.from_numpy(batch).to("cuda", self.dtype))
        graph.replay()
        return static_out.float().cpu().numpy()

    @property
    def description(self) -> dict:
        torch = self.torch
        out = {**super().description, "torch": torch.__version__, "device": self.device,
               "threads": torch.get_num_threads()}
        if self.device == "cuda":
            out["gpu"] = torch.cuda.get_device_name(0)
        return out

    def close(self):
        self._graphs.clear()
        self.net = None


# --- OpenVINO ------------------------------------------------------------------------------

def _openvino():
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailable("OpenVINO peers need openvino; install it with: "
                                 "pip install 'ctedge[openvino]'") from exc
    return openvino


class OpenVinoRunner(Runner):
    """OpenVINO on the CPU, FP32 (inference precision pinned to f32, so no silent bf16) or INT8
    (NNCF post-training quantization of the FP32 ONNX on `calibration`, (N, 3, S, S))."""

    def __init__(self, onnx_path: Path, precision: str, calibration: np.ndarray | None = None,
                 threads: int = 0, quantized=None):
        """`quantized`: an INT8 ov.Model from an earlier runner's `.model`, to skip NNCF."""
        ov = _openvino()
        if precision not in ("fp32", "int8"):
            raise ValueError(f"OpenVINO precision must be fp32 or int8, got {precision!r}")
        self.name, self.label = f"openvino-{precision}", PEER_LABELS[f"openvino-{precision}"]
        core = ov.Core()
        try:
            model = core.read_model(str(onnx_path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelError(f"{onnx_path}: OpenVINO cannot read this model ({exc}); pass the "
                             "FP32 .onnx from `ctedge export`") from exc
        self.calibration_count = 0
        if precision == "int8" and quantized is not None:
            model = quantized
            self.calibration_count = 0 if calibration is None else len(calibration)
        elif precision == "int8":
            model = self._quantize(model, calibration)
        self.model = model
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.version = ov.get_version()

    def _quantize(self, model, calibration):
        try:
            import nncf
        except ImportError as exc:
            raise BackendUnavailable("OpenVINO INT8 needs nncf; install it with: "
                                     "pip install 'ctedge[openvino]'") from exc
        if calibration is None or len(calibration) == 0:
            raise ModelError("OpenVINO INT8 needs calibration slices; pass --calibration with "
                             "the slices the INT8 engine was calibrated on")
        self.calibration_count = len(calibration)
        items = [calibration[i:i + 1] for i in range(len(calibration))]
        return nncf.quantize(model, nncf.Dataset(items), subset_size=len(items))

    def infer(self, batch):
        result = self.request.infer({0: batch})
        return np.array(result[self.compiled.output(0)], dtype=np.float32)

    @property
    def description(self) -> dict:
        return {**super().description, "openvino": self.version, "device": "CPU",
                "calibration_slices": self.calibration_count}

    def close(self):
        self.request = self.compiled = self.model = None
