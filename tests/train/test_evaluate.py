"""Evaluation through ONNX Runtime with tiny models made here (no torch)."""

import json

import numpy as np
import pytest

from ctedge.artifact import ModelInfo, read_info
from ctedge.decision import DecisionThresholds
from ctedge.preprocess import Preprocessing
from ctedge.train.evaluate import (
    Predictions,
    choose_thresholds,
    evaluate_predictions,
    study_level,
)

CLASSES = ("non_covid", "covid19")


def _pred(probs_pos, labels, patients, sites=()):
    p = np.asarray(probs_pos, dtype=np.float32)
    return Predictions(np.stack([1 - p, p], 1), np.asarray(labels), tuple(patients), CLASSES,
                       tuple(sites), tuple(f"s{i}.png" for i in range(len(p))))


def test_study_level_rules_and_scores():
    pred = _pred([0.9, 0.6, 0.2, 0.7, 0.1, 0.3], [1, 1, 1, 0, 0, 0],
                 ["a", "a", "a", "b", "b", "c"])
    t = DecisionThresholds(probability=0.65, min_slices=2)
    robust = study_level(pred, "non_covid", "robust", t, "covid19")
    assert robust.ids == ("a", "b", "c")
    assert robust.labels.tolist() == [1, 0, 0]
    # a: only one slice >= 0.65 (needs 2) -> negative; b: one -> negative
    assert robust.predicted.tolist() == [0, 0, 0]
    assert robust.scores.tolist() == pytest.approx([0.6, 0.1, 0.3])  # 2nd largest, capped at n
    paper = study_level(pred, "non_covid", "paper", t, "covid19")
    assert paper.predicted.tolist() == [1, 1, 0]
    assert paper.scores.tolist() == pytest.approx([0.9, 0.7, 0.3])


def test_evaluation_figures_and_per_site():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    p = np.clip(0.3 + 0.4 * labels + rng.normal(0, 0.2, 40), 0.01, 0.99)
    patients = [f"p{i // 2}" for i in range(40)]
    sites = ["x" if i % 4 < 2 else "y" for i in range(40)]
    ev = evaluate_predictions(_pred(p, labels, patients, sites), "non_covid",
                              DecisionThresholds(0.5, 1), n_resamples=200, seed=0)
    m = ev.slices.metrics
    assert m.accuracy == pytest.approx(float(((p >= 0.5) == labels).mean()))
    ci = ev.slices.intervals["accuracy"]
    assert ci.low <= m.accuracy <= ci.high
    assert set(ev.studies) == {"robust", "paper"}
    assert ev.studies["paper"].metrics.n == 20
    assert set(ev.per_site) == {"x", "y"} and ev.per_site["x"].slices.metrics.n == 20
    json.dumps(ev.to_dict())  # machine-readable throughout


def test_choose_thresholds_prefers_balanced_accuracy_then_conservative():
    # positives' slices at 0.8 and 0.9; negatives at 0.55 and 0.6: any p in (0.6, 0.8] separates
    pred = _pred([0.8, 0.9, 0.55, 0.6], [1, 1, 0, 0], ["a", "b", "c", "d"])
    choice = choose_thresholds(pred, "non_covid")
    assert choice.balanced_accuracy == 1.0
    assert choice.thresholds == DecisionThresholds(0.8, 1, 0.1)
    assert len(choice.grid) == 10 * 3 * 3


