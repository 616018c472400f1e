"""Options and helpers shared by the commands."""

from __future__ import annotations

import click

debug_option = click.option(
    "--debug", is_flag=True, expose_value=False, is_eager=True,
    help="Show the full traceback on errors.",
)
