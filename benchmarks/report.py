"""The Markdown report: what ran where, then one table per section, numbers from the JSON only."""

from __future__ import annotations

from .reading import ANCHORS


def _f(value, digits: int = 3, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _dpct(value) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f} pp"


def _mib(value) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MiB"


def render_markdown(report: dict, plot_files: list[str], plot_note: str | None = None) -> str:
    m = report["machine"]
    gpus = ", ".join(f"{g['name']} (driver {g.get('driver', '?')})" for g in m["gpus"]) or "none"
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    lines = [
        "# ctedge benchmark",
        "",
        f"> {report['disclaimer']}",
        "",
        f"- Profile: **{report['profile']}**"
        + (" (smoke run: few iterations, numbers not for reading)"
           if report["profile"] == "quick" else ""),
        f"- Created: {report['created_utc']}, ctedge {report['ctedge_version']}, "
        f"schema `{report['schema']}`, {report['duration_s']:.0f} s",
        f"- Command: `{report['command']}`",
        f"- CPU: {m['cpu']['model']}, {m['cpu']['usable_cores']} usable cores "
        f"({m['cpu']['logical_cores']} logical), flags: {' '.join(m['cpu']['flags']) or 'n/a'}",
        f"- Memory: {_mib(m.get('memory_bytes'))}; GPU: {gpus}",
        f"- {m['os']}, Python {m['python']}; {libs}",
        f"- Engine compared with peers: **{report['engine'].get('label', 'n/a')}** "
        f"(`{report['engine'].get('path', '')}`)",
        "",
    ]
    for skipped in report["models_skipped"]:
        lines.append(f"- Model skipped: {skipped['label']}: {skipped['reason']}")
    sections = report["sections"]
    for name, render in _RENDERERS.items():
        if name not in sections:
            continue
        section = sections[name]
        lines += ["", f"## {_TITLES[name]}", ""]
        if "skipped" in section:
            lines.append(f"Skipped: {section['skipped']}")
        elif "error" in section:
            lines.append(f"**Error:** {section['error']}")
        else:
            lines += render(section)
    if plot_files or plot_note:
        lines += ["", "## Plots", ""]
        lines += [f"![{p}]({p})" for p in plot_files]
        if plot_note:
            lines.append(f"Plots not drawn: {plot_note}")
    lines += ["", "---", report["disclaimer"], ""]
    return "\n".join(lines)


