"""The slices a model developer should look at: the most confident false positives and false
negatives of an evaluation, each with its class-activation map (models that have maps).

Written by `ctedge evaluate ... --out DIR` as `DIR/mistakes.html` (self-contained) and
`DIR/mistakes.png`. Slices are named by their row in `predictions.csv` and file name, with the
truth and the positive class's probability. torch-free: numpy + Pillow (ctedge.report.images).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from ctedge.io import atomic_write
from ctedge.report import images

PER_KIND = 6


@dataclass(frozen=True)
class Mistake:
    kind: str  # "false positive" | "false negative"
    row: int  # index in the evaluated slice set (= predictions.csv row)
    name: str  # file name of the slice
    truth: str
    probability: float  # of the positive class
    plain: object  # PIL image: the model input, un-normalised
    overlay: object  # PIL image: the positive class's map over it


def strongest_mistakes(pred, positive_class: str, per_kind: int = PER_KIND
                       ) -> dict[str, list[int]]:
    """Row indices of the false positives with the highest p(positive) and the false
    negatives with the lowest, where "positive" means the top class is `positive_class`."""
    pos = list(pred.classes).index(positive_class)
    top = pred.probabilities.argmax(1)
    p = pred.probabilities[:, pos]
    fp = np.flatnonzero((top == pos) & (pred.labels != pos))
    fn = np.flatnonzero((top != pos) & (pred.labels == pos))
    return {"false positive": [int(i) for i in fp[np.argsort(-p[fp], kind="stable")][:per_kind]],
            "false negative": [int(i) for i in fn[np.argsort(p[fn], kind="stable")][:per_kind]]}


def collect(backend, slices, pred, positive_class: str, per_kind: int = PER_KIND
            ) -> list[Mistake]:
    """Run `backend.infer_maps` on the strongest mistakes and picture them."""
    chosen = strongest_mistakes(pred, positive_class, per_kind)
    rows = [i for kind in chosen.values() for i in kind]
    if not rows:
        return []
    _, maps = backend.infer_maps(np.ascontiguousarray(slices.inputs[rows]))
    pos = list(pred.classes).index(positive_class)
    pre = backend.info.preprocessing
    out = []
    k = 0
    for kind, indices in chosen.items():
        for i in indices:
            x = slices.inputs[i]
            grey = np.clip(x[0] * pre.std[0] + pre.mean[0], 0, 1)  # undo the normalisation
            cam = images.normalise(images.map_on_slice(maps[k][pos], grey.shape))
            name = Path(slices.paths[i]).name if slices.paths else str(i)
            out.append(Mistake(kind, i, name, pred.classes[pred.labels[i]],
                               float(pred.probabilities[i, pos]),
                               images.thumbnail(images.grey_image(grey), 160),
                               images.thumbnail(images.overlay(grey, cam), 160)))
            k += 1
    return out


def write_mistakes(out_dir: str | Path, mistakes: list[Mistake], positive_class: str,
                   model_name: str) -> list[Path]:
    """Write mistakes.html and mistakes.png into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    html_path, png_path = out_dir / "mistakes.html", out_dir / "mistakes.png"
    atomic_write(html_path, _html(mistakes, positive_class, model_name))
    atomic_write(png_path, images.png_bytes(_grid(mistakes)))
    return [html_path, png_path]


def _html(mistakes, positive_class: str, model_name: str) -> str:
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{escape(model_name)}: strongest mistakes</title><style>"
             "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:16px}"
             ".pics{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;background:#111;"
             "color:#eee;padding:4px;font-size:12px;max-width:324px}.pair{display:flex;gap:4px}"
             "</style></head><body>",
             f"<h1>{escape(model_name)}: most confident mistakes ({escape(positive_class)} vs "
             "rest)</h1><p>Left: the model input; right: the map of "
             f"{escape(positive_class)} (brighter = more evidence for it).</p>"]
    for kind in ("false positive", "false negative"):
        rows = [m for m in mistakes if m.kind == kind]
        parts.append(f"<h2>{kind}s ({len(rows)})</h2><div class='pics'>")
        for m in rows:
            parts.append(
                f"<figure id='row-{m.row}'><div class='pair'>{_img(m.plain)}{_img(m.overlay)}"
                f"</div><figcaption>row {m.row} {escape(m.name)}: truth {escape(m.truth)}, "
                f"p({escape(positive_class)}) = {m.probability:.3f}</figcaption></figure>")
        parts.append("</div>" if rows else "<p>none</p></div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _grid(mistakes):
    from PIL import Image, ImageDraw

    from ctedge.report.summary import load_font

    cols = 3
    cell_w, cell_h = 2 * 160 + 12, 160 + 40
    rows = max(1, -(-len(mistakes) // cols))
    image = Image.new("RGB", (cols * cell_w + 20, rows * cell_h + 20), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = load_font(13)
    for n, m in enumerate(mistakes):
        x, y = 10 + (n % cols) * cell_w, 10 + (n // cols) * cell_h
        image.paste(m.plain.convert("RGB"), (x, y))
        image.paste(m.overlay, (x + 162, y))
        draw.text((x, y + 163), f"{m.kind}: row {m.row}, truth {m.truth}", font=font,
                  fill=(20, 20, 20))
        draw.text((x, y + 180), f"p = {m.probability:.3f}", font=font, fill=(20, 20, 20))
    if not mistakes:
        draw.text((10, 10), "no false positives or negatives", font=font, fill=(20, 20, 20))
    return image


def _img(image) -> str:
    data = base64.b64encode(images.jpeg_bytes(image)).decode()
    return f"<img src='data:image/jpeg;base64,{data}' width='160' height='160'>"
