"""Serving ctedge on Triton Inference Server.

`repository`: export a ctedge model or engine as a Triton model repository (config.pbtxt
validated against Triton's ModelConfig protobuf). `python_model`: the Python-backend model.py
that serves a ctedge model through ctedge's own backends. `server`: start the `tritonserver`
binary bundled in the `nvidia-pytriton` wheel on loopback ports (tests, benchmarks).
The client side is `ctedge.backends.triton`.
"""
