"""The node against real DICOM software: dcmtk storescu/echoscu send, Orthanc receives the SR.

Runs inside a network namespace made by the test (Orthanc 1.10 listens on every interface).
"""

from __future__ import annotations

import os
import shutil

import pydicom
import pytest

from node_net import (
    SAMPLE_STUDY,
    NamespaceUnavailable,
    NodeProcess,
    Orthanc,
    dcmtk_missing,
    echo,
    free_port,
    netns_missing_reason,
    network_namespace,
    storescu,
    wait_for,
    write_node_config,
)


@pytest.fixture(scope="module")
def netns():
    reason = netns_missing_reason() or dcmtk_missing()
    if reason or shutil.which("Orthanc") is None:
        pytest.skip(reason or "Orthanc is not installed; apt-get install orthanc")
    try:
        namespace = network_namespace(f"ctedge-node-{os.getpid()}")
        name = namespace.__enter__()
    except NamespaceUnavailable as exc:
        pytest.skip(f"cannot make a network namespace here ({exc}); Orthanc would listen on "
                    "every interface")
    try:
        yield name
    finally:
        namespace.__exit__(None, None, None)


def _sr_instances(orthanc):
    return [i for i in orthanc.get("/instances")
            if orthanc.get(f"/instances/{i}/simplified-tags").get("Modality") == "SR"]


def test_study_from_storescu_comes_back_to_orthanc_as_an_sr_and_a_summary(
        netns, node_factory, tmp_path, caplog):
    from ctedge.node.config import Destination

    source = pydicom.dcmread(next(SAMPLE_STUDY.iterdir()), stop_before_pixels=True)
    with Orthanc(tmp_path / "orthanc") as orthanc:
        node = node_factory(destination=Destination("ORTHANC", "127.0.0.1", orthanc.dicom_port))
        assert echo(node.port)
        assert not echo(node.port, calling="INTRUDER")
        sent = storescu(node.port, SAMPLE_STUDY)
        assert sent.returncode == 0, sent.stderr
        wait_for(lambda: len(orthanc.get("/instances")) == 2, 120, "the SR and summary")
        [sr_id] = _sr_instances(orthanc)
        tags = orthanc.get(f"/instances/{sr_id}/simplified-tags")
        [sc_id] = [i for i in orthanc.get("/instances") if i != sr_id]
        sc = orthanc.get(f"/instances/{sc_id}/simplified-tags")
    # the summary (report) as a Secondary Capture, filed beside the study
    assert sc["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.7"
    assert sc["StudyInstanceUID"] == source.StudyInstanceUID
    assert sc["BurnedInAnnotation"] == "NO"
    assert tags["StudyInstanceUID"] == source.StudyInstanceUID
    assert tags["PatientID"] == source.PatientID  # filed in the source study's patient
    text = str(tags["ContentSequence"])
    assert "Decision support only" in text
    assert "sha256=" in text
    key = next((node.config.state_dir / "results").glob("*.json")).stem
    assert "Strongest slice" in text or "indeterminate" in text
    logged = caplog.text + (node.config.state_dir / "status.json").read_text() \
        + (node.config.state_dir / "results" / f"{key}.json").read_text()
    for identifier in (str(source.get("PatientID", "")), str(source.get("PatientName", ""))):
        if identifier:
            assert identifier not in logged


def test_results_wait_while_the_destination_is_down_survive_kill_9_and_arrive_once(
        netns, tmp_path, tiny_model):
    orthanc = Orthanc(tmp_path / "orthanc")  # ports chosen, not started yet: PACS is down
    port = free_port()
    config = write_node_config(tmp_path / "node", tiny_model, port, quiet_period_s=0.3,
                               retry_initial_s=0.2, retry_max_s=0.5,
                               destination=("ORTHANC", orthanc.dicom_port))
    state, log = tmp_path / "node" / "state", tmp_path / "node.log"
    node = NodeProcess(config, log).start()
    try:
        assert storescu(port, SAMPLE_STUDY).returncode == 0
        wait_for(lambda: NodeProcess.status(state).get("counters", {}).get("send_failures", 0)
                 >= 2, 120, "failed sends to the missing PACS")
        assert len(list((state / "results").glob("*.json"))) == 1
        assert len(list((state / "outbox" / "pending").glob("*/*.dcm"))) == 2  # SR, summary
        node.kill9()  # a result in the outbox, never sent
        with orthanc:
            node = NodeProcess(config, log).start()
            wait_for(lambda: list((state / "outbox" / "sent").glob("*.json")), 120,
                     "the result to be sent")
            assert node.terminate() == 0
            assert len(_sr_instances(orthanc)) == 1
            assert len(orthanc.get("/instances")) == 2
    finally:
        node.stop()
    text = log.read_text()
    assert text.count("classified in") == 1 and text.count("sent to ORTHANC") == 1
    assert list((state / "outbox" / "pending").glob("*/*.dcm")) == []