def _accuracy(s: dict) -> list[str]:
    d = s["data"]
    lines = [f"Labelled set: `{d['source']}` split `{d['split']}`, {d['n']} slices "
             f"({', '.join(f'{k} {v}' for k, v in sorted(d['per_class'].items()))}). "
             f"Reference: {s['reference']}. \"Abnormal\" = any class but "
             f"`{s['negative_class']}`, score 1 - p({s['negative_class']}).", "",
             "| model | top-1 agree | gate | max abs dp | accuracy (d) | sens (d) | spec (d) "
             "| PPV (d) | NPV (d) | AUC (d) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in s["models"]:
        ab, dab = row["metrics"]["abnormal"], row["deltas"]["abnormal"]

        def cell(value, delta):
            return f"{_pct(value)} ({_dpct(delta)})"

        lines.append(
            f"| {row['label']} | {_pct(row['agreement']['top1_agreement'])} "
            f"| {_gate(row)} "
            f"| {_f(row['agreement']['max_abs_dp'], 4)} "
            f"| {cell(row['metrics']['accuracy'], row['deltas']['accuracy'])} "
            f"| {cell(ab['sensitivity'], dab['sensitivity'])} "
            f"| {cell(ab['specificity'], dab['specificity'])} | {cell(ab['ppv'], dab['ppv'])} "
            f"| {cell(ab['npv'], dab['npv'])} | {_f(ab['auc'], 4)} ({_f(dab['auc'], 4)}) |")
    lines += ["", "Per-class accuracy (recall) and AUC, one-vs-rest:", "",
              "| model | " + " | ".join(s["classes"]) + " |",
              "|---|" + "---|" * len(s["classes"])]
    for row in s["models"]:
        cells = []
        for c in s["classes"]:
            pc = row["metrics"]["per_class"][c]
            cells.append(f"{_pct(pc['accuracy'])}, AUC {_f(pc['auc'], 3)}")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return lines


def _gate(row: dict) -> str:
    if row["reference"]:
        return "reference"
    p = row["parity"]
    return f"{'pass' if p['passed'] else 'FAIL'} (>= {100 * p['threshold']:.1f}%)"


def _throughput(s: dict) -> list[str]:
    lines = ["Median of timed calls after warm-up; latency is per batch. Peak RSS includes "
             "loading the model.", "",
             "| model | batch | img/s | median ms | p90 ms | p99 ms | n | stable | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        t = r["timing"]
        lines.append(f"| {r['model']} | {r['batch']} | {_f(t['items_per_s'], 1)} "
                     f"| {1e3 * t['median_s']:.2f} | {1e3 * t['p90_s']:.2f} "
                     f"| {1e3 * t['p99_s']:.2f} | {t['n']} | {'yes' if t['stable'] else 'no'} "
                     f"| {_mib(r['peak_rss_bytes'])} |")
    return lines


def _peers(s: dict) -> list[str]:
    lines = [f"Each peer timed against **{s['engine']}** in alternating blocks (A B A B); "
             "speed-up = peer latency / engine latency (> 1: ctedge's engine is faster), "
             "median and range over rounds.", "",
             "| peer | batch | peer img/s | engine img/s | engine speed-up | range | status |",
             "|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['label']} | | | | | | {r['status']} |")
            continue
        sp = r["engine_speedup"]
        weights = "" if r["description"].get("real_weights", True) else " (random weights)"
        lines.append(f"| {r['label']}{weights} | {r['batch']} "
                     f"| {_f(r['peer_timing']['items_per_s'], 1)} "
                     f"| {_f(r['engine_timing']['items_per_s'], 1)} "
                     f"| {sp['median']:.2f}x | {sp['min']:.2f}-{sp['max']:.2f} | ok |")
    return lines


def _studies(s: dict) -> list[str]:
    stages = s["stages"]
    lines = ["Cold: a fresh `python -m ctedge.cli classify --format json` process (interpreter, "
             "imports, model load included); the plain loop (what a user writes first: pydicom "
             "+ PIL + ONNX Runtime batch 1, one process) runs cold in the same rounds, "
             "alternating with each model. Warm: in-process, model loaded. Stages are wall "
             "seconds (startup = cold wall - pipeline total; wait = waiting for decoded "
             "slices) except decode and preprocess, seconds inside the decode processes "
             "summed over slices. CPU s: user + system of the process and its workers.",
             "", "| study | model | mode | slices | wall s | CPU s | slices/s | "
             + " | ".join(stages) + " | peak RSS | decision |",
             "|---|---|---|---|---|---|---|" + "---|" * len(stages) + "---|---|"]
    ratios = []
    for r in s["results"]:
        if "skipped" in r or "error" in r:
            why = f"skipped: {r['skipped']}" if "skipped" in r else f"**error:** {r['error']}"
            lines.append(f"| {r['study']} | {r['model']} | {why} |")
            continue
        for mode in ("cold", "warm"):
            if mode not in r:
                continue
            x = r[mode]
            st = " | ".join(_f(x["stages_median_s"].get(k), 2) for k in stages)
            lines.append(f"| {r['study']} | {r['model']} | {mode} | {x['slices_read']} "
                         f"| {x['wall_median_s']:.2f} | {_f(x.get('cpu_median_s'), 2)} "
                         f"| {_f(x['slices_per_s'], 1)} | {st} "
                         f"| {_mib(x['peak_rss_bytes'])} | {x['decision']} |")
        if "vs_plain" in r:
            v = r["vs_plain"]
            ratios.append(f"| {r['study']} | {r['model']} | {v['median']:.2f} "
                          f"| {v['min']:.2f}-{v['max']:.2f} | "
                          + ", ".join(f"{x:.2f}" for x in v["per_round"]) + " |")
    if ratios:
        lines += ["", "ctedge cold wall / plain loop cold wall, per alternating round "
                  "(< 1: ctedge is faster):", "",
                  "| study | model | median | range | rounds |", "|---|---|---|---|---|",
                  *ratios]
    for t in s.get("targets", []):
        lines.append(f"\nTarget (edge-runtime issue, 2-core machine): {t['study']} "
                     f"({t['slices']} slices) <= {t['target_s']:.0f} s: cold "
                     f"{t['cold_wall_s']:.2f} s {'met' if t['met_cold'] else 'NOT met'}, warm "
                     f"{t['warm_wall_s']:.2f} s {'met' if t['met_warm'] else 'NOT met'}.")
    if s.get("speed_targets"):
        lines += ["", "Targets of the pipeline issue (cold, medians of this run):", "",
                  "| study | model | slices | target | measured | met |",
                  "|---|---|---|---|---|---|"]
        for t in s["speed_targets"]:
            lines.append(f"| {t['study']} | {t['model']} | {t['slices']} | {t['target']} "
                         f"| {t['measured']:.2f} | {'met' if t['met'] else '**NOT met**'} |")
    return lines


def _import_time(s: dict) -> list[str]:
    heavy = ", ".join(s["heavy_modules_loaded"]) or "none"
    return [f"`import ctedge.cli`: median {s['median_s'] * 1e3:.0f} ms over {s['runs']} fresh "
            f"interpreters (target <= {s['target_s'] * 1e3:.0f} ms: "
            f"{'met' if s['met'] else 'NOT met'}). Heavy modules loaded by it: {heavy}."]


def _reading_time(s: dict) -> list[str]:
    lines = ["Reading-time anchors:", ""]
    for a in ANCHORS:
        lines.append(f"- {a.seconds:.0f} s: {a.what} ({a.citation})")
    lines += ["", "| study | model | anchor | reading s | ctedge cold s | speed-up cold "
              "| ctedge warm s | speed-up warm |", "|---|---|---|---|---|---|---|---|"]
    for r in s["speedups"]:
        lines.append(f"| {r['study']} | {r['model']} | {r['anchor']} | {r['reading_s']:.0f} "
                     f"| {r['ctedge_cold_s']:.2f} | {r['speedup_cold']:.0f}x "
                     f"| {r['ctedge_warm_s']:.2f} | {r['speedup_warm']:.0f}x |")
    lines += ["", s["note"]]
    return lines


_RENDERERS = {"accuracy": _accuracy, "throughput": _throughput, "peers": _peers,
              "studies": _studies, "import_time": _import_time, "reading_time": _reading_time}
_TITLES = {"accuracy": "Accuracy parity", "throughput": "Model throughput",
           "peers": "Peers (same run, alternating)", "studies": "Per study, end to end",
           "import_time": "Import time", "reading_time": "Against radiologist reading time"}
