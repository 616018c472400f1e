"""Publish the reference model from a finished training run (a reproducible recipe).

    python -m ctedge.train.reference --run runs/all-sources \
        --manifest data/manifests/covid-multi-source.csv --out models/MODEL.onnx

Steps: load the validation slices (the `val` image rows of an image or source manifest) with the
checkpoint's preprocessing, publish `best.pt` as
a compact ONNX (FP16-stored weights, FP32 graph; checked on those slices against PyTorch), then
choose the robust rule's thresholds on the validation split and write them into the model. The
test split is not touched here; evaluate it once afterwards with `ctedge evaluate`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ctedge.preprocess import Preprocessing

from .dataset import load_slices
from .evaluation_cli import evaluate_command
from .manifest import read_manifest
from .publish import publish
from .sources import is_source_manifest, read_source_manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="training output folder (best.pt)")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument("--manifest", default="data/manifests/covid-multi-source.csv")
    parser.add_argument("--data-root", default="../shared/data")
    args = parser.parse_args(argv)

    from ctedge.export.model import load_checkpoint

    run = Path(args.run)
    ck = load_checkpoint(run / "best.pt")
    pp = Preprocessing.from_dict(dict(ck.preprocessing))
    manifest = Path(args.manifest)
    if is_source_manifest(manifest):  # its val image rows, as a plain image manifest
        from .manifest import Sample, write_manifest

        val = [Sample(r.path, r.label, r.patient_id, r.source, "val")
               for r in read_source_manifest(manifest) if r.split == "val" and not r.is_study]
        manifest = run / "val-images.csv"
        write_manifest(manifest, val)
    else:
        val = [s for s in read_manifest(manifest) if s.split == "val"]
    check = load_slices(val, args.data_root, ck.classes, pp).inputs
    history = [json.loads(x) for x in (run / "epochs.jsonl").read_text().splitlines()]
    published = publish(run / "best.pt", args.out, check, training_extra={
        "epochs_log": [{k: h[k] for k in ("epoch", "optimizer", "train_loss", "train_accuracy",
                                          "val_loss", "val_accuracy", "seconds")}
                       for h in history]})
    print(json.dumps({"published": published.to_dict()}, indent=2))
    doc, text = evaluate_command(args.out, manifest, data_root=args.data_root, split="val",
                                 choose=True, n_resamples=2000, training_log=run / "epochs.jsonl",
                                 out_dir=run / "eval-val")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
