"""`ctedge export`: a training checkpoint (or `new`, random weights) -> checked ONNX model."""

from __future__ import annotations

import click

from .common import debug_option


def _split_names(ctx, param, value):
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if len(names) < 2:
        raise click.BadParameter("give at least two comma-separated class names, e.g. "
                                 "normal,covid19")
    return names


@click.command()
@click.argument("checkpoint", metavar="CHECKPOINT_OR_NEW")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the .onnx file.")
@click.option("--classes", callback=_split_names,
              help="Comma-separated class names (output order); default: the checkpoint's, "
                   "or the paper's five for `new`.")
@click.option("--negative", "negative_class", help="The negative class (default: the first).")
@click.option("--size", type=click.IntRange(16, 2048), help="Input size in pixels (default 224).")
@click.option("--check-data", type=click.Path(exists=True),
              help="Slices (folder/CSV manifest) to compare PyTorch and ONNX Runtime on, "
                   "besides random inputs.")
@click.option("--check-size", default=16, show_default=True, type=click.IntRange(1, 4096),
              help="How many --check-data slices to use.")
@debug_option
def export(checkpoint, out, classes, negative_class, size, check_data, check_size):
    """Export CHECKPOINT_OR_NEW (a checkpoint file, or `new` for random weights) to ONNX.

    Needs the `train` extra (PyTorch). The file is written only if ONNX Runtime reproduces
    PyTorch (max |delta p| <= 1e-4, same top class). The ONNX carries the class-activation
    maps as a second output. Given a ctedge .onnx instead, writes a copy of it with that
    output added (no PyTorch needed; for models exported before maps existed).
    """
    from pathlib import Path

    if checkpoint.endswith(".onnx"):
        from ctedge.export.cam import add_cam_file

        info = add_cam_file(checkpoint, out)
        click.echo(f"wrote {out}: {checkpoint} plus its class-activation maps output "
                   f"'{info.cam['output']}'")
        return

    from ctedge.export.model import load_checkpoint, require_torch
    from ctedge.export.onnx_export import export_onnx, model_info_for

    require_torch()
    ck_path = None if checkpoint == "new" else Path(checkpoint)
    ck = load_checkpoint(ck_path) if ck_path else None
    info = model_info_for(ck, classes, negative_class, size)
    real = None
    if check_data:
        from ctedge.export.slices import discover, load_inputs, stratified

        refs = stratified(discover(check_data), check_size)
        real = load_inputs(refs, info.preprocessing)
    result = export_onnx(ck, out, info, check_inputs=real)
    weights = "random weights (plumbing only)" if ck_path is None else str(ck_path)
    click.echo(f"wrote {result.path}: {len(result.info.classes)} classes "
               f"({','.join(result.info.classes)}), {weights}")
    click.echo(f"checked on {result.check.n_inputs} inputs: max |delta p| "
               f"{result.check.max_abs_diff:.1e}, top-class mismatches "
               f"{result.check.argmax_mismatches}")
