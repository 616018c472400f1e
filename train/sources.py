"""Several data sources in one manifest: UCSD COVID-CT, SARS-CoV-2 CT and DICOM studies.

Manifest CSV columns: `path,label,patient_id,source,split[,slice_labels,slice_labels_row]`.
A row's `path` is an image (PNG/JPG) or a DICOM study folder, relative to the data root
(`../shared/data`); `source` names where it comes from, which is the unit of the
leave-one-source-out protocol (`ctedge.train.loso`). Every source goes through the runtime's one
preprocessing (`Preprocessing.from_image` for images, the deployed slice path for studies).

SARS-CoV-2 CT publishes no patient ids. Its files (`Covid (N).jpg`, `Non-Covid (N).jpg`) run
patient by patient, so slices are grouped into blocks of consecutive numbers (the pseudo-patients
of the bootstrap) and split by contiguous ranges of blocks: the lowest numbers train, the next
validate, the highest test. A random split would put slices of one patient on both sides.
At most the one or two patients that straddle a range boundary can leak; nothing else can.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctedge.errors import DataError
from ctedge.io import atomic_write

from .dataset import SliceSet, concat_slices, load_slices
from .manifest import Sample

COLUMNS = ("path", "label", "patient_id", "source", "split", "slice_labels", "slice_labels_row")
SARSCOV2_FOLDERS = {"COVID": "covid19", "non-COVID": "non_covid"}
_NUMBER = re.compile(r"\((\d+)\)")


@dataclass(frozen=True)
class SourceRow:
    """One manifest row: an image or a DICOM study of one source."""

    path: str
    label: str
    patient_id: str
    source: str
    split: str
    slice_labels: str = ""
    slice_labels_row: int | None = None

    @property
    def is_study(self) -> bool:
        return not Path(self.path).suffix


def sarscov2_rows(root: str | Path, block: int = 20, val_fraction: float = 0.1,
                  test_fraction: float = 0.2) -> list[SourceRow]:
    """SARS-CoV-2 CT rows, split by contiguous blocks of file numbers (see the module doc)."""
    root = Path(root)
    rows = []
    for folder, label in SARSCOV2_FOLDERS.items():
        files = sorted((root / folder).glob("*.jpg"), key=_file_number)
        if not files:
            raise DataError(f"{root / folder}: no .jpg slices; is this the SARS-CoV-2 CT folder?")
        n_blocks = -(-len(files) // block)
        n_test = max(1, round(n_blocks * test_fraction))
        n_val = max(1, round(n_blocks * val_fraction))
        for i, f in enumerate(files):
            b = i // block
            split = ("test" if b >= n_blocks - n_test else
                     "val" if b >= n_blocks - n_test - n_val else "train")
            rows.append(SourceRow(f"{root.name}/{folder}/{f.name}", label,
                                  f"sarscov2-{folder}-{b:03d}", "sarscov2", split))
    return rows


def _file_number(path: Path) -> int:
    m = _NUMBER.search(path.name)
    if not m:
        raise DataError(f"{path}: expected a file name like 'Covid (12).jpg'")
    return int(m.group(1))


def ucsd_rows(manifest: str | Path) -> list[SourceRow]:
    """The UCSD COVID-CT image manifest (official split) as source rows."""
    from .manifest import read_manifest

    return [SourceRow(s.path, s.label, s.patient_id, "ucsd", s.split)
            for s in read_manifest(manifest)]


def study_rows(manifest: str | Path, label_map: dict[str, str]) -> list[SourceRow]:
    """A DICOM study manifest as source rows; every study trains (three studies cannot be split)."""
    from .studies import read_study_manifest

    return [SourceRow(c.path, label_map.get(c.label, c.label), c.patient_id, "covid-ct-md",
                      "train", c.slice_labels, c.slice_labels_row)
            for c in read_study_manifest(manifest)]


def write_source_manifest(path: str | Path, rows: list[SourceRow]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([r.path, r.label, r.patient_id, r.source, r.split, r.slice_labels,
                         "" if r.slice_labels_row is None else r.slice_labels_row])
    atomic_write(path, buf.getvalue())


def read_source_manifest(path: str | Path) -> list[SourceRow]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: source manifest not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS[:5]) - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}; expected "
                            f"{','.join(COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            r = (row.get("slice_labels_row") or "").strip()
            try:
                rows.append(SourceRow(row["path"].strip(), row["label"].strip(),
                                      row["patient_id"].strip(), row["source"].strip(),
                                      row["split"].strip(), (row.get("slice_labels") or "").strip(),
                                      int(r) if r else None))
            except ValueError as exc:
                raise DataError(f"{path}:{line}: bad row ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def load_sources(rows: list[SourceRow], root: str | Path, classes: tuple[str, ...],
                 preprocessing, negative_class: str) -> tuple[SliceSet, np.ndarray]:
    """All rows preprocessed into one SliceSet (`sites` = source) and each slice's split."""
    from .studies import StudyCase, load_study_slices

    root = Path(root)
    parts, splits = [], []
    images = [r for r in rows if not r.is_study]
    studies = [r for r in rows if r.is_study]
    for source in sorted({r.source for r in images}):
        mine = [r for r in images if r.source == source]
        samples = [Sample(r.path, r.label, r.patient_id, source, r.split) for r in mine]
        parts.append(load_slices(samples, root, classes, preprocessing))
        splits += [r.split for r in mine]
    for r in studies:
        case = StudyCase(r.path, r.label, r.patient_id, r.source, r.slice_labels,
                         r.slice_labels_row, r.split)
        part = load_study_slices([case], root, classes, preprocessing,
                                 negative_class=negative_class)
        parts.append(part)
        splits += [r.split] * len(part)
    return concat_slices(parts), np.array(splits)


