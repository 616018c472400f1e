"""`ctedge serve --config node.toml`: the DICOM node (receive, classify, send back)."""

from __future__ import annotations

import json

import click

from .common import debug_option


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=str),
              required=True, help="Node configuration (TOML; see docs/node.md).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Listen on this port instead of the config's.")
@click.option("--quiet-period", "quiet_period_s", type=click.FloatRange(min=0.01), default=None,
              help="Seconds without a new instance before a study counts as complete.")
@click.option("--status", "show_status", is_flag=True,
              help="Print the running (or last) node's status file and exit.")
@debug_option
def serve(config_path, port, quiet_period_s, show_status):
    """Run a DICOM node: receive studies by C-STORE, classify each once it is complete, and
    send the result to PACS as a DICOM SR. Stops cleanly on SIGTERM.

    Decision support only, not a medical device.
    """
    import logging
    import sys

    from ..node.config import load_config

    config = load_config(config_path, port=port, quiet_period_s=quiet_period_s)
    if show_status:
        from ..node.server import read_status

        click.echo(json.dumps(read_status(config.state_dir), indent=2))
        return
    from ..node.server import Node

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s ctedge-node %(levelname)s %(message)s")
    Node(config).start().run_until_signal()
