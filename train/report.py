"""A Markdown report and a JSON document from an evaluation, plus its plots, into one folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ctedge.io import atomic_write

from .evaluate import Evaluation, LevelReport
from .plots import plot_confusion, plot_roc, plot_training_curves

FIGURES = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1")


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.3f}"


def _with_ci(level: LevelReport, key: str, value: float) -> str:
    ci = level.intervals.get(key)
    if ci is None or math.isnan(ci.low):
        return _fmt(value)
    return f"{_fmt(value)} ({_fmt(ci.low)}-{_fmt(ci.high)})"


def level_table(level: LevelReport) -> str:
    """The paper's one-vs-rest layout: one row per class, 95 % CIs in brackets."""
    m = level.metrics
    lines = ["| class | " + " | ".join(FIGURES) + " |",
             "|---|" + "---|" * len(FIGURES)]
    for c in m.per_class:
        cells = [_with_ci(level, f"{c.label}.{f}", getattr(c, f)) for f in FIGURES]
        lines.append(f"| {c.label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Overall accuracy {_with_ci(level, 'accuracy', m.accuracy)}, "
                 f"{m.positive_class}-vs-rest AUC {_with_ci(level, 'auc', m.auc)}; "
                 f"n = {m.n} ({level.patients} patients).")
    lines.append("")
    lines.append("Confusion matrix (rows true, columns predicted):")
    lines.append("")
    lines.append("| true \\ predicted | " + " | ".join(m.classes) + " |")
    lines.append("|---|" + "---|" * len(m.classes))
    for label, row in zip(m.classes, m.confusion, strict=True):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def write_report(evaluation: Evaluation, out_dir: str | Path, model_name: str = "",
                 history: list[dict] | None = None, extra: dict | None = None) -> dict:
    """Write report.md, metrics.json and PNG plots into out_dir; returns the JSON document."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = _plots(evaluation, out_dir, "")
    if history:
        plots["training_curves"] = plot_training_curves(history, out_dir / "training-curves.png",
                                                         "Training (Figure 1 layout)").name
    doc = {"model": model_name, **evaluation.to_dict(), "plots": plots, **(extra or {})}
    atomic_write(out_dir / "metrics.json", json.dumps(doc, indent=2, default=_json_default))
    atomic_write(out_dir / "report.md", markdown(evaluation, plots, model_name, extra))
    return doc


def _plots(ev: Evaluation, out_dir: Path, prefix: str) -> dict:
    plots = {}
    stem = f"{prefix}{ev.name}".replace("/", "_").replace(" ", "_")
    plots["confusion_slices"] = plot_confusion(
        ev.slices.metrics.confusion, ev.classes, out_dir / f"{stem}-confusion-slices.png",
        f"{ev.name}: slices").name
    for rule, level in ev.studies.items():
        plots[f"confusion_studies_{rule}"] = plot_confusion(
            level.metrics.confusion, ev.classes, out_dir / f"{stem}-confusion-studies-{rule}.png",
            f"{ev.name}: studies, {rule} rule").name
    curves = {"slices": (ev.slices.roc_fpr, ev.slices.roc_tpr, ev.slices.metrics.auc)}
    for rule, level in ev.studies.items():
        curves[f"studies, {rule} rule"] = (level.roc_fpr, level.roc_tpr, level.metrics.auc)
    plots["roc"] = plot_roc(curves, out_dir / f"{stem}-roc.png",
                            f"{ev.name}: {ev.positive_class} vs rest").name
    for site, sub in ev.per_site.items():
        plots[f"site:{site}"] = _plots(sub, out_dir, f"{stem}-site-")
    return plots


def markdown(ev: Evaluation, plots: dict, model_name: str = "", extra: dict | None = None) -> str:
    t = ev.thresholds
    parts = [f"# Evaluation: {ev.name}", ""]
    if model_name:
        parts += [f"Model: `{model_name}`. Classes {list(ev.classes)}, negative class "
                  f"`{ev.negative_class}`.", ""]
    parts += ["95 % confidence intervals (in brackets) come from a bootstrap that resamples "
              "patients, not slices.", "",
              "## Slice level (top-1)", "", level_table(ev.slices), ""]
    for rule, level in ev.studies.items():
        rule_text = ("robust rule: probability >= "
                     f"{t.probability:g} on >= max({t.min_slices}, ceil({t.min_fraction:g} n)) "
                     "slices" if rule == "robust" else "paper rule: any slice's top class")
        parts += [f"## Study level, {rule_text}", "", level_table(level), ""]
    parts += ["## Plots", ""]
    for key, name in plots.items():
        if isinstance(name, str):
            parts.append(f"![{key}]({name})")
    parts.append("")
    for site, sub in ev.per_site.items():
        parts += [f"## Site {site} (evaluated independently)", "", "### Slices", "",
                  level_table(sub.slices), ""]
        for rule, level in sub.studies.items():
            parts += [f"### Studies, {rule} rule", "", level_table(level), ""]
    if extra:
        parts += ["## Other results", "", "```json",
                  json.dumps(extra, indent=2, default=_json_default), "```", ""]
    return "\n".join(parts)


def _json_default(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
