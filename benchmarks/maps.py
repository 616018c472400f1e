"""Class-activation maps and the study report: what they cost and where the maps fall.

    python -m ctedge.benchmarks.maps cost MODEL_WITH_MAPS.onnx PLAIN.onnx [--backend openvino]
    python -m ctedge.benchmarks.maps report STUDY_DIR MODEL_WITH_MAPS.onnx
    python -m ctedge.benchmarks.maps localisation STUDY_DIR MODEL_WITH_MAPS.onnx LABELS.npy ROW

- cost: img/s of the model without the maps output, the model with it asked for
  probabilities only, and the same asked for maps too; the three alternate round by round
  (A B C, C B A, ...) so load drift on a shared machine hits all alike; medians.
- report: seconds `write_report` takes beyond classification (median of warm repeats, and
  the first, cold one).
- localisation: on a study with per-slice infection labels (COVID-CT-MD:
  Slice-level-labels-updated-1.npy, column j = the j-th slice in z order from the head, i.e.
  InstanceNumber j + 1 for P001; see docs/report.md), the fraction of each labelled slice's
  min-max normalised map mass that lies inside its lung fields, against the lung fields'
  share of the image (what a flat map would score) and against unlabelled slices.
Prints JSON. Numbers, not assertions: the tests do not time anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from ctedge.preprocess import Preprocessing


def maps_cost(with_maps: Path, plain: Path, backend: str = "onnxruntime", batch: int = 16,
              rounds: int = 6, warmup: int = 2) -> dict:
    from ctedge.backends import open_backend

    with open_backend(plain, backend) as a, open_backend(with_maps, backend) as b:
        x = np.random.default_rng(0).standard_normal((batch, *a.info.input_shape),
                                                     dtype=np.float32)
        runs = {"plain model": lambda: a.infer(x), "maps model, probabilities only":
                lambda: b.infer(x), "maps model, with maps": lambda: b.infer_maps(x)}
        for run in runs.values():
            for _ in range(warmup):
                run()
        speeds: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for r in range(rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                start = time.perf_counter()
                runs[name]()
                speeds[name].append(batch / (time.perf_counter() - start))
    med = {name: statistics.median(v) for name, v in speeds.items()}
    base = med["plain model"]
    return {"backend": backend, "batch": batch, "rounds": rounds,
            "img_s": {k: round(v, 2) for k, v in med.items()},
            "time_vs_plain": {k: round(base / v, 4) for k, v in med.items()}}


def report_time(study: Path, model: Path, repeats: int = 3) -> dict:
    import tempfile

    from ctedge.pipeline import ClassifyConfig, classify_study
    from ctedge.report import write_report

    result = classify_study(study, ClassifyConfig(model=model, maps=True))
    times = []
    with tempfile.TemporaryDirectory(prefix="ctedge-report-") as tmp:
        for i in range(repeats + 1):
            start = time.perf_counter()
            write_report(result, Path(tmp) / str(i))
            times.append(time.perf_counter() - start)
    return {"slices": len(result.slices), "classified": sum(s.used for s in result.slices),
            "classification_total_s": round(result.timings_s["total"], 3),
            "report_first_s": round(times[0], 3),
            "report_warm_median_s": round(statistics.median(times[1:]), 3)}


def map_mass_in_lungs(study: Path, model: Path, labels: np.ndarray,
                      class_name: str = "covid19") -> dict:
    from ctedge.dicom import read_hu
    from ctedge.pipeline import ClassifyConfig, classify_study
    from ctedge.report.images import map_on_slice, normalise

    result = classify_study(study, ClassifyConfig(model=model, maps=True))
    if result.maps is None:
        raise SystemExit(f"{model}: no class-activation maps; add them with ctedge export")
    ci = result.model["classes"].index(class_name)
    pre = Preprocessing.from_dict(result.model["preprocessing"])
    refs = result.study.series.slices
    groups: dict[str, list[tuple[float, float]]] = {"labelled": [], "unlabelled": []}
    for s in result.slices:
        if not s.used or s.index >= len(labels):
            continue
        hu = read_hu(refs[s.index])
        mask = lung_mask(hu)
        if not mask.any():
            continue
        cam = normalise(map_on_slice(result.maps[s.index][ci], hu.shape,
                                     pre.crop_box(pre.window(hu))))
        mass = float(cam.sum())
        inside = float(cam[mask].sum()) / mass if mass > 0 else 0.0
        groups["labelled" if labels[s.index] else "unlabelled"].append((inside, mask.mean()))
    out = {"class": class_name, "decision": result.decision.label}
    for name, rows in groups.items():
        if rows:
            arr = np.array(rows)
            out[name] = {"slices": len(rows),
                         "map_mass_in_lungs": round(float(arr[:, 0].mean()), 4),
                         "lung_share_of_image": round(float(arr[:, 1].mean()), 4),
                         f"mean_p_{class_name}": round(float(np.mean(
                             [s.probabilities[class_name] for s in result.slices
                              if s.used and s.index < len(labels)
                              and bool(labels[s.index]) == (name == "labelled")])), 4)}
    return out


def lung_mask(hu: np.ndarray, body_hu: float = -500.0, air_hu: float = -400.0,
              gas_hu: float = -950.0) -> np.ndarray:
    """Lung fields of an axial slice, opacities inside them included: air-density components
    inside the body whose median is above gas_hu (as in ctedge.lungs), each with its holes
    filled so that consolidation and ground glass inside the lung count as lung."""
    from scipy import ndimage as ndi

    hu = np.asarray(hu, dtype=np.float32)
    labels, n = ndi.label(hu > body_hu)
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    body = ndi.binary_fill_holes(labels == np.bincount(labels.ravel())[1:].argmax() + 1)
    air, n = ndi.label((hu < air_hu) & body)
    mask = np.zeros(hu.shape, dtype=bool)
    if n == 0:
        return mask
    sizes = np.bincount(air.ravel())
    below = np.bincount(air[hu < gas_hu], minlength=n + 1)
    for i in range(1, n + 1):
        if sizes[i] >= 500 and 2 * below[i] <= sizes[i]:  # >= ~2.5 cm2 at 0.7 mm pixels
            mask |= air == i
    return ndi.binary_fill_holes(ndi.binary_closing(mask, iterations=5))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ctedge.benchmarks.maps")
    sub = parser.add_subparsers(dest="what", required=True)
    cost = sub.add_parser("cost")
    cost.add_argument("with_maps", type=Path)
    cost.add_argument("plain", type=Path)
    cost.add_argument("--backend", default="onnxruntime")
    cost.add_argument("--rounds", type=int, default=6)
    rep = sub.add_parser("report")
    rep.add_argument("study", type=Path)
    rep.add_argument("model", type=Path)
    loc = sub.add_parser("localisation")
    loc.add_argument("study", type=Path)
    loc.add_argument("model", type=Path)
    loc.add_argument("labels", type=Path)
    loc.add_argument("row", type=int)
    loc.add_argument("--class-name", default="covid19")
    args = parser.parse_args(argv)
    if args.what == "cost":
        out = maps_cost(args.with_maps, args.plain, args.backend, rounds=args.rounds)
    elif args.what == "report":
        out = report_time(args.study, args.model)
    else:
        labels = np.load(args.labels)[args.row]
        out = map_mass_in_lungs(args.study, args.model, labels, args.class_name)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
