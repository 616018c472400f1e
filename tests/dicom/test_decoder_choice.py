"""Which pydicom plugin decodes what: gdcm for JPEG Lossless (faster, same pixels), the
pre-gdcm plugins for every other syntax."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ctedge.dicom.pixels import _plugins

HAS_GDCM = importlib.util.find_spec("gdcm") is not None
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


@pytest.mark.skipif(not HAS_GDCM, reason="python-gdcm is not installed")
def test_gdcm_leads_for_jpeg_lossless_only():
    from pydicom.pixels import get_decoder

    # () = pydicom's own order, which starts with gdcm for JPEG Lossless
    assert get_decoder(JPEG_LOSSLESS_SV1).available_plugins[0] == "gdcm"
    assert _plugins(JPEG_LOSSLESS_SV1) == ()
    assert "gdcm" not in _plugins(JPEG_2000_LOSSLESS) and _plugins(JPEG_2000_LOSSLESS)
    assert _plugins("1.2.840.10008.1.2.1") == ()  # uncompressed: no plugins


@pytest.mark.skipif(not HAS_GDCM, reason="python-gdcm is not installed")
@pytest.mark.parametrize("study", ["COVID-19/P001", "CAP/cap001", "Normal/normal001"])
def test_gdcm_and_pylibjpeg_give_identical_pixels_on_the_shared_studies(shared_data, study):
    from pydicom.pixels import pixel_array

    files = sorted((shared_data / "covid-ct-md" / study).glob("*.dcm"))
    assert files
    for path in files[:: max(1, len(files) // 6)]:
        a = pixel_array(str(path), decoding_plugin="gdcm")
        b = pixel_array(str(path), decoding_plugin="pylibjpeg")
        assert a.dtype == b.dtype and np.array_equal(a, b), path.name
