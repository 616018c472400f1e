"""`ctedge classify STUDY_DIR`: one diagnosis with per-slice evidence."""

from __future__ import annotations

import sys

import click

from .common import debug_option
from .triton import open_triton, triton_options

FORMATS = ("table", "json", "csv")
# = ctedge.backends.BACKENDS, spelled out so `import ctedge.cli` does not import numpy
# (tests/backends/test_openvino.py checks they agree).
BACKENDS = ("auto", "onnxruntime", "tensorrt", "openvino", "triton")


@click.command()
@click.argument("study_dir", type=click.Path(path_type=str))
@click.option("--model", type=click.Path(path_type=str), default=None,
              help="Model .onnx or engine (file or build-engine folder). Default: the repo's "
                   "reference model, or $CTEDGE_MODEL.")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="Inference backend; auto picks by model type (an engine folder: the one "
                   "its manifest names).")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Slices per inference batch.")
@click.option("--rule", type=click.Choice(["robust", "paper"]), default="robust",
              show_default=True, help="Study decision rule (see README).")
@click.option("--series", "series_uid", default=None,
              help="SeriesInstanceUID (or fallback key) to classify instead of the default choice.")
@click.option("--workers", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Decode processes; 0 = one per CPU core.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the result here (atomically) instead of stdout.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=str),
              default=None, help="Also write report.html and summary.png (decision, evidence, "
                                 "z profile, strongest slices with class-activation maps) here.")
@triton_options
@debug_option
def classify(study_dir, model, backend, batch_size, rule, series_uid, workers, fmt, out,
             report_dir, **triton):
    """Classify the CT series of STUDY_DIR (a folder of DICOM files, searched recursively).

    Decision support only, not a medical device.
    """
    from ..io import atomic_write
    from ..pipeline import ClassifyConfig, classify_study

    config = ClassifyConfig(model=model, backend=backend, batch_size=batch_size, rule=rule,
                            series_uid=series_uid, workers=workers, progress=sys.stderr.isatty(),
                            maps=report_dir is not None)
    with open_triton(backend, model, triton) as remote:  # None unless --backend triton
        result = classify_study(study_dir, config, backend=remote)
    if report_dir is not None:
        from ..report import write_report

        files = write_report(result, report_dir)
        maps = "with maps" if result.maps is not None else "maps unavailable for this model"
        click.echo(f"ctedge: report {files.html} and {files.summary} ({maps}; "
                   f"{files.seconds:.2f} s)", err=True)
    text = result.render(fmt)
    if out:
        atomic_write(out, text)
        d = result.decision
        click.echo(f"{d.label} ({d.rule} rule: {d.reason}); wrote {out}")
    else:
        click.echo(text, nl=False)
    if result.decision.label == "indeterminate":
        click.echo(f"ctedge: note: {result.study.root_display}: {result.decision.reason}; "
                   "is this a chest CT?", err=True)
