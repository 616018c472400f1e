"""What a study read produces: results as objects, free of patient identifiers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """A file that was skipped or could not be read.

    file: path relative to the study root, with patient identifiers redacted.
    reason: one line saying why.
    """

    file: str
    reason: str


@dataclass(frozen=True)
class SliceRef:
    """Where one axial CT slice lives; enough for `read_hu` to decode it alone.

    path: the DICOM file (not shown in repr: file names can carry patient identifiers).
    frame: frame index inside an enhanced multi-frame file, else None.
    z_mm: ImagePositionPatient projected on the slice normal, the normal turned to point
        towards the head (so, for plain axial slices, the patient z in mm). None if unknown.
    instance_number: InstanceNumber of the file (the same for all frames of a multi-frame file).
    pixel_spacing_mm: (row spacing, column spacing) in mm, or None if the file has none.
    name: display name relative to the study root, identifiers redacted ("a.dcm", "b.dcm#3").
    """

    path: Path = field(repr=False)
    frame: int | None
    z_mm: float | None
    instance_number: int | None
    pixel_spacing_mm: tuple[float, float] | None
    name: str = ""


@dataclass(frozen=True)
class Series:
    """One image series, its slices sorted head to feet.

    key: SeriesInstanceUID, or "fallback-<hash>" when the files carry none.
    sorted_by: "position" (ImagePositionPatient on the slice normal) or "instance_number".
    duplicate_positions: slices whose position repeats an earlier one (0.01 mm grid).
    """

    key: str
    modality: str
    description: str
    slices: tuple[SliceRef, ...]
    sorted_by: str
    duplicate_positions: int

    def __len__(self) -> int:
        return len(self.slices)

    def to_summary(self) -> dict:
        """JSON-ready facts about the series (no file names, no patient identifiers)."""
        zs = [s.z_mm for s in self.slices if s.z_mm is not None]
        spacing = next((s.pixel_spacing_mm for s in self.slices if s.pixel_spacing_mm), None)
        return {
            "key": self.key,
            "modality": self.modality,
            "description": self.description,
            "slices": len(self.slices),
            "sorted_by": self.sorted_by,
            "duplicate_positions": self.duplicate_positions,
            "z_range_mm": [round(max(zs), 3), round(min(zs), 3)] if zs else None,
            "pixel_spacing_mm": list(spacing) if spacing else None,
            "multi_frame": any(s.frame is not None for s in self.slices),
        }


@dataclass
class Study:
    """The outcome of `read_study`: the chosen series and everything else that was found.

    files_seen: regular files under the root. other_series: summaries of image series not
    chosen, each with "why_not_chosen". problems: files that are not readable CT images
    (not DICOM, truncated, no pixel data). skipped: files left out on purpose (DICOMDIR,
    localizers, non-axial images, non-image objects such as SR or RT dose). warnings: facts
    about the chosen series a reader should know (missing UIDs, duplicate positions, library
    warnings summarised one line per kind, ...). redact: removes the study's patient
    identifiers from a string (apply it to anything else derived from the study).
    """

    root: Path = field(repr=False)  # may name the patient: show root_display instead
    files_seen: int
    series: Series
    other_series: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    redact: Callable[[str], str] = field(default=str, repr=False, compare=False)

    @property
    def root_display(self) -> str:
        """The study folder as it may be shown: path components naming the patient redacted."""
        return self.redact(str(self.root))

    def to_summary(self) -> dict:
        """JSON-ready report of the read (root shown by folder name only)."""
        return {
            "files_seen": self.files_seen,
            "series": self.series.to_summary(),
            "other_series": list(self.other_series),
            "problems": [vars(p) for p in self.problems],
            "skipped": _count_reasons(self.skipped),
            "warnings": list(self.warnings),
        }


def _count_reasons(items: list[Problem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.reason] = counts.get(item.reason, 0) + 1
    return counts
