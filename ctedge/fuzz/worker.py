"""The process that runs fuzz cases through the library entry points, one case per input line.

    python -m ctedge.fuzz.worker      (started by the campaign with its memory limit)

Input lines: {"folder": ..., "identifiers": [...]}. Output lines: {"outcome": ..., "key": ...,
"detail": ...}. outcome is "ok" (read, or refused with a CtedgeError), "crash" (any other
exception, a BaseException included), "leak" (an identifier in anything reported), or
"warning" (a library warning escaped to the caller).
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from pathlib import Path

# Slices decoded per case: the first two and the last (a file may claim thousands of frames).
SLICES_PER_CASE = 3


def run_case(folder: Path, identifiers: list[str], direct: bool = True) -> dict:
    """Read `folder` with read_study, then its slices with read_hu and lung_field (`direct`)
    or with prepare_slice, which calls both (half the decoding: campaigns alternate)."""
    from ctedge.dicom import read_hu, read_study
    from ctedge.errors import CtedgeError
    from ctedge.lungs import LungFieldConfig, lung_field
    from ctedge.preprocess import Preprocessing
    from ctedge.slices import prepare_slice

    texts: list[str] = []
    stage = "read_study"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            study = read_study(folder)
            texts += [repr(study), json.dumps(study.to_summary(), allow_nan=False)]
            refs = study.series.slices
            picked = sorted({0, 1, len(refs) - 1} & set(range(len(refs))))[:SLICES_PER_CASE]
            for i in picked:
                ref = refs[i]
                if direct:
                    stage = "read_hu"
                    try:
                        hu = read_hu(ref)
                    except CtedgeError as exc:
                        texts.append(str(exc))
                        continue
                    stage = "lung_field"
                    texts.append(lung_field(hu, ref.pixel_spacing_mm).reason)
                    continue
                stage = "prepare_slice"
                prepared = prepare_slice(i, ref, Preprocessing(size=32), LungFieldConfig())
                texts += [prepared.problem or "", prepared.lung.reason if prepared.lung else ""]
                if prepared.tensor is not None and not bool(_finite(prepared.tensor)):
                    return {"outcome": "crash", "key": "prepare_slice:non-finite model input",
                            "detail": ""}
        except CtedgeError as exc:
            texts.append(str(exc))
        except BaseException as exc:  # noqa: BLE001 - the point: nothing may escape
            if isinstance(exc, KeyboardInterrupt):
                raise
            return {"outcome": "crash", "key": crash_key(stage, exc),
                    "detail": _first_line(exc)}
    leaked = leaks(texts, identifiers)
    if leaked:
        return {"outcome": "leak", "key": f"{stage}:identifier in output",
                "detail": f"{len(leaked)} identifier value(s)"}
    if caught:
        w = caught[0]
        return {"outcome": "warning", "key": f"warning:{w.category.__name__}:"
                f"{Path(w.filename).name}", "detail": str(w.message)[:80]}
    return {"outcome": "ok", "key": "ok", "detail": ""}


def _finite(array):
    import numpy as np

    return np.isfinite(array).all()


def leaks(texts: list[str], identifiers: list[str]) -> list[str]:
    """Identifier values (and their '-'-separated fragments of 4+ characters) found in texts."""
    haystack = "\n".join(texts).lower()
    found = []
    for value in identifiers:
        parts = {value} | {p for p in value.replace("^", "-").split("-") if len(p) >= 4}
        found += [p for p in parts if p and p.lower() in haystack]
    return found


def crash_key(stage: str, exc: BaseException) -> str:
    """A failure class: stage, exception type and the deepest ctedge frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/ctedge/" in f.filename.replace("\\", "/")]
    where = ours[-1] if ours else (frames[-1] if frames else None)
    loc = f"{Path(where.filename).name}:{where.name}" if where else "?"
    return f"{stage}:{type(exc).__name__}@{loc}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:120]


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = run_case(Path(request["folder"]), request.get("identifiers", []),
                              request.get("direct", True))
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            result = {"outcome": "crash", "key": crash_key("worker", exc),
                      "detail": _first_line(exc)}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
