"""The study report as one self-contained HTML page: inline CSS, inline SVG plot, images as
data: URIs. No script, no external resource, so it opens offline in any browser."""

from __future__ import annotations

import base64
from html import escape

from ..result import DISCLAIMER
from . import images
from .evidence import ReportData, picture_order, profile_points

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
           "#000000")

CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:0;color:#1b1b1b;background:#f4f5f7}
main{max-width:1180px;margin:0 auto;padding:16px 20px 40px}
.disclaimer{background:#fff4ce;border:1px solid #e0c36a;padding:8px 12px;font-weight:bold}
.decision{display:flex;gap:24px;align-items:center;background:#fff;border:1px solid #ccd;
 padding:12px 16px;margin:12px 0}
.label{font-size:30px;font-weight:bold;text-transform:uppercase}
.label.neg{color:#1d6b2f}.label.pos{color:#b3261e}.label.ind{color:#555}
.rule{font-size:15px;color:#333}
section{background:#fff;border:1px solid #ccd;padding:10px 16px;margin:12px 0}
h1{font-size:20px;margin:8px 0}h2{font-size:17px;margin:4px 0 8px}
table{border-collapse:collapse;font-size:14px}
td,th{padding:3px 10px;border-bottom:1px solid #e3e3e8;text-align:right}
td:first-child,th:first-child{text-align:left}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:middle}
.row{margin:6px 0 14px}.row h3{font-size:15px;margin:4px 0}
.pics{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;background:#111;padding:4px;color:#eee;font-size:13px;max-width:356px}
figure img{display:block;width:176px;height:176px;object-fit:contain}
.pair{display:flex;gap:4px}
figcaption{padding:3px 2px}.flag{color:#ffb3ad;font-weight:bold}
.note{color:#6a4b00}.small{font-size:12px;color:#555}
code{font-size:12px}
"""


def render(data: ReportData) -> str:
    d = data.decision
    kind = "ind" if d.label == "indeterminate" else (
        "neg" if d.label == data.negative_class else "pos")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>ctedge report {escape(data.study_hash)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f'<div class="disclaimer">{escape(DISCLAIMER)}</div>',
        f"<h1>ctedge lung CT triage &mdash; study {escape(data.study_hash)}</h1>",
        '<div class="decision">',
        f'<div class="label {kind}">{escape(d.label)}</div>',
        f'<div class="rule"><b>{escape(d.rule)} rule:</b> {escape(d.reason)}<br>'
        f"{data.slices_used} of {data.slices_read} slices classified; threshold p &ge; "
        f"{data.threshold:g}, {data.required_slices} slices needed</div></div>",
        *[f'<p class="note">{escape(n)}</p>' for n in data.notes],
        _evidence_table(data),
        "<section><h2>Probability along the study (head &rarr; feet)</h2>",
        profile_svg(data), "</section>",
        _pictures(data),
        _skipped(data),
        _model_and_timings(data),
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _evidence_table(data: ReportData) -> str:
    rows = []
    for i, r in enumerate(data.rows):
        rows.append(
            f'<tr><td><span class="swatch" style="background:{_colour(i)}"></span>'
            f"{escape(r.label)}</td><td>{r.top1_slices}</td><td>{r.above_threshold}</td>"
            f"<td>{r.max_probability:.3f}</td><td>{r.evidence:.2f}</td></tr>")
    return ("<section><h2>Evidence per class</h2><table><tr><th>class</th>"
            "<th>top-1 slices</th>"
            f"<th>slices p &ge; {data.threshold:g}</th><th>max p</th><th>evidence "
            "(&Sigma;p above threshold)</th></tr>" + "".join(rows) + "</table></section>")


def profile_svg(data: ReportData, width: int = 1100, height: int = 240) -> str:
    left, right, top, bottom = 46, 12, 10, 34
    n = max(1, len(data.probabilities) - 1)
    pw, ph = width - left - right, height - top - bottom

    def x(i):
        return left + pw * i / n

    def y(p):
        return top + ph * (1 - p)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-size="12" font-family="DejaVu Sans,Arial">']
    step = pw / n if n else pw
    for run in data.skipped:  # skipped slices: grey bands
        out.append(f'<rect x="{x(run.first) - step / 2:.1f}" y="{top}" '
                   f'width="{step * (run.last - run.first + 1):.1f}" height="{ph}" '
                   f'fill="#e4e4e8"><title>{escape(run.category)}</title></rect>')
    for p in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(p):.1f}" y2="{y(p):.1f}" '
                   f'stroke="#ddd"/><text x="{left - 6}" y="{y(p) + 4:.1f}" '
                   f'text-anchor="end">{p:g}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(data.threshold):.1f}" '
               f'y2="{y(data.threshold):.1f}" stroke="#555" stroke-dasharray="5,4"/>')
    for ci, runs in enumerate(profile_points(data)):
        for run in runs:
            pts = " ".join(f"{x(i):.1f},{y(p):.1f}" for i, p in run)
            if len(run) == 1:
                i, p = run[0]
                out.append(f'<circle cx="{x(i):.1f}" cy="{y(p):.1f}" r="2" '
                           f'fill="{_colour(ci)}"/>')
            else:
                out.append(f'<polyline points="{pts}" fill="none" stroke="{_colour(ci)}" '
                           'stroke-width="1.8"/>')
    shown = {(pic.index, pic.label) for r in data.rows for pic in r.pictures}
    for index, label in sorted(shown):  # pictured slices: a marker on their class's line
        ci = data.classes.index(label)
        p = data.probabilities[index][ci]
        out.append(f'<circle cx="{x(index):.1f}" cy="{y(p):.1f}" r="4" fill="none" '
                   f'stroke="{_colour(ci)}" stroke-width="1.5"/>')
    out.append(_axis_labels(data, x, top + ph))
    out.append("</svg>")
    return "".join(out)


def _axis_labels(data: ReportData, x, base: float) -> str:
    n = len(data.probabilities)
    every = max(1, n // 8)
    ticks = sorted({0, n - 1, *(i for i in range(0, n, every) if n - 1 - i >= every / 2)})
    out = []
    for i in ticks:
        z = data.z_mm[i]
        label = f"{i}" + ("" if z is None else f" ({z:.0f} mm)")
        anchor = "start" if i == 0 else ("end" if i == n - 1 else "middle")
        out.append(f'<text x="{x(i):.1f}" y="{base + 16:.1f}" text-anchor="{anchor}">'
                   f"{escape(label)}</text>")
    out.append(f'<text x="{x(0):.1f}" y="{base + 30:.1f}" class="small">slice index (z)'
               "; grey: skipped; dashed: threshold; circles: pictured slices</text>")
    return "".join(out)


def _pictures(data: ReportData) -> str:
    title = "Strongest slices per class, lung window" + (
        " &mdash; left: image, right: class-activation map (brighter = more evidence for "
        "the class)" if data.maps_available else " (maps unavailable for this model)")
    out = [f"<section><h2>{title}</h2>"]
    for row in picture_order(data):
        out.append(f'<div class="row"><h3>{escape(row.label)}</h3><div class="pics">')
        for pic in row.pictures:
            z = "" if pic.z_mm is None else f", z {pic.z_mm:.1f} mm"
            flag = ' <span class="flag">&ge; threshold</span>' if pic.flagged else ""
            imgs = [_img(pic.plain, f"slice {pic.index}")]
            if pic.overlay is not None:
                imgs.append(_img(pic.overlay, f"slice {pic.index} {pic.label} map"))
            out.append(f'<figure id="slice-{pic.index}-{escape(pic.label)}">'
                       f'<div class="pair">{"".join(imgs)}</div><figcaption>slice '
                       f"{pic.index}{z}: p({escape(pic.label)}) = {pic.probability:.3f}{flag}"
                       "</figcaption></figure>")
        if not row.pictures:
            out.append("<p>no classified slice</p>")
        out.append("</div></div>")
    out.append("</section>")
    return "\n".join(out)


def _skipped(data: ReportData) -> str:
    if not data.skipped:
        return "<section><h2>Skipped slices</h2><p>none</p></section>"
    rows = []
    for run in data.skipped:
        span = f"{run.first}" if run.first == run.last else f"{run.first}&ndash;{run.last}"
        z = "" if run.z_first is None else (
            f"{run.z_first:.1f}" + ("" if run.z_last == run.z_first else f" to {run.z_last:.1f}"))
        details = "<br>".join(escape(t) for t in run.details)
        rows.append(f"<tr><td>{span}</td><td>{z}</td><td>{run.last - run.first + 1}</td>"
                    f"<td style='text-align:left'><details><summary>{escape(run.category)}"
                    f"</summary><span class='small'>{details}</span></details></td></tr>")
    return ("<section><h2>Skipped slices</h2><table><tr><th>slices</th><th>z (mm)</th>"
            "<th>count</th><th style='text-align:left'>why</th></tr>" + "".join(rows)
            + "</table></section>")


def _model_and_timings(data: ReportData) -> str:
    m = data.model
    t = data.timings_s
    order = ("read", "load", "decode", "preprocess", "infer", "decide", "total",
             "report_gather", "report_render")
    cells = "".join(f"<tr><td>{k.replace('_', ' ')}</td><td>{t[k]:.3f}</td></tr>"
                    for k in order if k in t)
    return (
        "<section><h2>Model and timings</h2><table>"
        f"<tr><td>model</td><td>{escape(m['name'])}</td></tr>"
        f"<tr><td>sha256</td><td><code>{escape(m['sha256'])}</code></td></tr>"
        f"<tr><td>precision</td><td>{escape(str(m['precision']))}</td></tr>"
        f"<tr><td>backend</td><td>{escape(str(m['backend']))}</td></tr>"
        f"<tr><td>maps</td><td>{'yes' if data.maps_available else 'unavailable'}</td></tr>"
        f"</table><p class='small'>Seconds (decode and preprocess summed over worker "
        f"processes; total is wall time of classification):</p><table>{cells}</table>"
        f'<p class="small">{escape(DISCLAIMER)} Study named by a hash of its '
        "StudyInstanceUID; no patient identifiers are included.</p></section>")


def _img(image, alt: str) -> str:
    data = base64.b64encode(images.jpeg_bytes(image)).decode()
    return f'<img alt="{escape(alt)}" src="data:image/jpeg;base64,{data}">'


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]
