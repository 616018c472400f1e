"""The CLI's commands, one module each. Modules import nothing heavy at import time."""

from .classify import classify
from .common import debug_option  # noqa: F401  (re-exported for command modules)

COMMANDS = [classify]
