"""Faults against `ctedge serve` as a real process: kill -9 during a transfer and during a
classification, then restart; a spool on a full or read-only file system."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading

import pydicom
import pytest

from node_net import SAMPLE_STUDY, NodeProcess, c_store, free_port, wait_for, write_node_config
from synthetic_dicom import make_ct

pytest.importorskip("pynetdicom", reason="the node extra (pynetdicom) is not installed")


def _datasets(folder, study_uid, n, size=16):
    out = []
    for i in range(n):
        path = make_ct(folder / f"{i}.dcm", z=float(i), instance=i + 1, size=size,
                       series_uid=f"{study_uid}.1")
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{study_uid}.9.{i + 1}"
        out.append(ds)
    return out


def _results(state):
    return {p.stem: json.loads(p.read_text()) for p in (state / "results").glob("*.json")}


@pytest.fixture
def node_dir(tmp_path, tiny_model):
    return tmp_path / "node", tiny_model


def test_kill_9_during_a_transfer_then_restart_loses_nothing(node_dir, tmp_path):
    folder, model = node_dir
    port = free_port()
    config = write_node_config(folder, model, port, quiet_period_s=5.0)
    log = tmp_path / "node.log"
    study = _datasets(tmp_path / "in", "1.2.826.0.1.3680043.8.498.301", 40)
    node = NodeProcess(config, log).start()
    statuses: list = []

    def send():
        from pynetdicom import AE

        ae = AE(ae_title="SCANNER")
        ae.dimse_timeout = ae.network_timeout = 3  # the node dies mid-transfer
        ae.add_requested_context(study[0].SOPClassUID, study[0].file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", port, ae_title="CTEDGE")
        for ds in study:
            if not assoc.is_established or assoc.is_aborted:
                break
            statuses.append(getattr(assoc.send_c_store(ds), "Status", None))
        if assoc.is_established:
            assoc.release()

    sender = threading.Thread(target=send)
    try:
        sender.start()
        wait_for(lambda: len(statuses) >= 8, 120, "the transfer to get going", every_s=0.005)
        node.kill9()
        sender.join(30)
        acknowledged = [ds.SOPInstanceUID for ds, s in zip(study, statuses, strict=False)
                        if s == 0]
        assert 8 <= len(acknowledged) < 40
        spool_dirs = list((folder / "state" / "spool").glob("[0-9a-f]*"))
        kept = {p.stem for d in spool_dirs for p in d.glob("*.dcm")}
        assert set(acknowledged) <= kept  # every success answered is on disk
        node = NodeProcess(config, log).start()
        assert c_store(port, study) == [0] * 40  # the sender retries the whole study
        wait_for(lambda: _results(folder / "state"), 120, "the study's result")
        [result] = _results(folder / "state").values()
        assert result["node"]["instances"] == 40
        assert node.terminate() == 0  # SIGTERM: clean shutdown
    finally:
        node.stop()
    text = log.read_text()
    assert text.count("classified in") == 1 and "stopped" in text


def test_kill_9_during_classification_then_restart_classifies_once(node_dir, tmp_path):
    folder, model = node_dir
    port = free_port()
    config = write_node_config(folder, model, port, quiet_period_s=0.3)
    log = tmp_path / "node.log"
    study = [pydicom.dcmread(p) for p in sorted(SAMPLE_STUDY.iterdir())]
    node = NodeProcess(config, log).start()
    try:
        assert c_store(port, study) == [0] * len(study)
        wait_for(lambda: NodeProcess.status(folder / "state").get("classifying"), 120,
                 "classification to start", every_s=0.01)
        node.kill9()
        assert _results(folder / "state") == {}
        first_run = log.read_text()
        assert "classifying" in first_run and "classified in" not in first_run
        node = NodeProcess(config, log).start()
        wait_for(lambda: _results(folder / "state"), 120, "the study's result")
        [result] = _results(folder / "state").values()
        assert result["node"]["instances"] == len(study)
        assert result["node"]["status"] == "classified"
    finally:
        node.stop()
    assert log.read_text().count("classified in") == 1


def _in_namespace(pid, *command):
    return subprocess.run(["nsenter", "-t", str(pid), "-m", *command], capture_output=True,
                          text=True, timeout=30)


def test_a_full_then_read_only_spool_answers_failure_and_never_false_success(node_dir,
                                                                             tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        pytest.skip("needs root, unshare and nsenter for a private tmpfs spool")
    folder, model = node_dir
    port = free_port()
    config = write_node_config(folder, model, port, quiet_period_s=60.0)
    spool = folder / "state" / "spool"
    spool.mkdir(parents=True)
    # A 256 KiB tmpfs, mounted only inside the node's own mount namespace.
    wrap = ["unshare", "-m", "sh", "-c",
            f'mount -t tmpfs -o size=256k tmpfs "{spool}" && exec "$@"', "sh"]
    node = NodeProcess(config, tmp_path / "node.log", wrap=wrap).start()
    try:
        study = _datasets(tmp_path / "in", "1.2.826.0.1.3680043.8.498.401", 16, size=128)
        statuses = c_store(port, study)  # 16 x 32 KiB: more than the spool holds
        ok = statuses.count(0)
        assert 0 < ok < 16 and set(statuses) == {0, 0xA700}
        kept = _in_namespace(node.pid, "find", str(spool), "-name", "*.dcm")
        assert len(kept.stdout.split()) == ok
        for ds, status in zip(study, statuses, strict=True):
            assert (f"{ds.SOPInstanceUID}.dcm" in kept.stdout) == (status == 0)
        assert _in_namespace(node.pid, "mount", "-o", "remount,ro", str(spool)).returncode == 0
        small = _datasets(tmp_path / "in2", "1.2.826.0.1.3680043.8.498.402", 3)
        assert c_store(port, small) == [0xA700] * 3
        assert c_store(port, study[:1]) == [0]  # already kept before: a duplicate is fine
        leftovers = _in_namespace(node.pid, "find", str(spool / ".incoming"), "-type", "f")
        assert leftovers.stdout.strip() == ""
        assert node.terminate() == 0
    finally:
        node.stop()