def test_evaluate_command_writes_report_and_thresholds(tmp_path, tiny_model_factory):
    from PIL import Image

    from ctedge.train.evaluation_cli import evaluate_command
    from ctedge.train.manifest import Sample, write_manifest

    info = ModelInfo(classes=CLASSES, negative_class="non_covid",
                     preprocessing=Preprocessing(size=32))
    model = tiny_model_factory(tmp_path / "m.onnx", classes=CLASSES, size=32, info=info)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(16):
        label = CLASSES[i % 2]
        image = (rng.random((24, 24)) * (255 if label == "covid19" else 60)).astype(np.uint8)
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        samples.append(Sample(f"{i}.png", label, f"p{i // 2 * 2 + i % 2}",
                              split="val" if i < 8 else "test"))
    write_manifest(tmp_path / "m.csv", samples)
    from ctedge.errors import DataError

    with pytest.raises(DataError, match="validation data only"):
        evaluate_command(model, tmp_path / "m.csv", split="test", choose=True)
    doc, text = evaluate_command(model, tmp_path / "m.csv", split="val", choose=True,
                                 n_resamples=50, out_dir=tmp_path / "rep")
    chosen = doc["threshold_choice"]["thresholds"]
    assert read_info(model).thresholds.to_dict() == chosen
    assert read_info(model).training["thresholds_choice"]["thresholds"] == chosen
    for name in ("report.md", "metrics.json", "predictions.csv"):
        assert (tmp_path / "rep" / name).is_file()
    assert (tmp_path / "rep" / doc["plots"]["roc"]).read_bytes()[:4] == b"\x89PNG"
    assert "| covid19 |" in text
    test_doc, _ = evaluate_command(model, tmp_path / "m.csv", n_resamples=0)
    assert test_doc["slices"]["n"] == 8  # auto = the test rows


def test_evaluate_cli_json_on_a_class_folder(tmp_path, tiny_model_factory, capsys):
    from PIL import Image

    from ctedge.cli import main

    info = ModelInfo(classes=CLASSES, negative_class="non_covid",
                     preprocessing=Preprocessing(size=32))
    model = tiny_model_factory(tmp_path / "m.onnx", classes=CLASSES, size=32, info=info)
    for label in CLASSES:
        (tmp_path / "d" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((20, 20), 40 * i, np.uint8)).save(
                tmp_path / "d" / label / f"p{i}__a.png")
    assert main(["evaluate", str(model), str(tmp_path / "d"), "--bootstrap", "20",
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["slices"]["n"] == 6 and doc["classes"] == list(CLASSES)
    assert set(doc["studies"]) == {"robust", "paper"}
    assert main(["evaluate", str(model), str(tmp_path / "d"), "--choose-thresholds"]) == 2
    assert "--split val" in capsys.readouterr().err


def test_evaluate_pictures_the_strongest_mistakes_with_maps(tmp_path, tiny_model_factory):
    from PIL import Image

    from ctedge.export.cam import add_cam_file
    from ctedge.train.evaluation_cli import evaluate_command
    from ctedge.train.mistakes import strongest_mistakes

    info = ModelInfo(classes=CLASSES, negative_class="non_covid",
                     preprocessing=Preprocessing(size=32))
    plain = tiny_model_factory(tmp_path / "m.onnx", classes=CLASSES, size=32, info=info)
    model = tmp_path / "m-maps.onnx"
    add_cam_file(plain, model)
    rng = np.random.default_rng(0)
    for label in CLASSES:
        (tmp_path / "d" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 20)).astype(np.uint8)).save(
                tmp_path / "d" / label / f"p{i}__a.png")
    out = tmp_path / "eval"
    doc, _ = evaluate_command(model, tmp_path / "d", split="all", n_resamples=0, out_dir=out)
    shown = doc["mistakes"]["shown"]
    pred = _predictions_csv(out / "predictions.csv")
    expected = strongest_mistakes(pred, "covid19")
    assert shown == sum(map(len, expected.values())) > 0
    page = (out / "mistakes.html").read_text()
    for rows in expected.values():
        for row in rows:
            assert f"id='row-{row}'" in page
    assert page.count("data:image/jpeg") == 2 * shown and "<script" not in page
    assert Image.open(out / "mistakes.png").size[0] > 300
    # a model without maps: evaluation as before, no mistakes pictures
    doc2, _ = evaluate_command(plain, tmp_path / "d", split="all", n_resamples=0,
                               out_dir=tmp_path / "eval2")
    assert "mistakes" not in doc2 and not (tmp_path / "eval2" / "mistakes.html").exists()


def _predictions_csv(path):
    import csv

    from ctedge.train.evaluate import Predictions

    rows = list(csv.DictReader(path.open()))
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows], np.float32)
    labels = np.array([CLASSES.index(r["label"]) for r in rows])
    return Predictions(probs, labels, tuple(r["patient_id"] for r in rows), CLASSES)
