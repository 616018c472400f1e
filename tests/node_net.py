"""Helpers for the node tests: an isolated network namespace, a real Orthanc, DICOM senders.

Everything binds loopback only: Orthanc 1.10 cannot choose its bind address, so it runs inside
a network namespace made here, which has nothing but its own loopback.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CLONE_NEWNET = 0x40000000


REPO = Path(__file__).resolve().parents[1]
SAMPLE_STUDY = REPO / "samples" / "P001-every8th"


def dcmtk_missing() -> str | None:
    if shutil.which("storescu") is None or shutil.which("echoscu") is None:
        return "dcmtk (storescu, echoscu) is not installed; apt-get install dcmtk"
    return None


def netns_missing_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    return None


class NamespaceUnavailable(Exception):
    """This machine does not let the tests make a network namespace (no CAP_SYS_ADMIN)."""


@contextlib.contextmanager
def network_namespace(name: str):
    """Create a namespace with only loopback, move this thread into it, and undo both."""
    libc = ctypes.CDLL(None, use_errno=True)
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        raise NamespaceUnavailable(made.stderr.strip())
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")
        finally:
            os.close(target)
        try:
            yield name
        finally:
            libc.setns(original, CLONE_NEWNET)
    finally:
        os.close(original)
        subprocess.run(["ip", "netns", "delete", name], check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str, every_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Orthanc:
    """A real Orthanc PACS as a plain process with a temporary JSON config."""

    def __init__(self, folder: Path, aet: str = "ORTHANC", peers: dict | None = None):
        self.folder = Path(folder)
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.peers = peers or {}
        self.process = None

    def start(self) -> Orthanc:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "ctedge-test", "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"), "DicomAet": self.aet,
            "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False, "DicomModalities": self.peers,
            "Plugins": [], "StableAge": 1,
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config))
        log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(["Orthanc", str(path)], stdout=log, stderr=log)
        wait_for(self._up, 20, "Orthanc's REST API")
        return self

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()}")
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def c_store(port: int, datasets, calling: str = "SCANNER", called: str = "CTEDGE",
            host: str = "127.0.0.1") -> list[int | None]:
    """Send pydicom datasets in one association; the status of each (None: no answer)."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120  # a loaded shared machine
    for sop_class, syntax in {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                              for ds in datasets}:
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        raise AssertionError("association was not established")
    statuses = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            statuses.append(getattr(status, "Status", None))
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def echo(port: int, calling: str = "SCANNER", called: str = "CTEDGE") -> bool:
    """C-ECHO with dcmtk's echoscu; True when it succeeded."""
    run = subprocess.run(["echoscu", "-to", "5", "-aet", calling, "-aec", called, "127.0.0.1",
                          str(port)], capture_output=True, timeout=30)
    return run.returncode == 0


def storescu(port: int, folder: Path, calling: str = "SCANNER", called: str = "CTEDGE"):
    """Send every file under `folder` with dcmtk's storescu (JPEG Lossless proposed)."""
    return subprocess.run(["storescu", "-xs", "+sd", "-aet", calling, "-aec", called,
                           "127.0.0.1", str(port), str(folder)],
                          capture_output=True, text=True, timeout=120)


class NodeProcess:
    """`ctedge serve` as its own process (in its own session, so kill -9 takes its decode
    workers too). `wrap`: a command prefix, e.g. to run it in a mount namespace."""

    def __init__(self, config: Path, log: Path, wrap: list[str] | None = None):
        self.config, self.log, self.wrap = Path(config), Path(log), wrap or []
        self.process = None

    def start(self, timeout_s: float = 120) -> NodeProcess:
        import sys

        state = Path(self.config).parent / "state"
        command = [*self.wrap, sys.executable, "-m", "ctedge.cli", "serve", "--config",
                   str(self.config)]
        out = open(self.log, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
        out.close()

        def running():
            if self.process.poll() is not None:
                raise AssertionError(f"node exited {self.process.returncode}: "
                                     f"{self.log.read_text()[-2000:]}")
            status = self.status(state)
            return status.get("pid") == self.process.pid and status.get("state") == "running"

        wait_for(running, timeout_s, "the node to start")
        return self

    @staticmethod
    def status(state: Path) -> dict:
        try:
            return json.loads((Path(state) / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill9(self) -> None:
        """SIGKILL the node and every process of its session (decode workers)."""
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout_s: float = 30) -> int:
        import signal

        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError):  # leftovers of its session, if any
            os.killpg(self.process.pid, signal.SIGKILL)
        return code

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill9()


def write_node_config(folder: Path, model: Path, port: int, **extra) -> Path:
    """A node.toml in `folder` (state in folder/state)."""
    lines = ['state_dir = "state"', f"port = {port}", 'allowed_aets = ["SCANNER"]',
             f'model = "{model}"', "workers = 1"]
    destination = extra.pop("destination", None)
    for key, value in extra.items():
        lines.append(f"{key} = {json.dumps(value)}")
    if destination:
        lines += ["[destination]", f'ae_title = "{destination[0]}"', 'host = "127.0.0.1"',
                  f"port = {destination[1]}"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
