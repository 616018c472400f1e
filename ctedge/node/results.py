"""Per-study results: the JSON (classify's schema plus a `node` section) and the DICOM objects
that go back to PACS.

Order matters for restart safety: the result objects are put in the outbox first, the JSON
last. The JSON is the commit point: a study with a JSON is never classified again, and the
outbox sends a study's objects only once its JSON exists. A crash before the JSON means the
study is classified again on restart, and its objects (same UIDs) are replaced, not doubled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..result import DISCLAIMER, SCHEMA, StudyResult
from .files import remove_stale_parts, write_json

# A result object builder turns a classified study into one DICOM dataset sent to the
# destination. The SR is the first; a second object (a Secondary Capture summary, say) is one
# more (name, builder) pair appended to ResultObjects.builders.
ResultObjectBuilder = Callable[[StudyResult], object]


@dataclass
class ResultObjects:
    """The named DICOM objects built for each classified study, in sending order."""

    builders: list[tuple[str, ResultObjectBuilder]] = field(default_factory=list)

    @classmethod
    def default(cls, with_sr: bool = True, with_summary: bool = False) -> ResultObjects:
        """The SR and, with_summary, the report summary as a Secondary Capture (issue: show
        the evidence in PACS next to the study); nothing without a destination."""
        if not with_sr:
            return cls([])
        from .sr import build_sr

        builders = [("sr", build_sr)]
        if with_summary:
            from ..report.secondary_capture import summary_object

            builders.append(("summary", summary_object))
        return cls(builders)

    def build(self, result: StudyResult) -> list[tuple[str, object]]:
        return [(name, builder(result)) for name, builder in self.builders]


class ResultStore:
    """results/<study key>.json, written durably."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def open(self) -> set[str]:
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(self.root)
        return {p.stem for p in self.root.glob("*.json")}

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def write_result(self, key: str, result: StudyResult, node: dict) -> dict:
        data = result.to_dict()
        data["node"] = {"study_key": key, "status": "classified", **node}
        write_json(self.path(key), data)
        return data

    def write_failure(self, key: str, reason: str, node: dict) -> dict:
        """A study that cannot be classified still gets a result, so it is not retried forever."""
        from .. import __version__

        data = {"schema": SCHEMA, "ctedge_version": __version__, "disclaimer": DISCLAIMER,
                "decision": None,
                "node": {"study_key": key, "status": "not classified", "reason": reason, **node}}
        write_json(self.path(key), data)
        return data


def node_section(instances: int, received_at: float, started: float) -> dict:
    """The `node` part of a result: what the node knew about the study (no identifiers)."""
    now = time.time()
    return {"instances": instances,
            "quiet_since": _iso(received_at),
            "classified_at": _iso(now),
            "classify_s": round(time.perf_counter() - started, 3)}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
