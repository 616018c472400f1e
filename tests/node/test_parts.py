"""The node's plain objects, driven without a network: spool, completion, config, outbox."""

from __future__ import annotations

import pytest

from ctedge.errors import CtedgeError
from ctedge.node.completion import CompletionTracker
from ctedge.node.config import NodeConfig, load_config
from ctedge.node.errors import NodeError, SpoolFull
from ctedge.node.outbox import Backoff
from ctedge.node.spool import INCOMING, Spool, instance_name, study_key


def test_spool_keeps_each_instance_once_under_a_hashed_study_folder(tmp_path):
    spool = Spool(tmp_path / "spool")
    assert spool.open() == []
    key, new = spool.store(b"first", "1.2.3", "1.2.3.4")
    assert new and key == study_key("1.2.3") and len(key) == 16 and "1.2.3" not in key
    assert spool.store(b"again", "1.2.3", "1.2.3.4") == (key, False)  # duplicate: kept once
    assert (tmp_path / "spool" / key / "1.2.3.4.dcm").read_bytes() == b"first"
    spool.store(b"second", "1.2.3", "1.2.3.5")
    assert spool.instances(key) == 2
    assert list((tmp_path / "spool" / INCOMING).iterdir()) == []


def test_spool_reopen_finds_every_instance_and_drops_interrupted_writes(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.open()
    key, _ = spool.store(b"a", "9.8", "9.8.1")
    spool.store(b"b", "9.8", "9.8.2")
    (tmp_path / "spool" / INCOMING / "tmpabc.part").write_bytes(b"half")  # crash mid-write
    again = Spool(tmp_path / "spool")
    [study] = again.open()
    assert (study.key, study.instances) == (key, 2)
    assert again.instances(key) == 2
    assert list((tmp_path / "spool" / INCOMING).iterdir()) == []


def test_spool_refuses_past_the_study_size_limit_and_when_it_cannot_write(tmp_path):
    spool = Spool(tmp_path / "spool", max_study_instances=2)
    spool.open()
    spool.store(b"a", "1.5", "1.5.1")
    spool.store(b"b", "1.5", "1.5.2")
    spool.store(b"b", "1.5", "1.5.2")  # a duplicate is still fine
    with pytest.raises(SpoolFull, match="max_study_instances"):
        spool.store(b"c", "1.5", "1.5.3")
    assert issubclass(SpoolFull, CtedgeError)
    (tmp_path / "spool" / study_key("7.7")).write_text("a file where a folder must go")
    with pytest.raises(SpoolFull, match="cannot keep"):
        spool.store(b"d", "7.7", "7.7.1")


def test_instance_names_never_leave_the_study_folder():
    assert instance_name("1.2.840.1") == "1.2.840.1.dcm"
    for bad in ("../../etc/passwd", "", "1.2/3", "x" * 80):
        name = instance_name(bad)
        assert "/" not in name and name.startswith("x") and name.endswith(".dcm")


def test_a_study_is_due_after_its_quiet_period_and_a_late_arrival_resets_it():
    now = [100.0]
    tracker = CompletionTracker(5.0, clock=lambda: now[0])
    tracker.arrived("a")
    now[0] = 103.0
    tracker.arrived("b")
    assert tracker.take_due() == [] and tracker.next_due_in() == pytest.approx(2.0)
    now[0] = 104.0
    tracker.arrived("a")  # another instance of a: its quiet period starts again
    now[0] = 108.5
    assert tracker.take_due() == ["b"]
    assert tracker.receiving() == 1
    now[0] = 109.0
    assert tracker.take_due() == ["a"] and tracker.take_due() == []
    assert tracker.next_due_in() is None


def test_a_study_is_not_due_while_an_association_delivering_it_is_open():
    now = [0.0]
    tracker = CompletionTracker(1.0, clock=lambda: now[0])
    tracker.arrived("a", holder="assoc1")
    tracker.arrived("a", holder="assoc2")
    now[0] = 10.0  # a slow sender: long past the quiet period, still connected
    assert tracker.take_due() == [] and tracker.next_due_in() is None
    tracker.release("assoc1")
    now[0] = 20.0
    assert tracker.take_due() == []
    tracker.release("assoc2")  # the quiet period starts at the release
    now[0] = 20.9
    assert tracker.take_due() == []
    now[0] = 21.0
    assert tracker.take_due() == ["a"]


def test_backoff_doubles_up_to_its_cap_and_resets_on_success():
    backoff = Backoff(1.0, 5.0)
    assert [backoff.failed(0.0) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert not backoff.ready(4.9) and backoff.ready(5.0)
    backoff.succeeded()
    assert backoff.ready(0.0) and backoff.failed(0.0) == 1.0


def test_config_file_paths_are_relative_to_it_and_bad_keys_are_named(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('state_dir = "state"\nport = 4100\nallowed_aets = ["CT1"]\n'
                    'model = "m.onnx"\nquiet_period_s = 3\n'
                    '[destination]\nae_title = "PACS"\nhost = "127.0.0.1"\nport = 4242\n')
    config = load_config(path, quiet_period_s=1.5)
    assert config.state_dir == tmp_path / "state" and config.spool_root == tmp_path / "state/spool"
    assert config.classify.model == tmp_path / "m.onnx"
    assert config.quiet_period_s == 1.5 and config.allowed_aets == ("CT1",)
    assert config.destination.port == 4242
    path.write_text('state_dir = "s"\nquiet_perod_s = 3\n')
    with pytest.raises(NodeError, match="unknown key.*quiet_perod_s"):
        load_config(path)
    path.write_text('state_dir = "s"\nallowed_aets = ["A_TITLE_FAR_TOO_LONG_FOR_DICOM"]\n')
    with pytest.raises(NodeError, match="not a DICOM AE title"):
        load_config(path)
    with pytest.raises(NodeError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(NodeError, match="tls_cert and tls_key"):
        NodeConfig(state_dir=tmp_path, tls_cert=tmp_path / "c.pem")


def test_serve_cli_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    from ctedge.cli import main

    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.toml" in err[0] and "Traceback" not in err[0]
    config = tmp_path / "node.toml"
    config.write_text('state_dir = "state"\n')
    assert main(["serve", "--config", str(config), "--status"]) == 2
    assert "has `ctedge serve` run" in capsys.readouterr().err
    config.write_text('state_dir = "state"\nport = 99999\n')
    assert main(["serve", "--config", str(config)]) == 2
    assert "port 99999" in capsys.readouterr().err


def test_outbox_sends_only_what_is_pending_and_records_a_study_sent_once(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset

    from ctedge.node.outbox import Outbox, send_pending

    outbox = Outbox(tmp_path / "outbox")
    outbox.open()
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.3.4"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    outbox.put("k1", [("sr", ds)])
    assert outbox.pending() == ["k1"] and [p.name for p in outbox.files("k1")] == ["sr.dcm"]
    calls = []

    class FakeSender:  # records what would go over the wire
        destination = type("D", (), {"ae_title": "PACS"})()

        def send(self, paths, on_stored):
            calls.append([p.name for p in paths])
            for p in paths:
                on_stored(p, "1.2.3.4")

    assert send_pending(outbox, FakeSender(), "k1") == ["1.2.3.4"]
    assert outbox.is_sent("k1") and outbox.pending() == [] and calls == [["sr.dcm"]]
    (outbox.pending_root / "k2").mkdir()  # crash after the last object was accepted
    assert send_pending(outbox, FakeSender(), "k2") == []
    assert outbox.is_sent("k2") and calls == [["sr.dcm"]]
