"""Publishing a checkpoint as a compact (FP16-stored, FP32-graph) ONNX: a real ResNet-50."""

import numpy as np
import pytest

pytest.importorskip("torch", reason="publishing needs the train extra (torch)")


@pytest.mark.slow
def test_publish_halves_the_file_and_matches_pytorch(tmp_path):
    import onnx
    import torch

    from ctedge.artifact import read_info
    from ctedge.backends import open_backend
    from ctedge.export.compact import SUFFIX
    from ctedge.export.model import build_resnet50, save_checkpoint
    from ctedge.preprocess import Preprocessing
    from ctedge.train.publish import publish

    torch.manual_seed(0)
    net = build_resnet50(2).eval()
    pp = Preprocessing(size=32)
    ck = save_checkpoint(tmp_path / "best.pt", net, ["non_covid", "covid19"], "non_covid",
                         preprocessing=pp.to_dict(), training={"note": "test"})
    check = np.random.default_rng(0).standard_normal((6, 3, 32, 32)).astype(np.float32)
    result = publish(ck, tmp_path / "m.onnx", check, training_extra={"extra": 1})
    assert result.identical_to_rounded_fp32
    assert result.decisive_top1_mismatches == 0 and result.max_abs_diff_vs_torch < 0.05
    # FP32 ResNet-50 is ~94 MB; FP16 storage of the large weights halves it
    assert 40e6 < result.size_bytes < 50e6
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert sum(t.name.endswith(SUFFIX) for t in model.graph.initializer) > 50
    info = read_info(tmp_path / "m.onnx")
    assert info.classes == ("non_covid", "covid19") and info.training["extra"] == 1
    with open_backend(tmp_path / "m.onnx") as backend:
        probs = backend.infer(check)
    assert probs.shape == (6, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
