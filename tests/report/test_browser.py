"""The report of a real study as a person sees it: rendered by headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctedge.cli import main
from ctedge.export.cam import add_cam_file

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "P001-every8th"  # every 8th slice of COVID-CT-MD P001 (real DICOM)
MODEL = ROOT / "models" / "ctedge-resnet50-ucsd-sarscov2-ctmd.onnx"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True,
                          timeout=timeout, check=True)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                                             "chromium; .ci/run does)")
def test_real_study_report_renders_with_its_flagged_slices(capsys, tmp_path):
    model = tmp_path / "reference-with-maps.onnx"
    add_cam_file(MODEL, model)
    out = tmp_path / "report"
    code = main(["classify", str(SAMPLE), "--model", str(model), "--report", str(out),
                 "--format", "json"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(stdout)
    page = out / "report.html"

    shot = tmp_path / "page.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,1800", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.std() > 30  # not a blank page
    r, b = pixels[..., 0], pixels[..., 2]
    warm = (r - b > 60) & (r > 150)  # the map's orange-yellow over the grey slices
    assert warm.mean() > 0.005

    # What the browser laid out: every slice the decision rests on is pictured.
    dom = _chromium("--dump-dom", page.as_uri()).stdout
    decided = next(c for c in result["decision"]["classes"]
                   if c["label"] == result["decision"]["label"])
    used = [s for s in result["slices"] if s["used"]]
    strongest = decided["strongest_slices"][:3] or [
        max(used, key=lambda s: s["probabilities"][decided["label"]])["index"]]
    for index in strongest:
        assert f'id="slice-{index}-{decided["label"]}"' in dom
        assert f"slice {index}," in dom
    assert result["decision"]["label"].upper() in dom.upper()
