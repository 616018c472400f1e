"""Triton Python-backend model that serves a ctedge model through ctedge's own backends.

`ctedge export-triton --python-backend` copies this file to NAME/1/model.py beside the ctedge
model. It runs inside Triton's Python backend stub, not in ctedge: the server's Python must be
able to import ctedge, numpy and onnxruntime. Directories listed in $CTEDGE_SITE_PACKAGES
(os.pathsep-separated) are added as site directories first, so a server can point at a
virtual environment that has ctedge installed (editable installs included).

Each `execute` call gets every request the dynamic batcher gathered; they run as one batch.
"""

import json
import os
import site
from pathlib import Path

for _dir in filter(None, os.environ.get("CTEDGE_SITE_PACKAGES", "").split(os.pathsep)):
    site.addsitedir(_dir)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402  (only inside the backend stub)


class TritonPythonModel:
    def initialize(self, args):
        from ctedge.artifact import ModelInfo
        from ctedge.backends import open_backend

        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / str(args["model_version"])
        model = folder / params["ctedge_model_file"]
        threads = int(params.get("ctedge_threads") or 0)
        self.backend = open_backend(model, params.get("ctedge_backend") or "auto",
                                    threads=threads)
        served = ModelInfo.from_json(params["ctedge"], f"{model} (config.pbtxt)")
        if served.classes != self.backend.info.classes or \
                served.preprocessing != self.backend.info.preprocessing:
            raise pb_utils.TritonModelException(
                f"{model}: its ctedge metadata differs from config.pbtxt's; re-run "
                "`ctedge export-triton`")
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]

    def execute(self, requests):
        batches = [_to_numpy(pb_utils.get_input_tensor_by_name(r, self.input_name))
                   for r in requests]
        try:
            probs = self.backend.infer(np.ascontiguousarray(np.concatenate(batches),
                                                            dtype=np.float32))
        except Exception as exc:  # answer every request with the error, keep serving
            error = pb_utils.TritonError(f"ctedge: {type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for batch in batches:
            part = probs[start:start + len(batch)]
            start += len(batch)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[_from_numpy(self.output_name, part)]))
        return responses

    def finalize(self):
        self.backend.close()


# Tensors cross the stub through DLPack, not as_numpy()/Tensor(name, array): the stub is
# compiled against numpy 1's C API, and with numpy 2 those read the array layout wrongly
# (measured: outputs arrive with zero bytes). The stub then logs a harmless
# "PyCapsule_GetPointer called with incorrect name" per output (its capsule destructor
# expects the pre-numpy-2 capsule name); the values are exact. The output is an own copy, so
# the capsule never pins the batch's whole probability array.
def _to_numpy(tensor) -> np.ndarray:
    return np.from_dlpack(tensor)


def _from_numpy(name: str, array: np.ndarray):
    own = np.array(array, dtype=np.float32, order="C")
    return pb_utils.Tensor.from_dlpack(name, own.__dlpack__())
