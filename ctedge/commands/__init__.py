"""The CLI's commands, one module each. Modules import nothing heavy at import time."""

from .bench import bench
from .classify import classify
from .common import debug_option  # noqa: F401  (re-exported for command modules)
from .export import export

COMMANDS = [classify, export]
COMMANDS.append(bench)
from .train import evaluate, train  # noqa: E402

COMMANDS += [train, evaluate]
from .engine import build_engine  # noqa: E402

COMMANDS.append(build_engine)
from .triton import export_triton  # noqa: E402

COMMANDS.append(export_triton)
from .serve import serve  # noqa: E402

COMMANDS.append(serve)
from .fuzz import fuzz  # noqa: E402

COMMANDS.append(fuzz)
