"""`ctedge train --protocol leave-one-source-out|all-sources` on a source manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctedge.errors import DataError

from .config import TrainConfig
from .dataset import subset
from .loso import TRAIN_SPLITS, matrix_text, run_loso
from .sources import is_source_manifest, load_cached


def train_sources(manifest, data_root, protocol: str, config: TrainConfig, out_dir, preprocessing,
                  classes=None, negative_class=None, cache_dir=None, resume=False) -> str:
    """Run `protocol` on a source manifest; returns the text to print."""
    from .loop import train

    if not is_source_manifest(manifest):
        raise DataError(f"{manifest}: --protocol {protocol} needs a source manifest (columns "
                        "path,label,patient_id,source,split); see docs/training.md")
    classes = tuple(classes or ("covid19", "non_covid"))
    negative = negative_class or ("non_covid" if "non_covid" in classes else classes[-1])
    positive = next(c for c in classes if c != negative)
    root = Path(data_root) if data_root else Path(manifest).parent
    data, splits = load_cached(manifest, root, classes, preprocessing, negative, cache_dir)
    out_dir = Path(out_dir)
    if protocol == "leave-one-source-out":
        doc = run_loso(data, splits, config, out_dir, negative, positive, preprocessing,
                       resume=resume)
        return matrix_text(doc)
    if protocol != "all-sources":
        raise ValueError(f"unknown protocol {protocol!r}")
    val = splits == "val"
    if not val.any():
        raise DataError(f"{manifest}: no `val` rows to report validation figures on")
    resume = resume and (out_dir / "last.pt").is_file()
    result = train(subset(data, np.isin(splits, TRAIN_SPLITS)), subset(data, val), config,
                   out_dir, negative, preprocessing, resume=resume,
                   extra_summary={"protocol": "all-sources",
                                  "sources": sorted(set(data.sites))})
    return (f"trained on {int(np.isin(splits, TRAIN_SPLITS).sum())} slices of "
            f"{len(set(data.sites))} sources; checkpoint {result.best_checkpoint}")
