"""From a data source to trained models: the library function behind `ctedge train`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctedge.errors import DataError
from ctedge.preprocess import Preprocessing

from .config import TrainConfig
from .dataset import load_slices
from .loop import TrainResult, train
from .manifest import Sample, read_manifest, scan_folder
from .splits import Split, official_split, repeated_patient_splits


@dataclass(frozen=True)
class DataSource:
    """Where slices come from: a manifest CSV (+ its data root) or a folder per class."""

    samples: tuple[Sample, ...]
    root: Path
    classes: tuple[str, ...]
    negative_class: str
    studies: dict | None = None  # sample path -> StudyCase, for a DICOM study manifest
    label_map: dict | None = None

    @classmethod
    def open(cls, data: str | Path, root: str | Path | None = None,
             classes: tuple[str, ...] | None = None, negative_class: str | None = None,
             label_map: dict[str, str] | None = None):
        from .studies import is_study_manifest, read_study_manifest

        data = Path(data)
        label_map = label_map or {}
        studies = None
        if data.is_dir():
            samples, base = scan_folder(data), data
        elif data.suffix.lower() == ".csv":
            base = Path(root) if root else data.parent
            if data.is_file() and is_study_manifest(data, base):
                cases = read_study_manifest(data)
                studies = {c.path: c for c in cases}
                samples = [Sample(c.path, c.label, c.patient_id, c.site, c.split) for c in cases]
            else:
                samples = read_manifest(data)
            samples = [Sample(s.path, label_map.get(s.label, s.label), s.patient_id, s.site,
                              s.split) for s in samples]
        else:
            raise DataError(f"{data}: expected a manifest .csv or a folder per class")
        found = tuple(sorted({s.label for s in samples}))
        classes = tuple(classes) if classes else found
        missing = sorted(set(found) - set(classes))
        if missing:
            raise DataError(f"labels {missing} are not in --classes {list(classes)}")
        negative = negative_class or ("normal" if "normal" in classes else classes[0])
        if negative not in classes:
            raise DataError(f"negative class {negative!r} is not one of {list(classes)}")
        return cls(tuple(samples), base, classes, negative, studies, label_map)

    def load(self, samples, preprocessing: Preprocessing):
        """Preprocessed slices of `samples` (images, or the used slices of DICOM studies)."""
        if self.studies is None:
            return load_slices(samples, self.root, self.classes, preprocessing)
        from .studies import load_study_slices

        cases = [self.studies[s.path] for s in samples]
        return load_study_slices(cases, self.root, self.classes, preprocessing,
                                 self.label_map, negative_class=self.negative_class)


def make_splits(source: DataSource, mode: str, repeats: int = 5, val_fraction: float = 0.25,
                seed: int = 0) -> list[Split]:
    """mode: "official" (the manifest's split column) or "random" (repeated patient splits)."""
    if mode == "official":
        return [official_split(list(source.samples))]
    if mode == "random":
        return repeated_patient_splits(list(source.samples), repeats, val_fraction, seed)
    raise ValueError(f"split mode must be official or random, got {mode!r}")


def train_runs(source: DataSource, splits: list[Split], config: TrainConfig, out_dir: str | Path,
               preprocessing: Preprocessing, resume: bool = False) -> list[TrainResult]:
    """Train one model per split (out_dir itself for one split, out_dir/seed-<k> for several)."""
    out_dir = Path(out_dir)
    results = []
    for split in splits:
        run_dir = out_dir if len(splits) == 1 else out_dir / f"seed-{split.seed}"
        train_set = source.load(split.train, preprocessing)
        val_set = source.load(split.val, preprocessing)
        seed = config.seed if split.seed is None else split.seed
        run_config = TrainConfig(**{**config.to_dict(), "seed": seed})
        results.append(train(train_set, val_set, run_config, run_dir, source.negative_class,
                             preprocessing, resume=resume,
                             extra_summary={"split": split.summary()}))
    return results


def summarise_runs(results: list[TrainResult]) -> dict:
    """Mean and sample standard deviation of the best validation figures over runs."""
    acc = np.array([r.best_val_accuracy for r in results])
    loss = np.array([r.best_val_loss for r in results])

    def spread(a):
        return float(a.std(ddof=1)) if len(a) > 1 else 0.0

    return {
        "runs": len(results),
        "val_accuracy_mean": float(acc.mean()), "val_accuracy_std": spread(acc),
        "val_loss_mean": float(loss.mean()), "val_loss_std": spread(loss),
        "seconds_per_epoch_mean": float(np.mean([r.seconds_per_epoch for r in results])),
        "per_run": [{"dir": str(r.out_dir), "best_epoch": r.best_epoch,
                     "val_accuracy": r.best_val_accuracy, "val_loss": r.best_val_loss,
                     "epochs_run": r.epochs_run} for r in results],
    }
