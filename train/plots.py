"""PNG plots (matplotlib, Agg backend, written atomically): training curves (the paper's
Figure 1 A-D: accuracy and loss vs epoch, train and validation), confusion matrices, ROC."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ctedge.errors import DataError
from ctedge.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on a scanner-side box or CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    plt = _pyplot()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def read_epoch_log(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: epoch log not found; pass the epochs.jsonl `ctedge train` wrote")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_training_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy (left) and loss (right) vs epoch for train and validation; the chosen epoch
    is marked with a dotted line and the Adam->SGD switch with a dashed one."""
    if not history:
        raise DataError("empty training history; nothing to plot")
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], label="validation")
        best = [h["epoch"] for h in history if h.get("best")]
        if best:
            ax.axvline(best[-1], color="grey", linestyle=":", label=f"chosen (epoch {best[-1]})")
        switch = next((h["epoch"] for h in history if h.get("optimizer") == "sgd"), None)
        if switch is not None and switch != epochs[0]:
            ax.axvline(switch - 0.5, color="grey", linestyle="--", label="Adam -> SGD")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_confusion(matrix, classes, path: str | Path, title: str = "") -> Path:
    """Counts with rows = true class, columns = predicted class."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 2))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=30, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if top and matrix[i, j] > top / 2 else "black")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_roc(curves: dict[str, tuple[list[float], list[float], float]], path: str | Path,
             title: str = "") -> Path:
    """curves: name -> (fpr, tpr, auc)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr, value) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {value:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    return _save(fig, path)
