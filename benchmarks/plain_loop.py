"""The plain loop: what a user writes first, the peer `ctedge classify` must beat.

One process, one slice at a time: pydicom `dcmread` + `pixel_array`, HU from the rescale
tags, the lung window, a PIL resize to the model's input size, ImageNet mean/std, ONNX Runtime
at batch 1 with its default session options. No lung-field test, no batching, no workers.
Every slice is classified; the study label is the most frequent top class (the loop a user
writes does not have ctedge's decision rules, and the benchmark times it, not its answer).

    python -m ctedge.benchmarks.plain_loop STUDY_DIR MODEL.onnx

prints one JSON line: slices, wall seconds (after interpreter start, so imports and model load
are inside) and the study label. A cold run times the whole process from outside.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def plain_loop(study_dir: str | Path, model: str | Path) -> dict:
    start = time.perf_counter()
    import numpy as np
    import onnxruntime as ort
    import pydicom
    from PIL import Image

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    info = json.loads(meta["ctedge"])
    prep = info["preprocessing"]
    size, level, width = prep["size"], prep["window_level"], prep["window_width"]
    mean = np.array(prep["mean"], dtype=np.float32)[:, None, None]
    std = np.array(prep["std"], dtype=np.float32)[:, None, None]
    name = session.get_inputs()[0].name
    counts: dict[int, int] = {}
    files = sorted(p for p in Path(study_dir).rglob("*") if p.is_file())
    for path in files:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1)) \
            + float(ds.get("RescaleIntercept", 0))
        grey = np.clip((hu - (level - width / 2)) / width, 0.0, 1.0)
        small = np.asarray(Image.fromarray(grey).resize((size, size), Image.BOX))
        x = ((np.repeat(small[None], 3, axis=0) - mean) / std)[None].astype(np.float32)
        top = int(session.run(None, {name: x})[0][0].argmax())
        counts[top] = counts.get(top, 0) + 1
    classes = info["classes"]
    label = classes[max(counts, key=counts.get)] if counts else None
    return {"slices": len(files), "wall_s": time.perf_counter() - start, "label": label}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m ctedge.benchmarks.plain_loop STUDY_DIR MODEL.onnx",
              file=sys.stderr)
        return 2
    print(json.dumps(plain_loop(args[0], args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
