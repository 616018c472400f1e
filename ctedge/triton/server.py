"""Run the `tritonserver` bundled in the `nvidia-pytriton` wheel on loopback ports.

For tests, benchmarks and a CPU box: the wheel carries the real server binary and its Python
backend (no ONNX Runtime or TensorRT backend), so models are served with `--python-backend`.
PyTriton itself pins numpy<2, so the wheel is unpacked outside ctedge's environment, e.g.

    uv pip install --target .triton --no-deps nvidia-pytriton==0.7.0

and found through $CTEDGE_TRITON_HOME (the folder holding `pytriton/tritonserver`, default
`.triton` in the repository). The server's Python-backend stub embeds this interpreter's
libpython (LD_LIBRARY_PATH=LIBDIR: the stub's own Debian libpython breaks on other 3.11
builds) and gets this environment's site-packages through PYTHONPATH / CTEDGE_SITE_PACKAGES,
so model.py imports ctedge, numpy 2 and onnxruntime from here.

The server is stopped by its own PID (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from ..errors import BackendUnavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def triton_home() -> Path:
    """The unpacked nvidia-pytriton folder's `pytriton/tritonserver`."""
    base = Path(os.environ.get("CTEDGE_TRITON_HOME", REPO_ROOT / ".triton"))
    home = base / "pytriton" / "tritonserver"
    if not (home / "bin" / "tritonserver").is_file():
        raise BackendUnavailable(
            f"no tritonserver under {base}; unpack it with `uv pip install --target {base} "
            "--no-deps nvidia-pytriton==0.7.0` or set CTEDGE_TRITON_HOME")
    return home


def check_python() -> None:
    """The Python-backend stub embeds this interpreter's libpython, which must be shared."""
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "")
    name = sysconfig.get_config_var("INSTSONAME") or ""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not (libdir / name).is_file():
        raise BackendUnavailable(
            f"this Python ({sys.executable}) has no shared libpython, which Triton's "
            "Python-backend stub needs; use a Python built with --enable-shared")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class LocalTritonServer:
    """A tritonserver process serving `repository` on 127.0.0.1 (context manager).

    Ready in about 2 s on an idle 2-core box; 44 s was measured with the cores saturated by
    other jobs, hence the generous start timeout.

    `http_url` / `grpc_url` are HOST:PORT. `log` is the server's combined output file.
    """

    def __init__(self, repository: str | Path, home: Path | None = None,
                 start_timeout_s: float = 180.0, log_verbose: int = 0):
        self.repository = Path(repository)
        self.home = home or triton_home()
        self.start_timeout_s = start_timeout_s
        self.log_verbose = log_verbose
        self.process: subprocess.Popen | None = None
        self.http_port = self.grpc_port = 0
        self._workdir: Path | None = None

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def log(self) -> Path:
        return self._workdir / "tritonserver.log"

    def _backend_dir(self) -> Path:
        """backends/python with the stub built for this interpreter's Python version."""
        check_python()
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.home / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise BackendUnavailable(f"{self.home}: no Python-backend stub for Python {version}")
        python = self._workdir / "backends" / "python"
        python.mkdir(parents=True)
        # links, not copies: the binaries find their libraries through $ORIGIN-relative paths
        for item in [*(self.home / "backends" / "python").iterdir(), stub]:
            (python / item.name).symlink_to(item)
        return python.parent

    def _environment(self) -> dict:
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        bundled = self.home.parents[1] / "nvidia_pytriton.libs"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, str(bundled),
                                                               env.get("LD_LIBRARY_PATH")]))
        site_packages = sysconfig.get_paths()["purelib"]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [site_packages,
                                                          env.get("PYTHONPATH")]))
        env["CTEDGE_SITE_PACKAGES"] = site_packages
        # one model instance per core is the server's parallelism; no BLAS/ORT oversubscription
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self) -> LocalTritonServer:
        self._workdir = Path(tempfile.mkdtemp(prefix="ctedge-triton-"))
        backends = self._backend_dir()
        self.http_port, self.grpc_port = free_port(), free_port()
        command = [
            str(self.home / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={self.home / 'caches'}",
            f"--http-address={HOST}", f"--http-port={self.http_port}",
            f"--grpc-address={HOST}", f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false", "--exit-on-error=true", "--strict-readiness=true",
            f"--log-verbose={self.log_verbose}", "--exit-timeout-secs=5",
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=self._environment(), cwd=self._workdir,
                                            start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        import urllib.request

        deadline = time.monotonic() + self.start_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BackendUnavailable(f"tritonserver exited with {self.process.returncode} "
                                         f"while starting: {self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            failed = self._failed_models()
            if failed:
                raise BackendUnavailable(f"tritonserver could not load {failed}: {self.tail()}")
            time.sleep(0.2)
        raise BackendUnavailable(f"tritonserver not ready after {self.start_timeout_s:.0f} s: "
                                 f"{self.tail()}")

    def _failed_models(self) -> str:
        """'name (reason)' of models the server marked UNAVAILABLE, '' while none is."""
        import json
        import urllib.request

        request = urllib.request.Request(f"http://{self.http_url}/v2/repository/index",
                                         data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=1) as answer:
                models = json.loads(answer.read())
        except (OSError, ValueError):
            return ""
        return ", ".join(f"{m.get('name')} ({m.get('reason', '')})" for m in models
                         if m.get("state") == "UNAVAILABLE")

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM to the server's own PID, SIGKILL after 10 s; removes the work folder."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process = process
                self.kill()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def kill(self) -> None:
        """SIGKILL the server now (a server that goes away mid-study), and its Python-backend
        stubs with it: they ignore SIGTERM and outlive a killed server otherwise. They are in
        the server's own process group (started with start_new_session); their shared-memory
        regions are removed afterwards."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        regions = _stub_regions(process.pid)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        for name in regions:
            with contextlib.suppress(OSError):
                (Path("/dev/shm") / name).unlink()

    def __enter__(self) -> LocalTritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _stub_regions(server_pid: int) -> list[str]:
    """Shared-memory region names of the Python-backend stubs that `server_pid` started."""
    regions = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == server_pid:
            regions += [a.decode() for a in args
                        if a.startswith(b"triton_python_backend_shm_region_")]
    return regions