def balanced_weights(sources, labels) -> np.ndarray:
    """Sampling weights that give every (source, class) pair present the same total weight."""
    keys = list(zip(sources, np.asarray(labels).tolist(), strict=True))
    counts: dict = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    w = np.array([1.0 / counts[k] for k in keys])
    return w / w.sum()


DICOM_LABELS = {"cap": "non_covid", "normal": "non_covid"}


def build_covid_manifest(data_root: str | Path, manifests: str | Path) -> list[SourceRow]:
    """The repo's binary COVID-19 manifest: UCSD (official split), SARS-CoV-2 (block split) and
    the three COVID-CT-MD studies (CAP and normal are not COVID-19)."""
    manifests = Path(manifests)
    return (ucsd_rows(manifests / "ucsd-covid-ct.csv")
            + sarscov2_rows(Path(data_root) / "sarscov2-ct")
            + study_rows(manifests / "covid-ct-md.csv", DICOM_LABELS))


def load_cached(manifest: str | Path, root: str | Path, classes: tuple[str, ...], preprocessing,
                negative_class: str, cache_dir: str | Path | None = None
                ) -> tuple[SliceSet, np.ndarray]:
    """`load_sources` of a manifest, kept as an .npz under `cache_dir` (never in the repo),
    keyed by the manifest's bytes, the classes and the preprocessing."""
    import hashlib
    import json

    rows = read_source_manifest(manifest)
    if cache_dir is None:
        return load_sources(rows, root, classes, preprocessing, negative_class)
    key = hashlib.sha256(Path(manifest).read_bytes() + json.dumps(
        [list(classes), preprocessing.to_dict(), negative_class]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"slices-{key}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        data = SliceSet(z["inputs"], z["labels"], tuple(z["patients"].tolist()), tuple(classes),
                        tuple(z["paths"].tolist()), tuple(z["sites"].tolist()))
        return data, z["splits"]
    data, splits = load_sources(rows, root, classes, preprocessing, negative_class)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, inputs=data.inputs, labels=data.labels, patients=np.array(data.patients),
             paths=np.array(data.paths), sites=np.array(data.sites), splits=splits)
    tmp.replace(path)
    return data, splits


def is_source_manifest(path: str | Path) -> bool:
    """True for a CSV whose header has a `source` column."""
    path = Path(path)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    return "source" in [h.strip() for h in header]
