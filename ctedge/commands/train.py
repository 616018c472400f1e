"""`ctedge train` and `ctedge evaluate`: thin wrappers over ctedge.train (needs the train extra
for `train`; `evaluate` runs on ONNX Runtime and needs no torch)."""

from __future__ import annotations

import json
import sys

import click

from .common import debug_option


def _switch(value: str) -> tuple[str, int]:
    kind, _, number = value.partition(":")
    if kind == "never" and not number:
        return "never", 1
    if kind in ("epoch", "plateau") and number.isdigit() and int(number) >= 1:
        return kind, int(number)
    raise click.BadParameter(f"{value!r}; valid: epoch:N, plateau:P or never",
                             param_hint="--switch")


def _classes(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    names = tuple(c.strip() for c in value.split(",") if c.strip())
    if len(names) < 2:
        raise click.BadParameter("give at least two comma-separated class names",
                                 param_hint="--classes")
    return names


@click.command()
@click.argument("data")
@click.option("--data-root", default=None, help="Folder a manifest's relative paths start from "
              "(default: the manifest's folder).")
@click.option("--out", "out_dir", required=True, help="Output folder (checkpoints, epochs.jsonl).")
@click.option("--classes", default=None, help="Comma-separated class names in output order "
              "(default: sorted labels found).")
@click.option("--negative-class", default=None, help="Class meaning 'no disease' (default: "
              "normal if present, else the first class).")
@click.option("--split", "split_mode", type=click.Choice(["official", "random"]),
              default="official", show_default=True,
              help="official: the manifest's split column; random: repeated 3:1 patient splits.")
@click.option("--protocol", type=click.Choice(["split", "leave-one-source-out", "all-sources"]),
              default="split", show_default=True,
              help="With a source manifest (a `source` column): leave-one-source-out trains one "
                   "model per held-out source and prints the matrix; all-sources trains on the "
                   "train and val rows of every source (test rows never train).")
@click.option("--cache", "cache_dir", default=None, help="Folder for preprocessed slices of a "
              "source manifest (reused by later runs; never commit it).")
@click.option("--repeats", default=5, show_default=True, help="Random splits (seeds) to run.")
@click.option("--val-fraction", default=0.25, show_default=True)
@click.option("--weights", default="none", show_default=True,
              help="imagenet, astra (CT-pretrained, the astra extra), none, or a torchvision "
                   "ResNet-50 state_dict .pth.")
@click.option("--trainable", type=click.Choice(["paper", "top", "all"]), default="all",
              show_default=True)
@click.option("--sampling", type=click.Choice(["shuffle", "balanced"]), default="shuffle",
              show_default=True, help="balanced: every (source, class) pair weighs the same.")
@click.option("--epoch-size", default=0, help="Slices per epoch with balanced sampling.")
@click.option("--keep", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Checkpoint to keep as best.pt: best validation epoch, or the last.")
@click.option("--batchnorm", type=click.Choice(["train", "frozen"]), default="train",
              show_default=True,
              help="frozen: every BatchNorm keeps the initial weights' statistics (scale and "
                   "shift still train), so no training source sets the normalisation.")
@click.option("--average-from", default=0, show_default=True,
              help="Stochastic weight averaging: from this epoch on, validate, evaluate and save "
                   "the running mean of the weights over every step (0: off).")
@click.option("--epochs", default=50, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--adam-lr", default=1e-4, show_default=True)
@click.option("--sgd-lr", default=1e-3, show_default=True)
@click.option("--switch", "switch", default="plateau:5", show_default=True,
              help="Adam->SGD switch: epoch:N (first SGD epoch), plateau:P (val loss stale P "
                   "epochs) or never.")
@click.option("--patience", default=10, show_default=True,
              help="Early stop after this many epochs without val accuracy or loss improving.")
@click.option("--class-weighting/--no-class-weighting", default=True, show_default=True)
@click.option("--augment",
              type=click.Choice(["standard", "cross-source", "cross-source-jpeg",
                                 "cross-source-local", "none"]),
              default="standard", show_default=True,
              help="cross-source adds stronger zoom, gamma, noise and blur; cross-source-jpeg "
                   "also a JPEG round trip (quality 30-95) on half the slices; "
                   "cross-source-local a 1.5-2.5x zoom on a random part of half the slices.")
@click.option("--preprocessing", "preset", type=click.Choice(["lung", "ct-pretrained"]),
              default="lung", show_default=True,
              help="lung: W1500/L-600, ImageNet mean/std; ct-pretrained: HU -1000..200, no "
                   "mean/std, cropped to the body (for --weights astra).")
@click.option("--crop", type=click.Choice(["preset", "none", "body", "lungs"]), default="preset",
              show_default=True,
              help="Override the preset's crop (body: to the body; lungs: to the lung fields).")
@click.option("--intensity", type=click.Choice(["window", "equalize"]), default="window",
              show_default=True,
              help="equalize: histogram-equalise each cropped slice, so every source's window "
                   "and contrast look alike (also applied at inference).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              default="auto", show_default=True)
@click.option("--size", default=224, show_default=True, help="Input size in pixels.")
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", default=0, help="Torch CPU threads (0: default).")
@click.option("--max-steps", default=0, help="Cap steps per epoch (smoke tests).")
@click.option("--map-label", multiple=True, help="FROM=TO: map a data label to a class "
              "(repeatable), e.g. cap=non_covid.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@debug_option
def train(data, data_root, out_dir, classes, negative_class, split_mode, protocol, cache_dir,
          repeats, val_fraction, weights, trainable, sampling, epoch_size, keep, batchnorm,
          average_from, epochs, batch_size, adam_lr, sgd_lr, switch, patience, class_weighting,
          augment, preset, crop, intensity, precision, size, seed, threads, max_steps, map_label,
          resume):
    """Train a ResNet-50 slice classifier on DATA (a manifest .csv or a folder per class)."""
    from ctedge.preprocess import Preprocessing
    from ctedge.train.augment import Augmentation
    from ctedge.train.config import TrainConfig
    from ctedge.train.run import DataSource, make_splits, summarise_runs, train_runs

    kind, number = _switch(switch)
    try:
        config = TrainConfig(
            epochs=epochs, batch_size=batch_size, weights=weights, trainable=trainable,
            adam_lr=adam_lr, sgd_lr=sgd_lr, switch=kind,
            switch_epoch=number if kind == "epoch" else 25,
            switch_patience=number if kind == "plateau" else 5, patience=patience,
            class_weighting=class_weighting,
            augmentation={"standard": Augmentation, "none": Augmentation.none,
                          "cross-source": Augmentation.cross_source,
                          "cross-source-jpeg": lambda: Augmentation.cross_source(jpeg=0.5),
                          "cross-source-local": lambda: Augmentation.cross_source(local=0.5),
                          }[augment](),
            precision=precision, seed=seed, threads=threads, max_steps=max_steps,
            sampling=sampling, epoch_size=epoch_size, keep=keep,
            average_from=average_from, batchnorm=batchnorm)
        preprocessing = (Preprocessing.ct_pretrained(size) if preset == "ct-pretrained"
                         else Preprocessing(size=size))
        changes = {"intensity": intensity} | ({"crop": crop} if crop != "preset" else {})
        preprocessing = Preprocessing.from_dict({**preprocessing.to_dict(), **changes})
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if protocol != "split":
        from ctedge.train.multisource import train_sources

        doc = train_sources(data, data_root, protocol, config, out_dir, preprocessing,
                            _classes(classes), negative_class, cache_dir, resume)
        click.echo(doc)
        return
    source = DataSource.open(data, data_root, _classes(classes), negative_class,
                             _label_map(map_label))
    splits = make_splits(source, split_mode, repeats, val_fraction, seed)
    results = train_runs(source, splits, config, out_dir, preprocessing, resume=resume)
    click.echo(json.dumps(summarise_runs(results), indent=2))


def _label_map(values) -> dict[str, str]:
    out = {}
    for v in values:
        src, sep, dst = v.partition("=")
        if not sep or not src or not dst:
            raise click.BadParameter(f"{v!r}; use FROM=TO", param_hint="--map-label")
        out[src.strip()] = dst.strip()
    return out


@click.command()
@click.argument("model")
@click.argument("data")
@click.option("--data-root", default=None, help="Folder a manifest's relative paths start from "
              "(default: the manifest's folder).")
@click.option("--split", "split", type=click.Choice(["auto", "train", "val", "test", "all"]),
              default="auto", show_default=True,
              help="Manifest rows to use; auto = test when the manifest has splits, else all.")
@click.option("--map-label", multiple=True, help="FROM=TO: map a data label to a model class "
              "(repeatable), e.g. cap=non_covid.")
@click.option("--positive-class", default=None, help="Class of the one-vs-rest ROC "
              "(default covid19, else the first disease).")
@click.option("--choose-thresholds", is_flag=True, help="Choose the robust rule's thresholds on "
              "this data (validation only) and write them into the model.")
@click.option("--write-model", default=None, help="With --choose-thresholds: write the updated "
              "model here instead of in place.")
@click.option("--bootstrap", "n_resamples", default=2000, show_default=True,
              help="Patient-bootstrap resamples for the 95 %% CIs (0: none).")
@click.option("--seed", default=0, show_default=True)
@click.option("--training-log", default=None, help="epochs.jsonl from `ctedge train`, for the "
              "accuracy/loss curves.")
@click.option("--second-reader", default=None, help="CSV path,label[,score] of a second reader "
              "on the same cases: McNemar (accuracy) and DeLong (AUC).")
@click.option("--out", "out_dir", default=None, help="Folder for report.md, metrics.json, plots.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@debug_option
def evaluate(model, data, data_root, split, map_label, positive_class, choose_thresholds,
             write_model, n_resamples, seed, training_log, second_reader, out_dir, fmt):
    """Evaluate a ctedge ONNX MODEL on DATA (image manifest, class folder or study manifest)."""
    from ctedge.train import evaluation_cli as run

    label_map = _label_map(map_label)
    doc, text = run.evaluate_command(
        model, data, data_root=data_root, split=split, label_map=label_map,
        positive_class=positive_class, choose=choose_thresholds, write_model=write_model,
        n_resamples=n_resamples, seed=seed, training_log=training_log,
        second_reader=second_reader, out_dir=out_dir)
    click.echo(json.dumps(doc, indent=2, default=str) if fmt == "json" else text)
    sys.stdout.flush()
