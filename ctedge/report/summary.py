"""The report's content as one PNG, for viewers that show only images (and the DICOM
Secondary Capture): decision, evidence, the z profile, the strongest slices with their maps,
model and disclaimer. Pillow only."""

from __future__ import annotations

import textwrap

from ..result import DISCLAIMER
from .evidence import ReportData, picture_order, profile_points
from .html import PALETTE

WIDTH = 1400
BG, INK, GREY = (255, 255, 255), (27, 27, 27), (110, 110, 110)
PIC = 160  # picture side in the summary


def render_summary(data: ReportData):
    """An RGB PIL image of the summary."""
    from PIL import Image, ImageDraw

    rows = picture_order(data)[:3]  # the decided class and the next two
    f_big, f_mid, f_small = load_font(34), load_font(18), load_font(14)
    d = data.decision
    lines = [(t, f_mid) for t in textwrap.wrap(f"{d.rule} rule: {d.reason}", 52)[:4]] + [
        (t, f_small) for t in textwrap.wrap(
            f"{data.slices_used} of {data.slices_read} slices classified, "
            f"{data.slices_read - data.slices_used} skipped; threshold p >= "
            f"{data.threshold:g}, {data.required_slices} slices needed", 64)]
    # the text column and the profile above, the pictures below
    top = max(320, 122 + 22 * len(lines) + 8 + 22 * (min(6, len(data.rows)) + 1) + 16)
    height = top + 40 + len(rows) * (PIC + 44) + 70
    image = Image.new("RGB", (WIDTH, height), BG)
    draw = ImageDraw.Draw(image)

    draw.rectangle([0, 0, WIDTH, 36], fill=(255, 244, 206))
    draw.text((14, 8), DISCLAIMER, font=f_mid, fill=INK)
    colour = (29, 107, 47) if d.label == data.negative_class else (
        (85, 85, 85) if d.label == "indeterminate" else (179, 38, 30))
    draw.text((14, 50), f"ctedge study {data.study_hash}", font=f_mid, fill=GREY)
    draw.text((14, 76), d.label.upper(), font=f_big, fill=colour)
    y = 122
    for line, font in lines:
        draw.text((14, y), line, font=font, fill=INK)
        y += 22
    y += 8
    draw.text((14, y), f"{'class':<24}top-1  p>=thr  max p", font=mono_font(15), fill=INK)
    for i, r in enumerate(data.rows[:6]):
        yy = y + 22 * (i + 1)
        draw.rectangle([14, yy + 3, 26, yy + 15], fill=PALETTE[i % len(PALETTE)])
        draw.text((34, yy), f"{r.label[:22]:<22}{r.top1_slices:>6}{r.above_threshold:>7}"
                  f"{r.max_probability:>7.3f}", font=mono_font(15), fill=INK)

    _profile(draw, data, (560, 56, WIDTH - 20, 300), f_small)
    y = top
    title = "strongest slices, lung window" + (" | class-activation map" if
                                               data.maps_available else " (maps unavailable)")
    draw.text((14, y), title, font=f_mid, fill=INK)
    y += 30
    for row in rows:
        draw.text((14, y), row.label, font=f_mid, fill=INK)
        x = 14
        for pic in row.pictures:
            for img in (pic.plain, pic.overlay):
                if img is None:
                    continue
                thumb = img.convert("RGB")
                thumb.thumbnail((PIC, PIC))
                image.paste(thumb, (x, y + 24))
                x += PIC + 2
            cap = f"slice {pic.index}  p {pic.probability:.2f}" + (" *" if pic.flagged else "")
            draw.text((x - (PIC + 2) * (2 if pic.overlay is not None else 1), y + 24 + PIC + 2),
                      cap, font=f_small, fill=INK)
            x += 16
        y += PIC + 44
    m = data.model
    draw.text((14, height - 56), f"model {m['name']}  sha256 {m['sha256'][:16]}...  "
              f"{m['precision']} on {m['backend']}  |  * p >= threshold", font=f_small,
              fill=GREY)
    draw.text((14, height - 32), "No patient identifiers: study named by a hash of its "
              "StudyInstanceUID.", font=f_small, fill=GREY)
    return image


def _profile(draw, data: ReportData, box, font) -> None:
    x0, y0, x1, y1 = box
    draw.text((x0, y0 - 4), "probability along the study (head -> feet); grey: skipped",
              font=font, fill=INK)
    top, bottom = y0 + 18, y1 - 20
    n = max(1, len(data.probabilities) - 1)

    def x(i):
        return x0 + 30 + (x1 - x0 - 30) * i / n

    def y(p):
        return bottom - (bottom - top) * p

    step = (x1 - x0 - 30) / n
    for run in data.skipped:
        draw.rectangle([x(run.first) - step / 2, top, x(run.last) + step / 2, bottom],
                       fill=(228, 228, 232))
    for p in (0, 0.5, 1):
        draw.line([x(0), y(p), x(n), y(p)], fill=(215, 215, 215))
        draw.text((x0, y(p) - 8), f"{p:g}", font=font, fill=GREY)
    for xx in range(int(x(0)), int(x(n)), 12):  # the threshold, dashed
        draw.line([xx, y(data.threshold), xx + 6, y(data.threshold)], fill=(80, 80, 80))
    for ci, runs in enumerate(profile_points(data)):
        colour = PALETTE[ci % len(PALETTE)]
        for run in runs:
            pts = [(x(i), y(p)) for i, p in run]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
            else:
                draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2],
                             fill=colour)
    draw.text((x(0), bottom + 4), "slice 0", font=font, fill=GREY)
    draw.text((x(n) - 60, bottom + 4), f"slice {n}", font=font, fill=GREY)


def load_font(size: int):
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def mono_font(size: int):
    from PIL import ImageFont

    for name in ("DejaVuSansMono.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)
