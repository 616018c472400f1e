"""The training loop: two-phase optimiser, early stopping, checkpoints every epoch, resume.

Writes into `out_dir`:
    epochs.jsonl   one JSON object per epoch (losses, accuracies, optimiser, lr, seconds, img/s)
    last.pt        everything needed for `--resume` (model, optimiser, counters, RNG state)
    best.pt        the ctedge checkpoint (docs/engines.md) of the best validation epoch:
                   highest validation accuracy, ties broken by lower validation loss
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ctedge.errors import DataError
from ctedge.io import atomic_path
from ctedge.preprocess import Preprocessing

from .averaging import WeightAverage
from .config import TrainConfig
from .dataset import SliceSet
from .weights import apply_initial_state, initial_state, set_train_mode, set_trainable

LOG_NAME, LAST_NAME, BEST_NAME = "epochs.jsonl", "last.pt", "best.pt"


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    best_checkpoint: Path
    best_epoch: int
    best_val_accuracy: float
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.mean([h["seconds"] for h in self.history])) if self.history else 0.0


def resolve_precision(precision: str, device: str) -> str:
    """"auto" -> bf16 on CPUs with native BF16 (AVX-512 BF16/AMX), fp16 on CUDA, else fp32."""
    import torch

    if precision != "auto":
        return precision
    if device == "cuda":
        return "fp16"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return "bf16" if native else "fp32"


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights N / (K * n_c), so each class contributes equally to the loss."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    if (counts == 0).any():
        missing = [i for i in range(n_classes) if counts[i] == 0]
        raise DataError(f"class index(es) {missing} have no training images; add images or "
                        "drop the class")
    return (counts.sum() / (n_classes * counts)).astype(np.float32)


def train(train_set: SliceSet, val_set: SliceSet, config: TrainConfig, out_dir: str | Path,
          negative_class: str, preprocessing: Preprocessing, resume: bool = False,
          extra_summary: dict | None = None, on_epoch=None) -> TrainResult:
    """Train a ResNet-50 on preprocessed slices; choose the epoch on `val_set` only.

    on_epoch: optional callable(net, run) -> dict of extra figures for the epoch's log record
        (e.g. AUC on a held-out source); `run` is a dict with device, amp_dtype, memory_format.
    """
    import torch

    from ctedge.export.model import build_resnet50, save_checkpoint

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = train_set.classes
    if len(train_set) == 0 or len(val_set) == 0:
        raise DataError("training and validation sets must both be non-empty")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision(config.precision, device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

    net = build_resnet50(len(classes))
    init = apply_initial_state(net, initial_state(config.weights))
    trainable = set_trainable(net, config.trainable)
    net = net.to(device, memory_format=memory_format)
    weights = class_weights(train_set.labels, len(classes)) if config.class_weighting else None
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=None if weights is None else torch.from_numpy(weights).to(device),
        label_smoothing=config.label_smoothing)
    eval_loss_fn = torch.nn.CrossEntropyLoss(
        weight=None if weights is None else torch.from_numpy(weights).to(device))
    scaler = torch.amp.GradScaler("cuda", enabled=(device == "cuda" and precision == "fp16"))

    def make_optimizer(phase: str):
        params = [p for p in net.parameters() if p.requires_grad]
        if phase == "adam":
            return torch.optim.Adam(params, lr=config.adam_lr, weight_decay=config.weight_decay)
        return torch.optim.SGD(params, lr=config.sgd_lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)

    state = {"epoch": 0, "phase": "adam", "best_acc": -1.0, "best_loss": math.inf,
             "best_select": (-1.0, -math.inf), "best_epoch": 0, "stale": 0, "loss_stale": 0,
             "history": []}
    phase_at_start = "adam" if config.switch != "epoch" or config.switch_epoch > 1 else "sgd"
    state["phase"] = phase_at_start
    optimizer = make_optimizer(state["phase"])
    generator = torch.Generator().manual_seed(config.seed)
    average = None
    last_path = out_dir / LAST_NAME
    if resume:
        if not last_path.is_file():
            raise DataError(f"{last_path}: nothing to resume; train without --resume first")
        saved = torch.load(last_path, map_location="cpu", weights_only=False)
        net.load_state_dict(saved["model_state"])
        state = saved["state"]
        optimizer = make_optimizer(state["phase"])
        optimizer.load_state_dict(saved["optimizer_state"])
        generator.set_state(saved["generator_state"])
        torch.set_rng_state(saved["torch_rng"])
        if saved.get("average") is not None:
            average = WeightAverage.restore(net, saved["average"])

    summary = {
        "classes": list(classes), "negative_class": negative_class, "device": device,
        "precision": precision, "config": config.to_dict(), "initial_weights": init["loaded"],
        "trainable_parameters": len(trainable), "train_slices": len(train_set),
        "val_slices": len(val_set),
        "class_weights": None if weights is None else [float(w) for w in weights],
        **(extra_summary or {}),
    }
    inputs = torch.from_numpy(train_set.inputs)
    targets = torch.from_numpy(train_set.labels)
    sample_weights = None
    if config.sampling == "balanced":
        from .sources import balanced_weights

        sites = train_set.sites or ("",) * len(train_set)
        sample_weights = torch.from_numpy(balanced_weights(sites, train_set.labels))
    run_info = {"device": device, "amp_dtype": amp_dtype, "memory_format": memory_format}
    pp = preprocessing
    stopped_early = False
    log_path = out_dir / LOG_NAME
    if not resume and log_path.exists():
        log_path.unlink()

    while state["epoch"] < config.epochs:
        epoch = state["epoch"] + 1
        if (config.switch == "epoch" and state["phase"] == "adam"
                and epoch >= config.switch_epoch):
            state["phase"], state["stale"], state["loss_stale"] = "sgd", 0, 0
            optimizer = make_optimizer("sgd")
        start = time.perf_counter()
        set_train_mode(net, config.trainable, config.batchnorm)
        if sample_weights is None:
            order = torch.randperm(len(targets), generator=generator)
        else:
            order = torch.multinomial(sample_weights, config.epoch_size or len(targets),
                                      replacement=True, generator=generator)
        n_batches = len(order) // config.batch_size
        if len(order) % config.batch_size >= 2 or n_batches == 0:
            n_batches += 1  # keep a last partial batch unless it is a lone slice (BatchNorm)
        if config.max_steps:
            n_batches = min(n_batches, config.max_steps)
        total_loss, total_correct, seen = 0.0, 0, 0
        for step in range(n_batches):
            idx = order[step * config.batch_size:(step + 1) * config.batch_size]
            x = config.augmentation(inputs[idx], pp.mean, pp.std, generator)
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = targets[idx].to(device)
            with torch.autocast(device_type=device, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                logits = net(x)
                loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if config.average_from and epoch >= config.average_from:
                if average is None:
                    average = WeightAverage(net)
                else:
                    average.update(net)
            total_loss += float(loss.detach()) * len(y)
            total_correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            _progress(epoch, config.epochs, step + 1, n_batches, total_loss / seen)
        train_seconds = time.perf_counter() - start
        model = net if average is None else average.net
        val_loss, val_acc = evaluate_torch(model, val_set, device, amp_dtype, memory_format,
                                           eval_loss_fn)
        seconds = time.perf_counter() - start
        record = {
            "epoch": epoch, "optimizer": state["phase"],
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": total_loss / seen, "train_accuracy": total_correct / seen,
            "val_loss": val_loss, "val_accuracy": val_acc,
            "seconds": round(seconds, 2), "train_images_per_s": round(seen / train_seconds, 2),
            "averaged_steps": 0 if average is None else average.count,
        }
        if on_epoch is not None:
            record.update(on_epoch(model, run_info))
        improved_acc = val_acc > state["best_acc"]
        improved_loss = val_loss < state["best_loss"]
        state["best_acc"] = max(state["best_acc"], val_acc)
        state["best_loss"] = min(state["best_loss"], val_loss)
        state["stale"] = 0 if (improved_acc or improved_loss) else state["stale"] + 1
        state["loss_stale"] = 0 if improved_loss else state["loss_stale"] + 1
        select = (val_acc, -val_loss)
        is_best = tuple(select) > tuple(state["best_select"]) or config.keep == "last"
        if is_best:
            state["best_select"], state["best_epoch"] = select, epoch
        record["best"] = is_best
        state["history"].append(record)
        state["epoch"] = epoch
        _append_jsonl(log_path, record)
        _end_progress()
        training = {**summary, "best_epoch": state["best_epoch"], "epochs_run": epoch,
                    "best_val_accuracy": state["best_select"][0],
                    "best_val_loss": -state["best_select"][1]}
        if is_best:
            save_checkpoint(out_dir / BEST_NAME, model, classes, negative_class,
                            preprocessing=pp.to_dict(), thresholds=None, training=training)
        if (config.switch == "plateau" and state["phase"] == "adam"
                and state["loss_stale"] >= config.switch_patience):
            state["phase"], state["stale"], state["loss_stale"] = "sgd", 0, 0
            optimizer = make_optimizer("sgd")
        with atomic_path(last_path) as tmp:
            torch.save({"model_state": net.state_dict(), "state": state,
                        "optimizer_state": optimizer.state_dict(),
                        "generator_state": generator.get_state(),
                        "torch_rng": torch.get_rng_state(), "summary": training,
                        "average": None if average is None else average.state()}, tmp)
        if state["stale"] >= config.patience:
            stopped_early = True
            break

    history = state["history"]
    return TrainResult(out_dir, out_dir / BEST_NAME, state["best_epoch"],
                       float(state["best_select"][0]), float(-state["best_select"][1]),
                       state["epoch"], stopped_early, history, summary)


def evaluate_torch(net, data: SliceSet, device: str, amp_dtype, memory_format, loss_fn,
                   batch_size: int = 32) -> tuple[float, float]:
    """(mean loss, accuracy) of `net` on `data`, no augmentation, eval mode."""
    import torch

    net.eval()
    weight = loss_fn.weight
    total_loss, total_weight, correct = 0.0, 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            x = torch.from_numpy(data.inputs[i:i + batch_size]).to(device)
            x = x.contiguous(memory_format=memory_format)
            y = torch.from_numpy(data.labels[i:i + batch_size]).to(device)
            with torch.autocast(device_type=device, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                logits = net(x).float()
            # the weighted mean over the whole set, as CrossEntropyLoss(weight=...) defines it
            w = weight[y] if weight is not None else torch.ones(len(y), device=device)
            ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
            total_loss += float((ce * w).sum())
            total_weight += float(w.sum())
            correct += int((logits.argmax(1) == y).sum())
    return total_loss / total_weight, correct / len(data)


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:  # append-only log; one line per epoch
        f.write(json.dumps(record) + "\n")


def _progress(epoch, epochs, step, steps, loss) -> None:
    if sys.stderr.isatty():
        done = int(20 * step / steps)
        sys.stderr.write(f"\repoch {epoch}/{epochs} [{'#' * done}{'.' * (20 - done)}] "
                         f"{step}/{steps} loss {loss:.4f}")
        sys.stderr.flush()


def _end_progress() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\n")
