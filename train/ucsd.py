"""The UCSD-AI4H COVID-CT manifest, built from the data set's own split and metadata files.

Classes are renamed for ctedge: CT_COVID -> `covid19`, CT_NonCOVID -> `non_covid` (normal lungs
and other diseases mixed; the negative class of the study rule). Patient ids come from
`Info/COVID-CT-MetaInfo.csv` ("Patient ID") and `Info/NonCOVID-CT-MetaInfo.csv`
("patient id"), prefixed with the class so the two id spaces cannot collide. The split is the
official one (`Data-split/{COVID,NonCOVID}/{train,val,test}CT_*.txt`), checked patient-disjoint.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ctedge.errors import DataError

from .manifest import Sample

DATASET = "ucsd-covid-ct"
CLASSES = ("non_covid", "covid19")
NEGATIVE_CLASS = "non_covid"
_SOURCES = {  # ctedge label: (image folder, split folder, metadata file, name col, patient col)
    "covid19": ("CT_COVID", "COVID", "COVID-CT-MetaInfo.csv", "File name", "Patient ID"),
    "non_covid": ("CT_NonCOVID", "NonCOVID", "NonCOVID-CT-MetaInfo.csv", "image name",
                  "patient id"),
}


def ucsd_manifest(data_root: str | Path) -> list[Sample]:
    """Samples of the whole data set with official splits; paths relative to `data_root`.

    data_root: the shared data folder that holds `ucsd-covid-ct/`.
    """
    base = Path(data_root) / DATASET
    if not base.is_dir():
        raise DataError(f"{base}: UCSD COVID-CT not found; pass the folder that holds "
                        f"{DATASET}/ as the data root")
    samples = []
    for label, (image_dir, split_dir, meta, name_col, patient_col) in _SOURCES.items():
        patients = _patients(base / "Info" / meta, name_col, patient_col)
        for split in ("train", "val", "test"):
            listing = base / "Data-split" / split_dir / f"{split}CT_{split_dir}.txt"
            for name in _lines(listing):
                if name not in patients:
                    raise DataError(f"{listing}: {name} has no patient id in {meta}")
                if not (base / "Images" / image_dir / name).is_file():
                    raise DataError(f"{listing}: {name} not found under Images/{image_dir}")
                samples.append(Sample(f"{DATASET}/Images/{image_dir}/{name}", label,
                                      f"{label}:{patients[name]}", split=split))
    _check_disjoint(samples)
    return samples


def _patients(path: Path, name_col: str, patient_col: str) -> dict[str, str]:
    # The COVID metadata has free-text captions with stray bytes; ids and names are ASCII.
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return {row[name_col].strip(): row[patient_col].strip() for row in csv.DictReader(f)}


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: official split file missing")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _check_disjoint(samples: list[Sample]) -> None:
    seen: dict[str, str] = {}
    for s in samples:
        if seen.setdefault(s.patient_id, s.split) != s.split:
            raise DataError(f"patient {s.patient_id} appears in both {seen[s.patient_id]} and "
                            f"{s.split}; the split is not patient-disjoint")
