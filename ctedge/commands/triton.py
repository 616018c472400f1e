"""`ctedge export-triton` and the Triton options of `classify` (--url, --protocol, ...)."""

from __future__ import annotations

import contextlib

import click

from .common import debug_option


def triton_options(command):
    """--url, --protocol, --triton-model, --triton-timeout for a command that infers."""
    for option in reversed([
        click.option("--url", "triton_url", default=None, metavar="HOST:PORT",
                     help="Triton server for --backend triton."),
        click.option("--protocol", "triton_protocol", type=click.Choice(["http", "grpc"]),
                     default="http", show_default=True, help="Protocol for --backend triton."),
        click.option("--triton-model", default="ctedge", show_default=True,
                     help="Model name on the Triton server."),
        click.option("--triton-timeout", type=click.FloatRange(0.1, 3600), default=30.0,
                     show_default=True, help="Seconds per Triton call (retried 3 times)."),
    ]):
        command = option(command)
    return command


@contextlib.contextmanager
def open_triton(backend: str, model, options: dict):
    """The opened TritonBackend for --backend triton (closed afterwards), else None."""
    url = options.get("triton_url")
    if backend != "triton":
        if url:
            raise click.BadParameter("--url is only used with --backend triton", param_hint="--url")
        yield None
        return
    if not url:
        raise click.BadParameter("--backend triton needs --url HOST:PORT", param_hint="--url")
    from ..artifact import default_model_path
    from ..backends import open_backend
    from ..backends.triton import TritonConfig

    try:
        TritonConfig(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from exc
    remote = open_backend(model or default_model_path(), "triton", url=url,
                          protocol=options["triton_protocol"],
                          model_name=options["triton_model"],
                          timeout_s=options["triton_timeout"])
    try:
        yield remote
    finally:
        remote.close()


@click.command("export-triton")
@click.argument("model", type=click.Path(exists=True, path_type=str))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Model repository folder (created if missing; NAME/ must not exist).")
@click.option("--name", default="ctedge", show_default=True, help="Model name on the server.")
@click.option("--max-batch", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="max_batch_size; the dynamic batcher fills batches up to it.")
@click.option("--queue-delay-us", type=click.IntRange(0, 10_000_000), default=2000,
              show_default=True, help="Longest wait to fill a batch, microseconds.")
@click.option("--instances", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Model instances per device.")
@click.option("--device", type=click.Choice(["auto", "gpu", "cpu"]), default="auto",
              show_default=True, help="Instance kind (auto: GPU for ONNX/TensorRT, CPU for "
                                      "--python-backend).")
@click.option("--python-backend", is_flag=True,
              help="Serve through ctedge's own backends in Triton's Python backend (model.py), "
                   "for servers without the ONNX Runtime/TensorRT backend.")
@debug_option
def export_triton(model, out, name, max_batch, queue_delay_us, instances, device,
                  python_backend):
    """Export MODEL (a ctedge .onnx or a build-engine folder) as a Triton model repository."""
    from ..triton.repository import RepositoryConfig, export_repository

    try:
        config = RepositoryConfig(name=name, max_batch=max_batch, queue_delay_us=queue_delay_us,
                                  instances=instances, device=device,
                                  python_backend=python_backend)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    done = export_repository(model, out, config)
    click.echo(f"wrote {done.model_dir} ({done.platform}, max_batch_size {max_batch}); serve it "
               f"with: tritonserver --model-repository={done.repository}")
