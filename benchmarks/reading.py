"""How ctedge's time per study compares with a radiologist's reading time (published anchors).

The ratio says how many studies ctedge triages in the time one read takes. It does not say
ctedge replaces the read: decision support, not a medical device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ReadingAnchor:
    key: str
    seconds: float  # reading time per study, seconds
    what: str
    citation: str


ANCHORS = (
    ReadingAnchor(
        "acra-2022-consultant", 366.0,
        "non-contrast chest CT read without AI, consultant radiologist",
        "Academic Radiology 29:1085 (2022), doi:10.1016/j.acra.2021.10.008"),
    ReadingAnchor(
        "kurmukov-2024-unaided", 15.6 * 60,
        "chest CT (BIMCV-COVID19) read unaided, mean of 40 radiologists",
        "Kurmukov et al., arXiv:2406.08137 (2024)"),
)


def reading_speedups(study_results: list[dict]) -> dict:
    """Per study and anchor: anchor seconds / ctedge seconds, for cold and warm wall time."""
    rows = []
    for r in study_results:
        if "cold" not in r or "warm" not in r:  # the plain loop has no warm runs
            continue
        for anchor in ANCHORS:
            rows.append({
                "study": r["study"], "model": r["model"], "anchor": anchor.key,
                "reading_s": anchor.seconds,
                "ctedge_cold_s": r["cold"]["wall_median_s"],
                "ctedge_warm_s": r["warm"]["wall_median_s"],
                "speedup_cold": anchor.seconds / r["cold"]["wall_median_s"],
                "speedup_warm": anchor.seconds / r["warm"]["wall_median_s"],
            })
    return {"anchors": [asdict(a) for a in ANCHORS], "speedups": rows,
            "note": "ctedge triages; a radiologist still reads every study. "
                    "Decision support, not a medical device."}
