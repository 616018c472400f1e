"""A classified study as an object, and its three renderings: JSON, CSV (one row per slice), table.

Nothing here carries patient identifiers: the study folder, series key, file names, skip
reasons and problems all pass through the study's redactor. The JSON is strict: a value that
is not a finite number (NaN, Infinity) is written as null.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from . import __version__
from .decision import StudyDecision
from .dicom import SliceRef, Study

UNREADABLE, NO_LUNG_FIELD = "unreadable", "no lung field"  # why a slice was not classified
DISCLAIMER = "Decision support only, not a medical device: a clinician must review every result."
SCHEMA = 1


@dataclass(frozen=True)
class SliceResult:
    index: int  # position in z order within the series
    z_mm: float | None
    instance_number: int | None
    probabilities: dict[str, float] | None  # None when the slice was not classified
    label: str | None
    used: bool
    lung_area_cm2: float | None
    skip_reason: str | None

    @classmethod
    def from_prepared(cls, prepared, ref: SliceRef, probs: np.ndarray | None, classes):
        lung = prepared.lung
        if prepared.problem:
            reason = f"{UNREADABLE}: {prepared.problem}"
        elif not prepared.used:
            reason = f"{NO_LUNG_FIELD}: {lung.reason}"
        else:
            reason = None
        probabilities = (None if probs is None
                         else {c: float(p) for c, p in zip(classes, probs, strict=True)})
        return cls(
            index=prepared.index,
            z_mm=None if ref.z_mm is None else round(float(ref.z_mm), 3),
            instance_number=ref.instance_number,
            probabilities=probabilities,
            label=None if probs is None else classes[int(np.argmax(probs))],
            used=prepared.used,
            lung_area_cm2=None if lung is None or lung.area_cm2 is None
            else round(float(lung.area_cm2), 2),
            skip_reason=reason,
        )


@dataclass(frozen=True)
class StudyResult:
    study: Study
    decision: StudyDecision
    slices: list[SliceResult]
    timings_s: dict[str, float]
    model: dict
    # {slice index: (n_classes, h, w) float32 class-activation maps} when they were asked for
    # and the model has them; None otherwise. Not part of the JSON/CSV/table renderings.
    maps: dict | None = None

    @property
    def skipped(self) -> Counter:
        return Counter(s.skip_reason.split(":")[0] for s in self.slices if s.skip_reason)

    def to_dict(self) -> dict:
        """JSON-ready: identifiers redacted, non-finite floats turned into None."""
        return finite(self._raw_dict())

    def _raw_dict(self) -> dict:
        study, series = self.study, self.study.series
        redact = study.redact
        used = sum(s.used for s in self.slices)
        slices = [dict(s.__dict__, skip_reason=None if s.skip_reason is None
                       else redact(s.skip_reason)) for s in self.slices]
        return {
            "schema": SCHEMA,
            "ctedge_version": __version__,
            "disclaimer": DISCLAIMER,
            "study": {
                "path": study.root_display,
                "series_uid": series.key,
                "files_seen": study.files_seen,
                "slices_read": len(self.slices),
                "slices_classified": used,
                "slices_skipped": len(self.slices) - used,
                "skipped_reasons": dict(self.skipped),
                "files_skipped": study.to_summary()["skipped"],
                "series": series.to_summary(),
                "other_series": study.other_series,
                "warnings": list(study.warnings),
            },
            "decision": self.decision.to_dict(),
            "slices": slices,
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
            "model": self.model,
            "problems": [{"file": p.file, "reason": redact(p.reason)} for p in study.problems]
            + [{"file": f"slice {s['index']}", "reason": s["skip_reason"]}
               for s in slices if s["skip_reason"]
               and s["skip_reason"].startswith(UNREADABLE)],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        classes = self.model["classes"]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["index", "z_mm", "instance_number", "used", "label", "lung_area_cm2",
                         "skip_reason", *[f"p_{c}" for c in classes]])
        for s in self.slices:
            probs = [f"{s.probabilities[c]:.6f}" if s.probabilities else "" for c in classes]
            writer.writerow([s.index, _blank(s.z_mm), _blank(s.instance_number), int(s.used),
                             _blank(s.label), _blank(s.lung_area_cm2),
                             _blank(s.skip_reason and self.study.redact(s.skip_reason)),
                             *probs])
        return out.getvalue()

    def to_table(self) -> str:
        d, study = self.decision, self.to_dict()["study"]
        classes = self.model["classes"]
        lines = [
            f"ctedge {__version__}: {DISCLAIMER}",
            "",
            f"Decision:  {d.label.upper()}  ({d.rule} rule: {d.reason})",
            f"Study:     {study['path']}  series {study['series_uid']}",
            f"Slices:    {study['slices_read']} read, {study['slices_classified']} classified, "
            f"{study['slices_skipped']} skipped"
            + (f" ({', '.join(f'{n} {r}' for r, n in self.skipped.items())})"
               if self.skipped else ""),
            f"Model:     {self.model['path']}  {self.model['precision']} on "
            f"{self.model['backend']}" + _fallback_text(self.model.get("fallback")),
            "",
            f"  {'class':<22}{'top-1 slices':>13}{'p >= thr':>10}{'max p':>8}",
        ]
        for e in d.classes:
            lines.append(f"  {e.label:<22}{e.top1_slices:>13}{e.above_threshold:>10}"
                         f"{e.max_probability:>8.3f}")
        lines += ["", f"  {'slice':>5}{'z (mm)':>9}{'inst':>6}  {'label':<22}"
                  + "".join(f"{c[:10]:>11}" for c in classes)]
        for s in self.slices:
            z = "" if s.z_mm is None else f"{s.z_mm:.1f}"
            inst = "" if s.instance_number is None else str(s.instance_number)
            if s.used:
                probs = "".join(f"{s.probabilities[c]:>11.3f}" for c in classes)
                lines.append(f"  {s.index:>5}{z:>9}{inst:>6}  {s.label:<22}{probs}")
            else:
                why = self.study.redact(s.skip_reason)
                lines.append(f"  {s.index:>5}{z:>9}{inst:>6}  skipped: {why}")
        t = self.timings_s
        lines += ["", "Timings (s): " + "  ".join(f"{k} {t[k]:.2f}" for k in
                                                 ("read", "load", "decode", "preprocess", "infer",
                                                  "decide", "total") if k in t)]
        lines.append("  (decode and preprocess: summed over worker processes; total: wall time)")
        for warning in self.study.warnings:
            lines.append(f"Warning: {warning}")
        for p in self.to_dict()["problems"]:
            lines.append(f"Problem: {p['file']}: {p['reason']}")
        return "\n".join(lines) + "\n"

    def render(self, fmt: str) -> str:
        return {"json": self.to_json, "csv": self.to_csv, "table": self.to_table}[fmt]()


def finite(value):
    """`value` with every non-finite float (NaN, +-Infinity), at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _blank(value) -> str:
    return "" if value is None else str(value)


def _fallback_text(fallback: dict | None) -> str:
    """", 2 near-tie slices re-run in fp32" for an engine with a fallback, else ""."""
    if not fallback or "slices_rerun" not in fallback:
        return ""
    n = fallback["slices_rerun"]
    return f", {n} near-tie slice{'s' if n != 1 else ''} re-run in {fallback['precision']}"
