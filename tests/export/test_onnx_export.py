"""ctedge export: checkpoint format, metadata, PyTorch vs ONNX Runtime, CLI errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ctedge.artifact import read_info
from ctedge.cli import main
from ctedge.errors import ModelError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="needs the train extra (torch)")


@pytest.fixture(scope="module")
def ucsd_inputs(shared_data):
    from ctedge.export.slices import discover, load_inputs, stratified
    from ctedge.preprocess import Preprocessing

    refs = stratified(discover(shared_data / "ucsd-covid-ct" / "Images"), 6)
    return load_inputs(refs, Preprocessing())


def test_checkpoint_roundtrip_keeps_names_and_preprocessing(tmp_path):
    from ctedge.export.model import build_resnet50, load_checkpoint, save_checkpoint
    from ctedge.export.onnx_export import model_info_for

    net = build_resnet50(3)
    path = save_checkpoint(tmp_path / "ck.pt", net, ["normal", "covid19", "cap"], "normal",
                           preprocessing={"size": 128}, thresholds={"probability": 0.7},
                           training={"epochs": 1})
    ck = load_checkpoint(path)
    assert ck.n_classes == 3 and ck.classes == ("normal", "covid19", "cap")
    info = model_info_for(ck)
    assert info.preprocessing.size == 128
    assert info.thresholds.probability == 0.7
    assert info.training == {"epochs": 1}
    with pytest.raises(ModelError, match="differ from the checkpoint"):
        model_info_for(ck, classes=("a", "b", "c"))
    with pytest.raises(ModelError, match="--size 224 differs"):
        model_info_for(ck, size=224)


def test_plain_state_dict_needs_class_names(tmp_path):
    import torch

    from ctedge.export.model import build_resnet50, load_checkpoint
    from ctedge.export.onnx_export import model_info_for

    torch.save(build_resnet50(2).state_dict(), tmp_path / "plain.pt")
    ck = load_checkpoint(tmp_path / "plain.pt")
    assert ck.n_classes == 2 and ck.classes is None
    with pytest.raises(ModelError, match="no class names"):
        model_info_for(ck)
    with pytest.raises(ModelError, match="3 class names"):
        model_info_for(ck, classes=("a", "b", "c"))
    assert model_info_for(ck, classes=("neg", "pos")).negative_class == "neg"


def test_not_a_checkpoint_is_a_model_error(tmp_path):
    from ctedge.export.model import load_checkpoint

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_probability_comparison_counts_only_decisive_mismatches():
    from ctedge.export.onnx_export import compare_probabilities

    ref = np.array([[0.9, 0.1], [0.50001, 0.49999]], dtype=np.float32)
    got = np.array([[0.1, 0.9], [0.49999, 0.50001]], dtype=np.float32)
    check = compare_probabilities(ref, got)
    assert check.argmax_mismatches == 1 and not check
    assert compare_probabilities(ref, ref)


def test_cli_export_bad_checkpoint_exits_2_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"nope")
    out = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "junk.pt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable PyTorch checkpoint" in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "junk.pt"]


def test_cli_export_rejects_one_class(tmp_path, capsys):
    assert main(["export", "new", "--out", str(tmp_path / "m.onnx"), "--classes", "x"]) == 2
    assert "at least two" in capsys.readouterr().err


@pytest.mark.slow
def test_export_resnet50_matches_pytorch_on_real_slices(tmp_path, ucsd_inputs):
    import onnx
    import torch

    from ctedge.backends import open_backend
    from ctedge.export.model import build_resnet50, save_checkpoint
    from ctedge.export.onnx_export import export_onnx

    torch.manual_seed(1)
    net = build_resnet50(2)
    ck = save_checkpoint(tmp_path / "ck.pt", net, ["non_covid", "covid19"], "non_covid",
                         training={"note": "test"})
    out = tmp_path / "model.onnx"
    result = export_onnx(ck, out, check_inputs=ucsd_inputs)
    assert result.check and result.check.n_inputs == 4 + len(ucsd_inputs)
    model = onnx.load(str(out))
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["probabilities", "class_activation_maps"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    producer = {o: n for n in model.graph.node for o in n.output}
    assert producer["probabilities"].op_type == "Softmax"
    info = read_info(out)
    assert info.classes == ("non_covid", "covid19") and info.precision == "fp32"
    assert info.training == {"note": "test"} and info.graph_sha256 == result.info.graph_sha256
    with open_backend(out) as backend:
        for n in (1, 5):
            probs = backend.infer(ucsd_inputs[:n])
            assert probs.shape == (n, 2)
            np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        with torch.no_grad():
            ref = torch.softmax(net.eval()(torch.from_numpy(ucsd_inputs)), 1).numpy()
        got = backend.infer(ucsd_inputs)
        _, maps = backend.infer_maps(ucsd_inputs[:3])
    assert np.max(np.abs(ref - got)) <= 1e-4
    assert (ref.argmax(1) == got.argmax(1)).all()
    # The maps are torchvision's layer4 features weighted by the fc rows (CAM), per position.
    with torch.no_grad():
        x = torch.from_numpy(ucsd_inputs[:3])
        body = torch.nn.Sequential(*list(net.children())[:-2]).eval()
        cam = torch.einsum("nkhw,ck->nchw", body(x), net.fc.weight) + \
            net.fc.bias[None, :, None, None]
    np.testing.assert_allclose(maps, cam.numpy(), atol=1e-3, rtol=1e-3)


@pytest.mark.slow
def test_cli_export_new_stamps_random_weights(tmp_path, capsys):
    out = tmp_path / "new.onnx"
    assert main(["export", "new", "--out", str(out), "--classes", "a,b,c", "--negative", "b",
                 "--size", "64"]) == 0
    info = read_info(out)
    assert info.training == {"weights": "random"}
    assert info.negative_class == "b" and info.preprocessing.size == 64
    assert "random weights" in capsys.readouterr().out
