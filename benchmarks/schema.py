"""The benchmark report's JSON schema, versioned. Bump SCHEMA_VERSION on any change that a
reader of an older file would misread (renamed or re-meant keys); adding keys needs no bump.

Top level:
    schema            "ctedge-bench/<version>"
    created_utc       ISO 8601, seconds
    profile           "quick" | "full"
    command           the command line that made it
    disclaimer        "... decision support, not a medical device."
    ctedge_version
    machine           describe_machine(): cpu {model, flags, cores}, memory, gpus, libraries
    config            BenchConfig.to_dict()
    models            [{label, path, backend, precision, form}]   models measured
    models_skipped    [{..., reason}]
    engine            the model peers are compared with
    sections          {name: dict}; a section that did not run holds "skipped" or "error"
    duration_s        whole run, seconds
Timings are seconds; memory is bytes; throughput is items (slices) per second.
"""

from __future__ import annotations

import ctedge

from .config import SECTIONS

SCHEMA_VERSION = 1
SCHEMA = f"ctedge-bench/{SCHEMA_VERSION}"

_TOP = {"schema": str, "created_utc": str, "profile": str, "command": str, "disclaimer": str,
        "ctedge_version": str, "machine": dict, "config": dict, "models": list,
        "models_skipped": list, "engine": dict, "sections": dict, "duration_s": float}
_TIMING = ("n", "median_s", "p90_s", "p99_s", "items_per_s", "samples_s")


class SchemaError(ValueError):
    """A report does not follow the schema (a bug in the harness, not in the user's input)."""


def new_report(config, machine: dict, disclaimer: str, command: str) -> dict:
    from .harness import now_utc

    return {"schema": SCHEMA, "created_utc": now_utc(), "profile": config.profile,
            "command": command, "disclaimer": disclaimer,
            "ctedge_version": ctedge.__version__, "machine": machine,
            "config": config.to_dict(), "models": [], "models_skipped": [], "engine": {},
            "sections": {}, "duration_s": 0.0}


def validate(report: dict) -> None:
    """Raise SchemaError naming the first problem; the harness calls this before writing."""
    for key, kind in _TOP.items():
        if key not in report:
            raise SchemaError(f"missing top-level key {key!r}")
        if kind is float and isinstance(report[key], int):
            continue
        if not isinstance(report[key], kind):
            raise SchemaError(f"{key!r} should be {kind.__name__}, got "
                              f"{type(report[key]).__name__}")
    if report["schema"] != SCHEMA:
        raise SchemaError(f"schema {report['schema']!r}, this harness writes {SCHEMA!r}")
    if "not a medical device" not in report["disclaimer"]:
        raise SchemaError("the disclaimer must say 'not a medical device'")
    for key in ("cpu", "gpus", "libraries"):
        if key not in report["machine"]:
            raise SchemaError(f"machine description lacks {key!r}")
    for name, section in report["sections"].items():
        if name not in SECTIONS:
            raise SchemaError(f"unknown section {name!r}")
        if not isinstance(section, dict):
            raise SchemaError(f"section {name!r} should be a dict")
        if "skipped" in section or "error" in section:
            continue
        try:
            _SECTION_CHECKS.get(name, lambda s: None)(section)
        except (KeyError, TypeError, IndexError) as exc:
            raise SchemaError(f"section {name!r} is malformed: {type(exc).__name__} {exc}") \
                from exc


def _check_timing(where: str, timing: dict) -> None:
    for key in _TIMING:
        if key not in timing:
            raise SchemaError(f"{where}: timing lacks {key!r}")
    if timing["n"] != len(timing["samples_s"]):
        raise SchemaError(f"{where}: n={timing['n']} but {len(timing['samples_s'])} samples")
    if not timing["median_s"] <= timing["p90_s"] <= timing["p99_s"] + 1e-12:
        raise SchemaError(f"{where}: percentiles out of order")


def _throughput(section: dict) -> None:
    for i, row in enumerate(section["rows"]):
        for key in ("model", "backend", "precision", "batch", "timing", "peak_rss_bytes"):
            if key not in row:
                raise SchemaError(f"throughput row {i} lacks {key!r}")
        _check_timing(f"throughput row {i}", row["timing"])


def _peers(section: dict) -> None:
    for row in section["rows"]:
        if "status" not in row:
            raise SchemaError(f"peer {row.get('peer')} lacks a status")
        if row["status"] == "ok":
            for side in ("engine_timing", "peer_timing"):
                _check_timing(f"peer {row['peer']} {side}", row[side])
            if "median" not in row["engine_speedup"]:
                raise SchemaError(f"peer {row['peer']} lacks the engine speedup")


def _accuracy(section: dict) -> None:
    for row in section["models"]:
        for key in ("label", "metrics", "agreement", "deltas"):
            if key not in row:
                raise SchemaError(f"accuracy row {row.get('label')} lacks {key!r}")


def _studies(section: dict) -> None:
    for row in section["results"]:
        if "skipped" in row or "error" in row:
            continue
        modes = ("cold",) if "warm" not in row and "plain loop" in row["model"] else \
            ("cold", "warm")
        for mode in modes:
            for key in ("wall_median_s", "stages_median_s", "slices_per_s", "peak_rss_bytes"):
                if key not in row[mode]:
                    raise SchemaError(f"study {row['study']} {mode} lacks {key!r}")


_SECTION_CHECKS = {"throughput": _throughput, "peers": _peers, "accuracy": _accuracy,
                   "studies": _studies}
