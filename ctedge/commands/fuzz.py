"""`ctedge fuzz`: run N seeded fuzz cases against DICOM ingest and report failure classes."""

from __future__ import annotations

import signal
import sys

import click

from .common import debug_option


@click.command()
@click.option("--cases", type=click.IntRange(0, 10_000_000), default=300, show_default=True,
              help="Single-file cases through read_study, read_hu, lung_field, prepare_slice.")
@click.option("--cli-cases", type=click.IntRange(0, 1_000_000), default=0, show_default=True,
              help="Whole-study cases through `ctedge classify` (a few seconds each).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Master seed: case i of seed s is always the same file.")
@click.option("--only", type=str, default=None,
              help="Replay only these case indices (comma-separated).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=20.0,
              show_default=True, help="Seconds one library case may take (a hang beyond).")
@click.option("--memory-mb", type=click.IntRange(256), default=1536, show_default=True,
              help="Address-space limit of the worker process (MB).")
@click.option("--shared-data", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Real data root (../shared/data) for COVID-CT-MD and JPEG 2000 seeds.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Copy each failing case (its folder and result) here.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the report as JSON here (atomically).")
@debug_option
def fuzz(cases, cli_cases, seed, only, timeout_s, memory_mb, shared_data, keep, out):
    """Fuzz DICOM ingest with mutated real and synthetic files; exit 1 on any failure."""
    import json
    from pathlib import Path

    from ..fuzz import CampaignConfig, run_campaign
    from ..io import atomic_write

    try:
        indices = tuple(int(i) for i in only.split(",")) if only else ()
    except ValueError:
        raise click.BadParameter("give case indices as comma-separated integers",
                                 param_hint="--only") from None
    config = CampaignConfig(cases=cases, cli_cases=cli_cases, seed=seed, timeout_s=timeout_s,
                            memory_mb=memory_mb, only=indices,
                            shared_data=Path(shared_data) if shared_data else None,
                            keep=Path(keep) if keep else None)

    def progress(done, total, report):
        if sys.stderr.isatty():
            sys.stderr.write(f"\rfuzz: {done}/{total}")
            sys.stderr.flush()
        if out and (done % 100 == 0 or done == total):  # the report so far, for long runs
            atomic_write(out, json.dumps({"done": done, "total": total, **report.to_dict()},
                                         indent=2) + "\n")

    # SIGTERM ends the run like Ctrl-C: workers stopped, temporary files removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_campaign(config, progress)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    if out:
        total = sum(report.outcomes.values())
        atomic_write(out, json.dumps({"done": total, "total": total, **report.to_dict()},
                                     indent=2) + "\n")
    click.echo(report.to_text(), nl=False)
    if not report:
        raise click.exceptions.Exit(1)
