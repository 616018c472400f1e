"""The library function behind `ctedge evaluate` (torch-free: ONNX Runtime, numpy, scipy)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ctedge.artifact import read_info
from ctedge.errors import DataError
from ctedge.io import atomic_path, atomic_write

from .dataset import load_slices
from .evaluate import choose_thresholds, evaluate_predictions, predict
from .manifest import Sample, read_manifest, scan_folder
from .report import level_table, write_report


def select_samples(data: str | Path, split: str, label_map: dict[str, str]) -> tuple[list, Path]:
    data = Path(data)
    if data.is_dir():
        samples, root = scan_folder(data), data
    else:
        samples, root = read_manifest(data), data.parent
    has_split = any(s.split for s in samples)
    if split == "auto":
        split = "test" if has_split else "all"
    if split != "all":
        if not has_split:
            raise DataError(f"{data}: no split column; use --split all")
        samples = [s for s in samples if s.split == split]
        if not samples:
            raise DataError(f"{data}: no rows with split {split!r}")
    samples = [Sample(s.path, label_map.get(s.label, s.label), s.patient_id, s.site, s.split)
               for s in samples]
    return samples, root


def set_thresholds(model: str | Path, thresholds, choice: dict, out: str | Path | None) -> Path:
    """Write `thresholds` into the model's ctedge metadata (atomically; in place by default)."""
    import onnx

    from ctedge.artifact import write_info

    src = Path(model)
    info = read_info(src)
    proto = onnx.load(str(src))
    training = {**info.training, "thresholds_choice": choice}
    write_info(proto, info.with_(thresholds=thresholds, training=training))
    dest = Path(out) if out else src
    with atomic_path(dest) as tmp:
        onnx.save(proto, str(tmp))
    return dest


def evaluate_command(model, data, *, data_root=None, split="auto", label_map=None,
                     positive_class=None, choose=False, write_model=None, n_resamples=2000,
                     seed=0, training_log=None, second_reader=None, out_dir=None):
    """Returns (JSON document, text summary)."""
    from ctedge.backends import open_backend

    label_map = label_map or {}
    info = read_info(model)
    data = Path(data)
    root_hint = Path(data_root) if data_root else None
    if data.suffix.lower() == ".csv":
        from .studies import evaluate_studies, is_study_manifest, read_study_manifest

        root = root_hint or data.parent
        if data.is_file() and is_study_manifest(data, root):
            if choose:
                raise DataError("--choose-thresholds needs validation slices with patients, "
                                "not a study manifest")
            outcomes = evaluate_studies(model, read_study_manifest(data), root, label_map,
                                        positive_class=positive_class)
            doc = {"model": str(model), "studies": [o.to_dict() for o in outcomes],
                   "thresholds": info.thresholds.to_dict()}
            if out_dir:
                atomic_write(Path(out_dir) / "studies.json", json.dumps(doc, indent=2))
            return doc, _studies_text(doc)
    if split in ("test", "auto") and choose:
        raise DataError("thresholds are chosen on validation data only; use --split val")
    samples, root = select_samples(data, split, label_map)
    root = root_hint or root
    slices = load_slices(samples, root, info.classes, info.preprocessing)
    extra = {}
    with open_backend(model) as backend:
        pred = predict(backend, slices)
        if out_dir and backend.has_maps:  # the slices to look at, with their maps
            from .evaluate import default_positive_class
            from .mistakes import collect, write_mistakes

            positive = positive_class or default_positive_class(info.classes,
                                                                 info.negative_class)
            found = collect(backend, slices, pred, positive)
            extra["mistakes"] = {"positive_class": positive, "shown": len(found), "files": [
                str(p) for p in write_mistakes(out_dir, found, positive, Path(model).name)]}
    thresholds = info.thresholds
    if choose:
        choice = choose_thresholds(pred, info.negative_class)
        thresholds = choice.thresholds
        summary = {k: v for k, v in choice.to_dict().items() if k != "grid"}
        dest = set_thresholds(model, thresholds, summary, write_model)
        extra["threshold_choice"] = {**summary, "written_to": str(dest)}
    ev = evaluate_predictions(pred, info.negative_class, thresholds, positive_class,
                              n_resamples=n_resamples, seed=seed, name=data.stem)
    if second_reader:
        from .readers import compare_with_reader

        extra["second_reader"] = compare_with_reader(pred, second_reader, ev.positive_class)
    history = None
    if training_log:
        from .plots import read_epoch_log

        history = read_epoch_log(training_log)
    if out_dir:
        doc = write_report(ev, out_dir, str(model), history, extra)
        _write_predictions(Path(out_dir) / "predictions.csv", pred)
    else:
        doc = {"model": str(model), **ev.to_dict(), **extra}
    text = "\n".join([f"# {ev.name}: {len(pred.labels)} slices, "
                      f"{len(set(pred.patients))} patients", "", "## Slices", "",
                      level_table(ev.slices), ""] +
                     sum(([f"## Studies, {r} rule", "", level_table(v), ""]
                          for r, v in ev.studies.items()), []) +
                     ([json.dumps(extra, indent=2, default=str)] if extra else []))
    return doc, text


def _write_predictions(path: Path, pred) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "patient_id", "label"] + [f"p_{c}" for c in pred.classes])
    for i in range(len(pred.labels)):
        w.writerow([pred.paths[i] if pred.paths else i, pred.patients[i],
                    pred.classes[pred.labels[i]]] + [f"{v:.6f}" for v in pred.probabilities[i]])
    atomic_write(path, buf.getvalue())


def _studies_text(doc: dict) -> str:
    lines = ["| study | truth | robust rule | paper rule | slices used/read | top-1 counts |",
             "|---|---|---|---|---|---|"]
    for s in doc["studies"]:
        lines.append(f"| {s['patient_id']} | {s['truth']} | {s['decisions']['robust']} | "
                     f"{s['decisions']['paper']} | {s['slices_used']}/{s['slices_read']} | "
                     f"{s['top1_counts']} |")
    for s in doc["studies"]:
        if s["slice_labels"]:
            lines.append(f"\n{s['patient_id']} slice labels: {json.dumps(s['slice_labels'])}")
    return "\n".join(lines)
