"""Patient-disjoint splits.

Every split here keeps all slices of a patient on one side. The COVID-CT paper split images at
random, which puts neighbouring slices of one patient on both sides and inflates validation
accuracy; we never do that. The paper's protocol (random 3:1 train/validation by patient,
repeated with 5 seeds) is `repeated_patient_splits`; an official split is used as is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ctedge.errors import DataError

from .manifest import Sample


@dataclass(frozen=True)
class Split:
    """Train / validation / test samples of one run; `seed` is None for an official split."""

    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    test: tuple[Sample, ...] = ()
    seed: int | None = None

    def __post_init__(self):
        for name in ("train", "val", "test"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_patient_disjoint(self)

    def summary(self) -> dict:
        out = {"seed": self.seed}
        for name in ("train", "val", "test"):
            part = getattr(self, name)
            counts: dict[str, int] = defaultdict(int)
            for s in part:
                counts[s.label] += 1
            out[name] = {"slices": len(part), "patients": len({s.patient_id for s in part}),
                         "per_class": dict(sorted(counts.items()))}
        return out


def check_patient_disjoint(split: Split) -> None:
    owner: dict[str, str] = {}
    for name in ("train", "val", "test"):
        for s in getattr(split, name):
            if owner.setdefault(s.patient_id, name) != name:
                raise DataError(f"patient {s.patient_id} is in both {owner[s.patient_id]} and "
                                f"{name}; splits must be patient-disjoint")


def official_split(samples: list[Sample]) -> Split:
    """Use the manifest's own `split` column as is."""
    if not all(s.split for s in samples):
        raise DataError("some manifest rows have no split; give every row a split or use "
                        "--split random")
    parts = {name: [s for s in samples if s.split == name] for name in ("train", "val", "test")}
    if not parts["train"] or not parts["val"]:
        raise DataError("the manifest's split needs at least one train and one val row")
    return Split(parts["train"], parts["val"], parts["test"])


def patient_split(samples: list[Sample], val_fraction: float = 0.25, seed: int = 0) -> Split:
    """Random train/validation split by patient, stratified by each patient's majority label.

    val_fraction: share of patients (per class) that go to validation (0.25 = the paper's 3:1).
    Rows with split == "test" stay in the test set (never trained on, never used to choose).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    test = [s for s in samples if s.split == "test"]
    pool = [s for s in samples if s.split != "test"]
    by_patient: dict[str, list[Sample]] = defaultdict(list)
    for s in pool:
        by_patient[s.patient_id].append(s)
    by_label: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(by_patient):
        labels = [s.label for s in by_patient[pid]]
        by_label[max(sorted(set(labels)), key=labels.count)].append(pid)
    rng = np.random.default_rng(seed)
    val_patients: set[str] = set()
    for label in sorted(by_label):
        pids = by_label[label]
        order = rng.permutation(len(pids))
        n_val = max(1, round(val_fraction * len(pids))) if len(pids) > 1 else 0
        val_patients.update(pids[i] for i in order[:n_val])
    train = [s for s in pool if s.patient_id not in val_patients]
    val = [s for s in pool if s.patient_id in val_patients]
    if not train or not val:
        raise DataError("too few patients for a train/validation split; need at least two "
                        "per class")
    return Split(train, val, test, seed=seed)


def repeated_patient_splits(samples: list[Sample], repeats: int = 5, val_fraction: float = 0.25,
                            first_seed: int = 0) -> list[Split]:
    """The paper's protocol: `repeats` random patient splits with seeds first_seed, +1, ..."""
    return [patient_split(samples, val_fraction, first_seed + i) for i in range(repeats)]
