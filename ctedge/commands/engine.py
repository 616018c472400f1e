"""`ctedge build-engine`: FP16 / INT8 engines for CPU (ONNX Runtime or OpenVINO) or TensorRT,
gated."""

from __future__ import annotations

import click

from .common import debug_option

PRECISIONS = ("fp32", "fp16", "int8")
CPU_BACKENDS = ("auto", "onnxruntime", "openvino")  # = ctedge.export.cpu_engine.CPU_BACKENDS


def _batch(ctx, param, value):
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or not 1 <= sizes[0] <= sizes[1] <= sizes[2]:
        raise click.BadParameter("give min,opt,max batch sizes with 1 <= min <= opt <= max, "
                                 "e.g. 1,32,64")
    return sizes


@click.command("build-engine")
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--precision", type=click.Choice(PRECISIONS), help="Engine precision.")
@click.option("--int8", "int8_flag", is_flag=True, help="Short for --precision int8.")
@click.option("--target", type=click.Choice(["tensorrt", "cpu"]),
              help="Where the engine runs (default: tensorrt if TensorRT and a GPU are here, "
                   "else cpu).")
@click.option("--cpu-backend", type=click.Choice(CPU_BACKENDS), default="auto",
              show_default=True,
              help="Runtime that serves a --target cpu engine; auto times ONNX Runtime against "
                   "OpenVINO (when installed) at batch 16 and keeps the faster.")
@click.option("--calib", type=click.Path(exists=True),
              help="Calibration slices: PNG/JPG folder, CSV manifest (split=val rows) or DICOM "
                   "studies. Required for int8.")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]),
              default="percentile", show_default=True)
@click.option("--calib-size", type=click.IntRange(1), default=512, show_default=True,
              help="Calibration slices, stratified by class.")
@click.option("--parity-set", type=click.Path(exists=True),
              help="Parity slices (default: validation slices of --calib not used to calibrate).")
@click.option("--parity-size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--parity-threshold", type=click.FloatRange(0, 1, min_open=True),
              help="Minimum top-1 agreement with FP32 (default 0.99 int8, 0.999 fp16).")
@click.option("--fallback-margin", type=click.FloatRange(0, 1),
              help="CPU engines: re-run slices whose top-two probability gap is below this on "
                   "the FP32 model kept in the folder (default 0.1 for int8, else 0 = off).")
@click.option("--data-root", type=click.Path(exists=True, file_okay=False),
              help="Folder that relative manifest paths start from (default: the manifest's).")
@click.option("--batch", default="1,32,64", show_default=True, callback=_batch,
              help="TensorRT optimisation profile: min,opt,max batch.")
@click.option("--workspace", type=click.FloatRange(0, min_open=True), default=4.0,
              show_default=True, help="TensorRT workspace limit, GiB.")
@click.option("--timing-cache", type=click.Path(dir_okay=False),
              help="TensorRT timing cache file (read and updated).")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Calibration range cache (default ~/.cache/ctedge/calib or $CTEDGE_CACHE).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output folder (default engines/<model>-<precision>-<target>).")
@debug_option
def build_engine(model, precision, int8_flag, target, cpu_backend, calib, calib_method,
                 calib_size, parity_set, parity_size, parity_threshold, fallback_margin,
                 data_root, batch, workspace, timing_cache, cache_dir, out):
    """Build an FP16/INT8/FP32 engine from MODEL (an FP32 .onnx; default: the one in models/).

    The engine is kept only if it agrees with the FP32 model on the parity slices.
    """
    from pathlib import Path

    from ctedge.export.build import EngineConfig, default_target
    from ctedge.export.build import build_engine as build
    from ctedge.export.calibration import DEFAULT_CACHE, CalibrationConfig

    if int8_flag and precision not in (None, "int8"):
        raise click.BadParameter(f"--int8 contradicts --precision {precision}",
                                 param_hint="--int8")
    precision = "int8" if int8_flag else precision
    if precision is None:
        raise click.BadParameter("choose one of fp32, fp16, int8 (or pass --int8)",
                                 param_hint="--precision")
    target = target or ("cpu" if cpu_backend != "auto" else default_target())
    if cpu_backend != "auto" and target != "cpu":
        raise click.BadParameter(f"--cpu-backend {cpu_backend} applies to --target cpu only",
                                 param_hint="--cpu-backend")
    model_path = Path(model) if model else default_model()
    try:
        config = EngineConfig(
            model=model_path, precision=precision, target=target, cpu_backend=cpu_backend,
            out=out, calib=calib, calibration=CalibrationConfig(
                method=calib_method, size=calib_size, cache_dir=cache_dir or DEFAULT_CACHE),
            parity_set=parity_set, parity_size=parity_size, parity_threshold=parity_threshold,
            fallback_margin=fallback_margin, data_root=data_root, batch=batch,
            workspace_gib=workspace, timing_cache=timing_cache)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    result = build(config, log=click.echo)
    click.echo(f"wrote {result.folder}/ ({result.manifest.file}, {result.manifest.backend}, "
               f"{result.manifest.precision}); run it with: ctedge classify --model "
               f"{result.folder}")


def default_model():
    """The model `ctedge` ships (or $CTEDGE_MODEL)."""
    from ctedge.artifact import default_model_path

    return default_model_path()
