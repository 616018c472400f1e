"""`ctedge` command line. Each command lives in `ctedge/commands/` and stays thin:
parse options, build a config, call one library function, print.

Exit codes: 0 done, 2 bad input (one line on stderr), 1 internal error.
`--debug` on any command shows the traceback instead.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .commands import COMMANDS
from .errors import CtedgeError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ctedge")
def cli():
    """Scanner-side lung CT triage. Decision support only, not a medical device."""


for command in COMMANDS:
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    privacy = sys.modules.get("ctedge.dicom.privacy")  # loaded by an earlier call in-process
    if privacy is not None:
        privacy.forget_known()  # error lines redact this command's studies, not earlier ones
    try:
        cli.main(args=argv, prog_name="ctedge", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("ctedge: aborted", err=True)
        return 130
    except click.ClickException as exc:  # usage errors and click.BadParameter
        exc.show()
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except CtedgeError as exc:
        if debug:
            raise
        click.echo(f"ctedge: error: {_redact(str(exc))}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("ctedge: interrupted", err=True)
        return 130
    except Exception as exc:
        if debug:
            raise
        click.echo(f"ctedge: internal error: {type(exc).__name__}: {_redact(str(exc))} "
                   "(run again with --debug for the traceback)", err=True)
        return 1
    return 0


def _redact(text: str) -> str:
    """Error lines name no patient: remove every identifier read in this process."""
    from .dicom.privacy import redact_known

    return redact_known(text)


if __name__ == "__main__":
    sys.exit(main())
