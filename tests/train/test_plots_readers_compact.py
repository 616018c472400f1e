import json

import numpy as np
import pytest

from ctedge.train.evaluate import Predictions
from ctedge.train.plots import plot_confusion, plot_roc, plot_training_curves, read_epoch_log
from ctedge.train.readers import compare_with_reader

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_are_pngs(tmp_path):
    log = tmp_path / "epochs.jsonl"
    rows = [{"epoch": e, "optimizer": "adam" if e < 3 else "sgd", "train_loss": 1 / e,
             "val_loss": 1.2 / e, "train_accuracy": 0.5 + e / 10, "val_accuracy": 0.5 + e / 20,
             "best": e == 3} for e in range(1, 5)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = [plot_training_curves(read_epoch_log(log), tmp_path / "curves.png"),
             plot_confusion([[3, 1], [0, 4]], ["a", "b"], tmp_path / "cm.png"),
             plot_roc({"x": ([0, 0.5, 1], [0, 0.8, 1], 0.65)}, tmp_path / "roc.png")]
    for p in paths:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 2000
    assert sorted(x.name for x in tmp_path.iterdir()) == [
        "cm.png", "curves.png", "epochs.jsonl", "roc.png"]  # no temporary files left


def test_second_reader_comparison(tmp_path):
    labels = np.array([0, 1] * 10)
    probs = np.where(labels[:, None] == np.array([0, 1]), 0.8, 0.2).astype(np.float32)
    pred = Predictions(probs, labels, tuple(f"p{i}" for i in range(20)), ("n", "c"), (),
                       tuple(f"{i}.png" for i in range(20)))
    reader = tmp_path / "reader.csv"
    lines = ["path,label,score"]
    for i in range(20):
        wrong = i < 8
        lab = ("n", "c")[1 - labels[i] if wrong else labels[i]]
        lines.append(f"{i}.png,{lab},{0.9 if lab == 'c' else 0.1}")
    reader.write_text("\n".join(lines) + "\n")
    out = compare_with_reader(pred, reader, "c")
    assert out["mcnemar"]["only_a_correct"] == 8 and out["mcnemar"]["only_b_correct"] == 0
    assert out["mcnemar"]["p_value"] == pytest.approx(2 / 2**8)
    assert out["delong"]["a"] == 1.0 and out["delong"]["b"] == pytest.approx(0.6)


def test_compact_fp16_weights_is_exact_and_expands(tmp_path, tiny_model_factory):
    import onnx
    import onnxruntime as ort

    from ctedge.export.compact import compact_fp16_weights, expand, round_fp16_weights

    model = onnx.load(str(tiny_model_factory(tmp_path / "t.onnx", size=32)))
    compact = compact_fp16_weights(model, min_elements=1)
    onnx.checker.check_model(compact)
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in compact.graph.initializer)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)

    def run(m):
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return s.run(None, {"input": x})[0]

    rounded = run(round_fp16_weights(model, min_elements=1))
    assert np.array_equal(run(compact), rounded)
    assert np.array_equal(run(expand(compact)), rounded)
    assert not np.array_equal(run(model), rounded)  # rounding did change the weights
