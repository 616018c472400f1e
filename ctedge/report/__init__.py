"""Per-study report: a self-contained `report.html` and a `summary.png` of the same content
(plus, with the `report` extra, a DICOM Secondary Capture of the summary: `secondary_capture`).

Runtime dependencies: numpy and Pillow only. No patient identifiers anywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_write
from ..result import StudyResult

HTML_NAME, SUMMARY_NAME = "report.html", "summary.png"


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` wrote, and how long it took (seconds, beyond classification)."""

    html: Path
    summary: Path
    seconds: float
    data: object  # evidence.ReportData


def write_report(result: StudyResult, out_dir: str | Path) -> ReportFiles:
    """Write report.html and summary.png for `result` into `out_dir` (created if needed;
    each file appears whole or not at all)."""
    from . import evidence, html, images, summary

    start = time.perf_counter()
    out_dir = Path(out_dir)
    data = evidence.gather(result)
    png = images.png_bytes(summary.render_summary(data))
    page = html.render(data)
    atomic_write(out_dir / SUMMARY_NAME, png)
    atomic_write(out_dir / HTML_NAME, page)
    return ReportFiles(out_dir / HTML_NAME, out_dir / SUMMARY_NAME,
                       time.perf_counter() - start, data)


__all__ = ["HTML_NAME", "SUMMARY_NAME", "ReportFiles", "write_report"]
