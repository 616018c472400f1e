"""`ctedge bench`: accuracy parity, throughput, peers, per-study speed and reading time, as
JSON, Markdown and PNG plots. The harness lives in `ctedge.benchmarks` (imported on use)."""

from __future__ import annotations

import click

from .common import debug_option

SECTION_NAMES = ("accuracy", "throughput", "peers", "studies", "import_time", "reading_time")
PEER_NAMES = ("torch-fp32", "torch-bf16-cl", "torch-cuda-fp16-graph", "torch-cuda-bf16-graph",
              "ort-fp32", "openvino-fp32", "openvino-int8")


def _names(valid: tuple[str, ...], what: str):
    """A click callback: comma-separated names, each one of `valid`."""
    def parse(ctx, param, value):
        if value is None:
            return None
        names = [v.strip() for v in value.split(",") if v.strip()]
        bad = [n for n in names if n not in valid]
        if bad:
            raise click.BadParameter(f"unknown {what} {', '.join(bad)}; valid: "
                                     f"{', '.join(valid)}")
        return tuple(names)
    return parse


def _batches(ctx, param, value):
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give batch sizes like 1,8,32") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: batch sizes must be integers >= 1")
    return sizes


def _typed_command() -> str:
    """`ctedge bench` with the options given on the command line (for the report)."""
    ctx = click.get_current_context()
    parts = ["ctedge", "bench"]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is not click.core.ParameterSource.COMMANDLINE or not param.opts:
            continue
        value = ctx.params[param.name]
        flag = param.opts[0]
        if getattr(param, "is_flag", False):
            parts.append(flag)
        elif isinstance(value, tuple) and param.multiple:
            parts += [f"{flag} {v}" for v in value]
        else:
            text = ",".join(map(str, value)) if isinstance(value, tuple) else value
            parts.append(f"{flag} {text}")
    return " ".join(parts)


@click.command()
@click.option("--out", default="out/bench/{date}-{machine}-{profile}", show_default=True,
              help="Output folder; {date}, {machine} and {profile} are filled in. Use "
                   "benchmarks/results/{date}-{machine} to keep a run with the repo.")
@click.option("--quick", is_flag=True, help="CI smoke profile: few iterations, 16 labelled "
              "slices, batches 1,2; proves every path works, numbers are not for reading.")
@click.option("--model", "models", multiple=True, type=click.Path(path_type=str),
              help="ctedge model to measure (.onnx or engine folder); repeat for each precision. "
                   "Default: the default model and its sibling models in models/.")
@click.option("--engine", type=click.Path(path_type=str), default=None,
              help="The ctedge model peers are compared with (default: TensorRT engine, else "
                   "CPU INT8 engine folder, else FP32).")
@click.option("--sections", callback=_names(SECTION_NAMES, "section"), default=None,
              help=f"Comma-separated sections to run (default all: {','.join(SECTION_NAMES)}).")
@click.option("--skip", callback=_names(SECTION_NAMES, "section"), default=None,
              help="Comma-separated sections to leave out.")
@click.option("--backend", "backends", multiple=True,
              type=click.Choice(["onnxruntime", "tensorrt"]),
              help="Only these ctedge backends; a named backend that is not installed fails.")
@click.option("--peers", default="auto", show_default=True,
              help="Comma-separated peers, 'auto' (all, missing ones reported) or 'none'. "
                   f"Named peers must be installed. Valid: {', '.join(PEER_NAMES)}.")
@click.option("--checkpoint", type=click.Path(path_type=str), default=None,
              help="PyTorch checkpoint for torch peers (without it they time random weights "
                   "of the same architecture: speed only).")
@click.option("--data", type=click.Path(path_type=str), default=None,
              help="Labelled set: manifest CSV or class folder (default: UCSD manifest).")
@click.option("--data-root", type=click.Path(path_type=str), default=None,
              help="Folder manifest paths are relative to (default ../shared/data).")
@click.option("--split", type=click.Choice(["test", "val", "train", "all"]), default="test",
              show_default=True, help="Manifest split for accuracy.")
