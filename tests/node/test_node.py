"""The node in this process on loopback: allow-lists, durable receive, completion, results,
malformed input and load. Senders are pynetdicom and dcmtk's echoscu."""

from __future__ import annotations

import json
import logging
import time

import pydicom
import pytest

from node_net import c_store, dcmtk_missing, echo, wait_for
from synthetic_dicom import ACCESSION, BIRTH_DATE, PATIENT_ID, PATIENT_NAME, make_ct

pytest.importorskip("pynetdicom", reason="the node extra (pynetdicom) is not installed")
IDENTIFIERS = (PATIENT_ID, PATIENT_NAME, "Testperson", "Hildegard", ACCESSION, BIRTH_DATE)


def _study(folder, study_uid, n, *, first=0, size=16, **kwargs):
    """n synthetic CT slices of one study, as pydicom datasets."""
    paths = [make_ct(folder / f"{study_uid}-{i}.dcm", z=float(i), instance=i + 1, size=size,
                     series_uid=f"{study_uid}.1", **kwargs) for i in range(first, first + n)]
    datasets = []
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        datasets.append(ds)
    return datasets


def _results(node):
    return {p.stem: json.loads(p.read_text())
            for p in (node.config.state_dir / "results").glob("*.json")}


def test_echo_answers_allowed_callers_and_the_allow_lists_refuse_others(node_factory):
    if dcmtk_missing():
        pytest.skip(dcmtk_missing())
    node = node_factory()
    assert echo(node.port)
    assert not echo(node.port, calling="INTRUDER")
    walled = node_factory(allowed_hosts=("10.255.255.1",), state_dir=node.config.state_dir
                          / "other")
    assert not echo(walled.port)
    counters = node.status.snapshot()["counters"]
    assert counters["associations_refused"] >= 1


def test_a_received_study_is_classified_once_and_nothing_carries_identifiers(
        node_factory, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ctedge.node")
    node = node_factory()
    study = _study(tmp_path / "in", "1.2.826.0.1.3680043.8.498.77", 6)
    assert c_store(node.port, study) == [0] * 6
    assert c_store(node.port, study[:3]) == [0] * 3  # a re-send: idempotent
    results = wait_for(lambda: _results(node), 120, "the study's result")
    [(key, result)] = results.items()
    assert result["node"]["instances"] == 6 and result["node"]["status"] == "classified"
    assert result["decision"]["label"] == "indeterminate"  # 16-px slices have no lung field
    assert len(list(node.spool.study_dir(key).glob("*.dcm"))) == 6
    time.sleep(0.6)  # more than the quiet period: no second classification
    assert caplog.text.count(f"study {key} classified") == 1
    status = json.loads((node.config.state_dir / "status.json").read_text())
    assert status["counters"]["instances_duplicate"] == 3
    everything = [caplog.text, json.dumps(result), json.dumps(status)]
    everything += [str(p) for p in node.config.state_dir.rglob("*")]
    for text in everything:
        for identifier in IDENTIFIERS:
            assert identifier not in text


def test_malformed_instances_are_refused_or_recorded_and_never_stop_the_node(
        node_factory, tmp_path):
    node = node_factory()
    no_uid = _study(tmp_path / "a", "1.2.826.0.1.3680043.8.498.81", 1)[0]
    del no_uid.StudyInstanceUID
    broken = _study(tmp_path / "b", "1.2.826.0.1.3680043.8.498.82", 3)
    for ds in broken:
        ds.PixelData = ds.PixelData[:10]  # header says 16x16, pixel data says otherwise
    assert c_store(node.port, [no_uid]) == [0xC210]
    assert c_store(node.port, broken) == [0] * 3  # kept: the sender is not asked to retry
    wait_for(lambda: _results(node), 120, "a result for the broken study")
    [result] = _results(node).values()
    assert result["node"]["status"] == "not classified" and result["decision"] is None
    good = _study(tmp_path / "c", "1.2.826.0.1.3680043.8.498.83", 2)
    assert c_store(node.port, good) == [0, 0]
    wait_for(lambda: len(_results(node)) == 2, 120, "the good study's result")
    assert sorted(r["node"]["status"] for r in _results(node).values()) == [
        "classified", "not classified"]


def test_a_study_past_the_size_limit_gets_out_of_resources(node_factory, tmp_path):
    node = node_factory(max_study_instances=3)
    study = _study(tmp_path / "in", "1.2.826.0.1.3680043.8.498.90", 5)
    assert c_store(node.port, study) == [0, 0, 0, 0xA700, 0xA700]
    assert node.spool.instances(next(iter(node.spool._counts))) == 3


def test_fifty_concurrent_associations_lose_nothing_and_echo_keeps_answering(
        node_factory, tmp_path, caplog):
    """50 storescu processes at once (separate senders, as in a hospital), 2 studies of 50
    instances spread over 25 associations each, while C-ECHO is sent throughout."""
    if dcmtk_missing():
        pytest.skip(dcmtk_missing())
    import subprocess

    caplog.set_level(logging.INFO, logger="ctedge.node")
    node = node_factory(max_associations=64, quiet_period_s=3.0)
    studies, per_assoc, assocs_per_study = 2, 2, 25
    folders = []
    for s in range(studies):
        uid = f"1.2.826.0.1.3680043.8.498.{500 + s}"
        datasets = _study(tmp_path / "made", uid, per_assoc * assocs_per_study)
        for i, ds in enumerate(datasets):
            folder = tmp_path / "jobs" / f"{s}-{i // per_assoc}"
            folder.mkdir(parents=True, exist_ok=True)
            ds.save_as(folder / f"{i}.dcm", enforce_file_format=True)
            if i % per_assoc == 0:
                folders.append(folder)
    assert len(folders) == 50
    senders = [subprocess.Popen(["storescu", "-to", "120", "-ta", "120", "-td", "120", "+sd",
                                 "-aet", "SCANNER", "-aec", "CTEDGE", "127.0.0.1",
                                 str(node.port), str(f)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE) for f in folders]
    echoes = []
    while any(p.poll() is None for p in senders):
        echoes.append(echo(node.port))
        time.sleep(0.2)
    codes = [p.wait() for p in senders]
    assert codes == [0] * 50, [p.stderr.read()[-300:] for p in senders if p.returncode]
    for p in senders:
        p.stderr.close()
    assert echoes and all(echoes)
    wait_for(lambda: len(_results(node)) == studies, 120, "every study's result")
    per_study = per_assoc * assocs_per_study
    assert node.status.snapshot()["counters"]["instances_stored"] == studies * per_study
    for key, result in _results(node).items():
        assert result["node"]["instances"] == per_study
        assert len(list(node.spool.study_dir(key).glob("*.dcm"))) == per_study
        assert caplog.text.count(f"study {key} classified") == 1


def test_tls_node_answers_a_tls_peer_and_refuses_a_plain_one(node_factory, tmp_path):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    node = node_factory(tls_cert=cert, tls_key=key)
    from pynetdicom import AE

    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.network_timeout = 5
    ae.add_requested_context("1.2.840.10008.1.1")
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    assoc = ae.associate("127.0.0.1", node.port, ae_title="CTEDGE",
                         tls_args=(client, "127.0.0.1"))
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()
    plain = ae.associate("127.0.0.1", node.port, ae_title="CTEDGE")
    assert not plain.is_established
