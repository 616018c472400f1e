"""Fixtures for the training/evaluation tests: a tiny synthetic two-class image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def make_image_folder(root: Path, patients: int = 4, slices: int = 3, size=(40, 50),
                      seed: int = 0) -> Path:
    """<root>/<class>/<patient>__s<k>.png; class `lesion` has a bright square, `clear` none."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in ("clear", "lesion"):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for p in range(patients):
            for k in range(slices):
                image = (rng.random(size) * 120).astype(np.uint8)
                if label == "lesion":
                    image[10:30, 15:35] = 250
                Image.fromarray(image).save(folder / f"{label}{p}__s{k}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images")
