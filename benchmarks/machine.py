"""What machine a benchmark ran on, and how much memory a process peaked at.

Everything here is read, never assumed: /proc/cpuinfo for the CPU model and flags,
`nvidia-smi` (when present) for the GPU and driver, installed package versions from
`importlib.metadata` (so optional libraries are not imported just to be named).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import ctedge

# Flags that decide which kernels the runtimes pick (VNNI/AMX for INT8, BF16, FP16).
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                     "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile",
                     "amx_int8", "amx_bf16")
LIBRARIES = ("numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "nncf", "torch",
             "torchvision", "tensorrt", "pydicom", "pylibjpeg", "pylibjpeg-libjpeg",
             "matplotlib", "click")


def describe_machine() -> dict:
    """CPU model and flags, cores, memory, GPUs and driver, OS, Python, library versions."""
    cpu = _cpuinfo()
    return {
        "hostname_hash": _short_hash(platform.node()),  # distinguishes machines, names none
        "cpu": {
            "model": cpu.get("model name") or platform.processor() or "unknown",
            "flags": [f for f in INTERESTING_FLAGS if f in cpu.get("flags", "").split()],
            "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "physical_cores": _physical_cores(),
        },
        "memory_bytes": _total_memory(),
        "gpus": gpus(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "ctedge": ctedge.__version__,
        "libraries": library_versions(),
    }


def machine_name(machine: dict) -> str:
    """A short file-system-safe name, e.g. `2c-intel-xeon-processor` or `h100-80gb-hbm3`."""
    if machine.get("gpus"):
        base = machine["gpus"][0]["name"]
    else:
        base = f"{machine['cpu']['usable_cores']}c-{machine['cpu']['model']}"
    base = re.sub(r"\((r|tm|c)\)", "", base.lower())
    return re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:60] or "machine"


def library_versions() -> dict[str, str | None]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def gpus() -> list[dict]:
    """One entry per NVIDIA GPU from nvidia-smi; [] when there is none (or no nvidia-smi)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    query = "name,driver_version,memory.total,compute_cap"
    try:
        text = subprocess.run([smi, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return [{"name": "unknown (nvidia-smi failed)"}]
    out = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4:
            out.append({"name": parts[0], "driver": parts[1], "memory_mib": _int(parts[2]),
                        "compute_capability": parts[3]})
    return out


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key and key not in info:
                info[key] = value.strip()
    return info


def _physical_cores() -> int | None:
    with contextlib.suppress(OSError):
        pairs = set()
        phys = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                phys = value.strip()
            elif key == "core id":
                core = value.strip()
            elif not key and core is not None:
                pairs.add((phys, core))
                phys = core = None
        if core is not None:
            pairs.add((phys, core))
        return len(pairs) or None
    return None


def _total_memory() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def _int(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


# --- peak resident memory --------------------------------------------------------------------

def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS high-water mark (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """This process's peak resident set size since start or the last `reset_peak_rss`."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    # ru_maxrss is KiB on Linux and never resets; a fallback for other systems.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
