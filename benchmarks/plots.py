"""PNG plots of a report: throughput bars, latency CDF, per-study stage breakdown.

matplotlib is optional (it comes with the `train` extra); without it BackendUnavailable says
so and the report is written without plots. Drawn with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctedge.errors import BackendUnavailable
from ctedge.io import atomic_path


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BackendUnavailable("plots need matplotlib; install it with: "
                                 "pip install 'ctedge[train]' (or pass --no-plots)") from exc
    return plt


def write_plots(report: dict, out: Path) -> list[Path]:
    """Draw every plot the report has data for; returns the files written."""
    plt = _pyplot()
    sections = report["sections"]
    written = []
    for name, draw, section_key in (("throughput.png", _throughput, "throughput"),
                                    ("latency_cdf.png", _latency_cdf, "throughput"),
                                    ("peers.png", _peers, "peers"),
                                    ("study_stages.png", _stages, "studies")):
        section = sections.get(section_key, {})
        if "skipped" in section or "error" in section or not section:
            continue
        fig = draw(plt, section, report)
        if fig is None:
            continue
        path = Path(out) / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _title(report: dict, what: str) -> str:
    cpu = report["machine"]["cpu"]
    gpus = report["machine"]["gpus"]
    where = gpus[0]["name"] if gpus else f"{cpu['model']}, {cpu['usable_cores']} cores"
    return f"{what}\n{where} ({report['profile']} profile)"


def _throughput(plt, section, report):
    rows = section["rows"]
    if not rows:
        return None
    models = list(dict.fromkeys(r["model"] for r in rows))
    batches = sorted({r["batch"] for r in rows})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(models) * len(batches) / 2), 4))
    width = 0.8 / len(batches)
    for j, batch in enumerate(batches):
        values = [next((r["timing"]["items_per_s"] for r in rows
                        if r["model"] == m and r["batch"] == batch), 0) or 0 for m in models]
        ax.bar(np.arange(len(models)) + j * width, values, width, label=f"batch {batch}")
    ax.set_xticks(np.arange(len(models)) + width * (len(batches) - 1) / 2)
    ax.set_xticklabels([m.replace("ctedge ", "") for m in models], rotation=20, ha="right")
    ax.set_ylabel("images / s (median)")
    ax.set_title(_title(report, "Model throughput by backend and precision"))
    ax.legend()
    return fig


def _latency_cdf(plt, section, report):
    rows = section["rows"]
    if not rows:
        return None
    batch = min(r["batch"] for r in rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r["batch"] != batch:
            continue
        samples = np.sort(np.asarray(r["timing"]["samples_s"]) * 1e3)
        ax.step(samples, np.arange(1, len(samples) + 1) / len(samples), where="post",
                label=r["model"].replace("ctedge ", ""))
    ax.set_xlabel(f"latency per batch of {batch} (ms)")
    ax.set_ylabel("fraction of calls")
    ax.set_title(_title(report, "Latency CDF"))
    ax.legend()
    return fig


def _peers(plt, section, report):
    rows = [r for r in section["rows"] if r["status"] == "ok"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(rows) + 1.5))
    values = [r["engine_speedup"]["median"] for r in rows]
    lo = [v - r["engine_speedup"]["min"] for v, r in zip(values, rows, strict=True)]
    hi = [r["engine_speedup"]["max"] - v for v, r in zip(values, rows, strict=True)]
    y = np.arange(len(rows))
    ax.barh(y, values, xerr=[lo, hi])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")  # ratios: 2x faster and 2x slower sit equally far from 1
    ax.set_yticks(y)
    ax.set_yticklabels([r["label"] for r in rows])
    ax.set_xlabel(f"speed-up of {section['engine']} (peer latency / engine latency)")
    ax.set_title(_title(report, "ctedge engine vs peers"))
    return fig


def _stages(plt, section, report):
    rows = [r for r in section.get("results", []) if "warm" in r]
    if not rows:
        return None
    stages = [s for s in section["stages"] if s != "total"]
    labels = [f"{r['study']}\n{r['model'].replace('ctedge ', '')}\n{mode}"
              for r in rows for mode in ("cold", "warm")]
    data = [[r[mode]["stages_median_s"].get(s) or 0 for s in stages]
            for r in rows for mode in ("cold", "warm")]
    walls = [r[mode]["wall_median_s"] for r in rows for mode in ("cold", "warm")]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels)), 4.5))
    x = np.arange(len(labels))
    width = 0.8 / len(stages)
    for j, stage in enumerate(stages):
        ax.bar(x + j * width, [d[j] for d in data], width, label=stage)
    ax.scatter(x + width * (len(stages) - 1) / 2, walls, color="black", marker="_", s=400,
               label="wall time", zorder=3)
    ax.set_xticks(x + width * (len(stages) - 1) / 2)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("seconds (decode/preprocess: CPU s over workers)")
    ax.set_title(_title(report, "Per-study stage breakdown"))
    ax.legend(fontsize=7, ncol=2)
    return fig
