"""Leave-one-source-out: train on every source but one, test on the one left out.

Each source's shortcuts (crop, window, resolution, compression) let a model score well within
a source and fail on the next hospital. This protocol measures exactly that failure: the
matrix holds, per held-out source and epoch, the slice AUC of the positive class. The recipe
and the number of epochs are chosen by the worst held-out source (max over epochs of the
min over sources), and the shipped model is then trained on all sources for that many epochs.

Test partitions (the `test` split of every source) never enter training, in any fold, so the
shipped model's test figures stay clean. The held-out AUCs drive the choice of epoch, so the
figure at the chosen epoch is optimistic by that one choice; the matrix says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctedge.errors import DataError
from ctedge.io import atomic_write
from ctedge.metrics import auc

from .config import TrainConfig
from .dataset import SliceSet, subset
from .stats import patient_bootstrap

TRAIN_SPLITS = ("train", "val")


@dataclass(frozen=True)
class Fold:
    """Which slices train and which are held out when `held_out` is left out."""

    held_out: str
    train: np.ndarray  # bool mask over the slices
    test: np.ndarray  # bool mask over the slices


def folds(sites, splits) -> list[Fold]:
    """One fold per source: train on the other sources' train/val slices, test on all of it."""
    sites, splits = np.asarray(sites), np.asarray(splits)
    sources = sorted(set(sites.tolist()))
    if len(sources) < 2:
        raise DataError(f"leave-one-source-out needs at least two sources, got {sources}")
    return [Fold(s, (sites != s) & np.isin(splits, TRAIN_SPLITS), sites == s) for s in sources]


def stratified_cap(labels: np.ndarray, cap: int, seed: int = 0) -> np.ndarray:
    """Indices of at most `cap` slices, keeping the class proportions (sorted)."""
    labels = np.asarray(labels)
    if len(labels) <= cap:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = max(1, round(cap * len(idx) / len(labels)))
        keep.append(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))


def predict_torch(net, data: SliceSet, run: dict, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities (N, C) of `net` on `data`, eval mode, no augmentation."""
    import torch

    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            x = torch.from_numpy(data.inputs[i:i + batch_size]).to(run["device"])
            x = x.contiguous(memory_format=run["memory_format"])
            with torch.autocast(device_type=run["device"],
                                dtype=run["amp_dtype"] or torch.float32,
                                enabled=run["amp_dtype"] is not None):
                out.append(torch.softmax(net(x).float(), dim=1).cpu().numpy())
    return np.concatenate(out)


def held_out_hook(held: SliceSet, positive: int, out_dir: Path, epochs_done: int = 0):
    """An `on_epoch` hook: AUC of class `positive` on `held`; keeps each epoch's scores."""
    truth = held.labels == positive
    out_dir.mkdir(parents=True, exist_ok=True)
    epoch = [epochs_done]

    def hook(net, run) -> dict:
        epoch[0] += 1
        scores = predict_torch(net, held, run)[:, positive]
        np.save(out_dir / f"held-out-scores-{epoch[0]:03d}.npy", scores.astype(np.float32))
        return {"held_out_auc": auc(truth, scores)}

    return hook


def run_loso(data: SliceSet, splits, config: TrainConfig, out_dir: str | Path,
             negative_class: str, positive_class: str, preprocessing, max_held_out: int = 600,
             resume: bool = False, only: tuple[str, ...] = ()) -> dict:
    """Train one model per held-out source; write and return the matrix (`loso.json`)."""
    from .loop import train

    out_dir = Path(out_dir)
    positive = data.classes.index(positive_class)
    for fold in folds(data.sites, splits):
        if only and fold.held_out not in only:
            continue
        held = subset(data, fold.test)
        held = subset(held, np.isin(np.arange(len(held)),
                                    stratified_cap(held.labels, max_held_out, config.seed)))
        fold_dir = out_dir / f"held-out-{fold.held_out}"
        log = fold_dir / "epochs.jsonl"
        done = len(log.read_text().splitlines()) if resume and log.is_file() else 0
        if done >= config.epochs:
            continue
        hook = held_out_hook(held, positive, fold_dir, done)
        np.save(fold_dir / "held-out-positive.npy", held.labels == positive)
        (fold_dir / "held-out-patients.json").write_text(json.dumps(list(held.patients)))
        train(subset(data, fold.train), held, config, fold_dir, negative_class, preprocessing,
              resume=resume and (fold_dir / "last.pt").is_file(),
              extra_summary={"held_out": fold.held_out}, on_epoch=hook)
    return summarise(out_dir)


def summarise(out_dir: str | Path, n_resamples: int = 1000) -> dict:
    """The matrix from the fold folders: per-epoch held-out AUCs, the chosen epoch (best worst
    source) and patient-level 95% bootstrap intervals at that epoch."""
    out_dir = Path(out_dir)
    curves = {}
    for fold_dir in sorted(out_dir.glob("held-out-*")):
        log = fold_dir / "epochs.jsonl"
        if not log.is_file():
            continue
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        curves[fold_dir.name.removeprefix("held-out-")] = [r["held_out_auc"] for r in records]
    if not curves:
        raise DataError(f"{out_dir}: no leave-one-source-out folds found")
    n = min(len(c) for c in curves.values())
    worst = [min(c[e] for c in curves.values()) for e in range(n)]
    chosen = int(np.argmax(worst)) + 1
    matrix = {}
    for source in curves:
        fold_dir = out_dir / f"held-out-{source}"
        positive = np.load(fold_dir / "held-out-positive.npy")
        patients = json.loads((fold_dir / "held-out-patients.json").read_text())
        scores = np.load(fold_dir / f"held-out-scores-{chosen:03d}.npy")
        ci = patient_bootstrap(patients, lambda idx, s=scores, p=positive: {
            "auc": auc(p[idx], s[idx])}, n_resamples=n_resamples)["auc"]
        matrix[source] = {"auc_by_epoch": [round(a, 4) for a in curves[source]],
                          "auc_at_chosen_epoch": ci.to_dict(),
                          "slices": int(len(positive)), "positives": int(positive.sum()),
                          "patients": len(set(patients))}
    doc = {"chosen_epoch": chosen, "worst_source_auc_by_epoch": [round(w, 4) for w in worst],
           "held_out": matrix,
           "note": "the chosen epoch maximises the worst held-out AUC, so these held-out "
                   "figures are optimistic by that one choice; 95% intervals resample patients "
                   "(SARS-CoV-2: blocks of 20 consecutive files)"}
    atomic_write(out_dir / "loso.json", json.dumps(doc, indent=2) + "\n")
    return doc


def matrix_text(doc: dict) -> str:
    """The matrix as a Markdown table."""
    lines = ["| held-out source | slices (pos) | AUC at chosen epoch (95% CI) | AUC by epoch |",
             "|---|---|---|---|"]
    for source, m in doc["held_out"].items():
        ci = m["auc_at_chosen_epoch"]
        lines.append(f"| {source} | {m['slices']} ({m['positives']}) | {ci['estimate']:.3f} "
                     f"({ci['low']:.3f}-{ci['high']:.3f}) | "
                     f"{' '.join(f'{a:.2f}' for a in m['auc_by_epoch'])} |")
    lines.append(f"\nChosen epoch: {doc['chosen_epoch']} (worst held-out AUC by epoch: "
                 f"{' '.join(f'{a:.2f}' for a in doc['worst_source_auc_by_epoch'])}).")
    return "\n".join(lines)