@click.option("--limit", type=click.IntRange(0), default=None,
              help="At most this many labelled slices (class-stratified); 0 = all.")
@click.option("--calibration", type=click.Path(path_type=str), default=None,
              help="Calibration slices for OpenVINO INT8 (default: the labelled set's val split, "
                   "chosen as `ctedge export` chooses them).")
@click.option("--batch-sizes", callback=_batches, default=None,
              help="Throughput batch sizes (default 1,8,32; quick 1,2).")
@click.option("--peer-batch", type=click.IntRange(1), default=None,
              help="Batch size for peers (default 16; quick 2).")
@click.option("--rounds", type=click.IntRange(1), default=None,
              help="Alternating rounds per peer (default 4; quick 2).")
@click.option("--study", "studies", multiple=True, type=click.Path(path_type=str),
              help="DICOM study folder for the end-to-end section; repeat (default: the three "
                   "shared COVID-CT-MD studies).")
@click.option("--cold-runs", type=click.IntRange(1), default=None,
              help="Fresh-process runs per study (default 3; quick 1).")
@click.option("--warm-runs", type=click.IntRange(1), default=None,
              help="In-process runs per study (default 3; quick 1).")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="Intra-op threads for every runtime; 0 = each runtime's default.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@debug_option
def bench(out, quick, models, engine, sections, skip, backends, peers, checkpoint, data,
          data_root, split, limit, calibration, batch_sizes, peer_batch, rounds, studies,
          cold_runs, warm_runs, threads, no_plots):
    """Measure accuracy parity and speed against PyTorch, OpenVINO and reading time.

    Writes bench.json (versioned schema), report.md and PNG plots to --out.
    Decision support, not a medical device.
    """
    from ..benchmarks.config import PEERS, SECTIONS, BenchConfig
    from ..benchmarks.harness import run_bench, write_outputs
    from ..benchmarks.machine import describe_machine, machine_name

    chosen = sections or SECTIONS
    chosen = tuple(s for s in chosen if s not in (skip or ()))
    if not chosen:
        raise click.BadParameter("every section was skipped; nothing to run", param_hint="--skip")
    if peers == "auto":
        peer_names, requested = PEERS, False
    elif peers == "none":
        peer_names, requested = (), True
    else:
        peer_names, requested = _names(PEERS, "peer")(None, None, peers), True
    overrides = {
        "sections": chosen, "models": tuple(models), "engine": engine, "backends": backends,
        "peers": peer_names, "requested_peers": requested, "checkpoint": checkpoint,
        "split": split, "studies": tuple(studies) or None, "threads": threads,
        "plots": not no_plots, "data": data, "data_root": data_root, "limit": limit,
        "calibration": calibration, "batch_sizes": batch_sizes, "peer_batch": peer_batch,
        "peer_rounds": rounds, "cold_runs": cold_runs, "warm_runs": warm_runs,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    make = BenchConfig.quick if quick else BenchConfig.full
    try:
        config = make(**overrides)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None

    from datetime import date

    machine = machine_name(describe_machine())
    folder = out.format(date=date.today().isoformat(), machine=machine,
                        profile=config.profile)
    config = config.with_(out=folder)
    report = run_bench(config, log=lambda s: click.echo(s, err=True), command=_typed_command())
    written = write_outputs(report, config.out, plots=config.plots)
    for path in written:
        click.echo(f"wrote {path}")
    failed = {k: v["error"] for k, v in report["sections"].items() if "error" in v}
    for row in report["sections"].get("peers", {}).get("rows", []):
        if row["status"].startswith("error"):
            failed[f"peer {row['peer']}"] = row["status"]
    for row in report["sections"].get("studies", {}).get("results", []):
        if "error" in row:
            failed[f"study {row['study']}"] = row["error"]
    if failed:
        from ..errors import CtedgeError

        first = next(iter(failed.items()))
        raise CtedgeError(f"{len(failed)} part(s) failed ({', '.join(failed)}); first: "
                          f"{first[0]}: {first[1]} (the rest is in {config.out}/report.md)")
