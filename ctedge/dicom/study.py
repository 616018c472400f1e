"""`read_study`: walk a folder, index headers, group into series, choose the CT series.

Choice rule (documented in docs/dicom.md): among series of CT image SOP classes (CT, Enhanced
CT, Legacy Converted Enhanced CT; or modality CT when the SOP class is missing) whose images
are axial, take the one with the most slices; ties go to the smaller key, so the choice is
deterministic. `series_uid` overrides the rule.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from pathlib import Path

from ctedge.errors import DicomError

from .codecs import require_codec
from .headers import CT_IMAGE_SOP_CLASSES, Frame, Skip, Unusable, read_frames, slice_normal
from .model import Problem, Series, SliceRef, Study
from .privacy import Redactor, WarningLog

# Positions closer than this along the normal count as the same slice position (mm).
DUPLICATE_TOLERANCE_MM = 0.01


def read_study(root: str | Path, series_uid: str | None = None) -> Study:
    """Index every file under `root` (headers only) and choose one axial CT series.

    Raises DicomError when `root` is not a folder, holds no CT image series, when
    `series_uid` names no series found, or when the chosen series' pixel data cannot be
    decoded by the installed codecs.
    """
    root = Path(root)
    if not root.exists():
        raise DicomError(f"study folder {root} does not exist; pass a folder of DICOM files")
    if not root.is_dir():
        raise DicomError(f"{root} is not a folder; pass the folder that holds the study's "
                         "DICOM files")
    log = WarningLog()  # library warnings: summarised into study.warnings, never printed
    with log.capture():
        study = _read_study(root, series_uid, log)
    study.warnings += log.lines(study.redact)
    return study


def _read_study(root: Path, series_uid: str | None, log: WarningLog) -> Study:
    redactor = Redactor()
    frames: list[Frame] = []
    raw_problems: list[tuple[Path, str]] = []
    raw_skipped: list[tuple[Path, str]] = []
    files = _walk(root)
    for path in files:
        if path.name.upper() == "DICOMDIR":
            raw_skipped.append((path, "DICOMDIR (media directory)"))
            continue
        try:
            frames.extend(read_frames(path, redactor, log))
        except Skip as why:
            raw_skipped.append((path, str(why)))
        except Unusable as why:
            raw_problems.append((path, str(why)))
        except OSError as exc:
            raw_problems.append((path, f"cannot open ({exc.strerror or type(exc).__name__})"))
        except Exception as exc:  # a last guard: one file never stops the study
            raw_problems.append((path, f"unreadable ({type(exc).__name__})"))

    def rel(path: Path) -> str:
        return redactor(path.relative_to(root).as_posix())

    problems = [Problem(rel(p), redactor(r)) for p, r in raw_problems]
    skipped = [Problem(rel(p), redactor(r)) for p, r in raw_skipped]
    series = _group(frames, rel, redactor)
    shown_root = redactor(str(root))
    chosen, others = _choose(series, series_uid, shown_root, len(files), problems, skipped,
                             redactor)
    for syntax, path in chosen.transfer_syntaxes.items():
        require_codec(syntax, rel(path))
    warnings = [redactor(w) for w in chosen.warnings]
    return Study(root=root, files_seen=len(files), series=chosen.series, other_series=others,
                 problems=problems, warnings=warnings, skipped=skipped, redact=redactor)


class _Candidate:
    """A grouped series plus what the choice needs (SOP class, syntax, first file)."""

    def __init__(self, series: Series, sop_classes: set[str],
                 transfer_syntaxes: dict[str, Path], warnings: list[str]):
        self.series = series
        self.warnings = warnings
        self.sop_classes = sop_classes
        self.transfer_syntaxes = transfer_syntaxes  # syntax -> first file using it

    @property
    def is_ct(self) -> bool:
        return all(s in CT_IMAGE_SOP_CLASSES or (not s and self.series.modality == "CT")
                   for s in self.sop_classes)


def _walk(root: Path) -> list[Path]:
    """Regular files under root, in a deterministic order (hidden folders skipped)."""
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(folder) / n for n in sorted(names)
                   if not n.startswith(".") and os.path.isfile(os.path.join(folder, n)))
    return out


def _group(frames: list[Frame], rel, redactor) -> list[_Candidate]:
    groups: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        if f.series_uid:
            groups[redactor(f.series_uid)].append(f)
        else:
            # No SeriesInstanceUID: group by what a series shares (study, number, frame of
            # reference, orientation, folder). The hash keeps the key stable and identifier-free.
            orient = tuple(round(v, 2) for v in f.orientation) if f.orientation else None
            basis = repr((f.fallback_fields, orient, f.shape, f.modality, rel(f.path.parent)))
            key = "fallback-" + hashlib.sha1(basis.encode()).hexdigest()[:12]
            groups[key].append(f)
    out = []
    for key in sorted(groups):
        members = groups[key]
        warnings = []
        if key.startswith("fallback-"):
            warnings.append(f"{len(members)} images have no SeriesInstanceUID; grouped by "
                            "study UID, series number, frame of reference, orientation and "
                            f"folder into series {key}")
        out.append(_make_series(key, members, rel, warnings, redactor))
    return out


def _make_series(key: str, members: list[Frame], rel, warnings: list[str],
                 redactor) -> _Candidate:
    modality = redactor(Counter(f.modality for f in members).most_common(1)[0][0])
    description = redactor(Counter(f.description for f in members).most_common(1)[0][0])
    orientations = Counter(f.orientation for f in members if f.orientation)
    normal = slice_normal(orientations.most_common(1)[0][0]) if orientations else None

    def z_of(f: Frame) -> float | None:
        if normal is None or f.position is None:
            return None
        return sum(p * n for p, n in zip(f.position, normal, strict=True))

    zs = {id(f): z_of(f) for f in members}
    ordered_name = {id(f): rel(f.path) for f in members}
    big = float("inf")
    if all(zs[id(f)] is not None for f in members):
        sorted_by = "position"
        # Head first (the reading order, and COVID-CT-MD's label order); ties by number, name.
        members = sorted(members, key=lambda f: (-zs[id(f)], f.instance_number or big,
                                                 ordered_name[id(f)], f.frame or 0))
    else:
        sorted_by = "instance_number"
        missing = sum(zs[id(f)] is None for f in members)
        warnings.append(f"{missing} of {len(members)} images lack ImagePositionPatient "
                        "or ImageOrientationPatient; slices sorted by InstanceNumber")
        if any(f.instance_number is None for f in members):
            warnings.append("some images also lack InstanceNumber; those come last, "
                            "by file name")
        members = sorted(members, key=lambda f: (f.instance_number is None,
                                                 f.instance_number or 0,
                                                 ordered_name[id(f)], f.frame or 0))
    duplicates = 0
    if sorted_by == "position":
        previous = None
        for f in members:
            z = zs[id(f)]
            if previous is not None and abs(z - previous) < DUPLICATE_TOLERANCE_MM:
                duplicates += 1
            previous = z
        if duplicates:
            warnings.append(f"{duplicates} slices repeat the position of another "
                            "(several phases or acquisitions in one series?); kept all, "
                            "ordered by InstanceNumber within a position")
    slices = tuple(
        SliceRef(path=f.path, frame=f.frame, z_mm=zs[id(f)], instance_number=f.instance_number,
                 pixel_spacing_mm=f.pixel_spacing_mm,
                 name=ordered_name[id(f)] + (f"#{f.frame}" if f.frame is not None else ""))
        for f in members
    )
    syntaxes: dict[str, Path] = {}
    for f in members:
        syntaxes.setdefault(f.transfer_syntax, f.path)
    series = Series(key=key, modality=modality, description=description, slices=slices,
                    sorted_by=sorted_by, duplicate_positions=duplicates)
    return _Candidate(series, {f.sop_class for f in members}, syntaxes, warnings)


def _choose(candidates: list[_Candidate], series_uid: str | None, root: str, n_files: int,
            problems: list[Problem], skipped: list[Problem], redactor):
    if series_uid is not None:
        match = [c for c in candidates if c.series.key == series_uid]
        if not match:
            keys = ", ".join(c.series.key for c in candidates) or "none"
            raise DicomError(f"series {redactor(series_uid)} not found in {root}; "
                             f"series found: {keys}")
        chosen = match[0]
    else:
        eligible = [c for c in candidates if c.is_ct]
        if not eligible:
            raise DicomError(f"no CT image series found in {root}: "
                             + _what_was_found(n_files, candidates, problems, skipped)
                             + "; pass the folder of an axial CT study")
        chosen = min(eligible, key=lambda c: (-len(c.series), c.series.key))
    others = []
    for c in candidates:
        if c is chosen:
            continue
        summary = c.series.to_summary()
        if series_uid is not None:
            why = "another series was requested (series_uid)"
        elif not c.is_ct:
            why = f"not a CT image series (modality {c.series.modality or 'unknown'})"
        else:
            why = f"fewer slices than the chosen series ({len(c.series)} vs {len(chosen.series)})"
            if len(c.series) == len(chosen.series):
                why = "as many slices as the chosen series; the smaller key wins the tie"
        summary["why_not_chosen"] = why
        others.append(summary)
    return chosen, others


def _what_was_found(n_files: int, candidates, problems, skipped) -> str:
    if n_files == 0:
        return "the folder holds no files"
    parts = [f"{n_files} files"]
    if candidates:
        parts.append(f"{len(candidates)} non-CT image series")
    for label, items in (("problems", problems), ("skipped", skipped)):
        reasons = Counter(p.reason for p in items)
        if reasons:
            top = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(3))
            parts.append(f"{label}: {top}")
    return ", ".join(parts)
