"""read_hu: rescale, signedness, transfer syntaxes, multi-frame, missing codecs."""

from __future__ import annotations

import numpy as np
import pytest

from ctedge.dicom import read_hu, read_study
from ctedge.errors import DicomError

from synthetic_dicom import make_ct, make_enhanced_ct, make_jpeg_xl_ct

RNG = np.random.default_rng(0)
STORED = RNG.integers(0, 3000, size=(16, 16)).astype(np.uint16)


def _only_slice(folder):
    study = read_study(folder)
    assert len(study.series) == 1
    return study.series.slices[0]


def test_intercept_makes_air_minus_1000(tmp_path):
    stored = np.full((16, 16), 24, dtype=np.uint16)  # air as a Siemens scanner stores it
    stored[4:8, 4:8] = 1064  # water-ish: 40 HU
    make_ct(tmp_path / "a.dcm", pixels=stored, intercept=-1024.0, slope=1.0)
    hu = read_hu(_only_slice(tmp_path))
    assert hu.dtype == np.float32 and hu.shape == (16, 16)
    assert hu[0, 0] == pytest.approx(-1000.0)
    assert hu[5, 5] == pytest.approx(40.0)


def test_slope_and_missing_rescale(tmp_path):
    make_ct(tmp_path / "s" / "a.dcm", pixels=STORED, slope=2.0, intercept=-1000.0)
    np.testing.assert_allclose(read_hu(_only_slice(tmp_path / "s")),
                               STORED.astype(np.float32) * 2 - 1000)
    make_ct(tmp_path / "n" / "a.dcm", pixels=STORED, slope=None, intercept=None)
    np.testing.assert_array_equal(read_hu(_only_slice(tmp_path / "n")), STORED)


def test_signed_pixels(tmp_path):
    stored = np.array([[-1000, -1], [0, 3000]], dtype=np.int16).repeat(8, 0).repeat(8, 1)
    make_ct(tmp_path / "a.dcm", pixels=stored, signed=True, intercept=0.0)
    np.testing.assert_array_equal(read_hu(_only_slice(tmp_path)), stored)


@pytest.mark.parametrize("syntax", [
    "1.2.840.10008.1.2",        # implicit VR little endian
    "1.2.840.10008.1.2.1",      # explicit VR little endian
    "1.2.840.10008.1.2.5",      # RLE lossless (pydicom's own encoder)
])
def test_round_trip(tmp_path, syntax):
    make_ct(tmp_path / "a.dcm", pixels=STORED, transfer_syntax=syntax)
    ref = _only_slice(tmp_path)
    import pydicom

    assert pydicom.dcmread(ref.path).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(read_hu(ref), STORED.astype(np.float32) - 1024)


@pytest.mark.parametrize("syntax, name", [
    ("1.2.840.10008.1.2.4.90", "JPEG2000Lossless"),
    ("1.2.840.10008.1.2.4.80", "JPEGLSLossless"),
])
def test_round_trip_with_optional_encoder(tmp_path, syntax, name):
    from pydicom.pixels import encoders

    if not getattr(encoders, f"{name}Encoder").is_available:
        pytest.skip(f"no {name} encoder installed here (JPEG-LS needs pyjpegls or gdcm), so "
                    "this round trip cannot be made; tests/dicom/test_shared_studies.py covers "
                    "JPEG Lossless and JPEG 2000 decoding")
    # 64 x 64: OpenJPEG's default 6 resolution levels do not fit a 16 x 16 image.
    stored = RNG.integers(0, 3000, size=(64, 64)).astype(np.uint16)
    make_ct(tmp_path / "a.dcm", pixels=stored, transfer_syntax=syntax, size=64)
    np.testing.assert_array_equal(read_hu(_only_slice(tmp_path)),
                                  stored.astype(np.float32) - 1024)


def test_enhanced_multiframe_per_frame_rescale(tmp_path):
    make_enhanced_ct(tmp_path / "enh.dcm", [
        {"z": 0.0, "value": 1000},                                  # shared: -1024
        {"z": 10.0, "value": 100, "slope": 2, "intercept": -500},   # per frame
    ])
    series = read_study(tmp_path).series
    top, bottom = series.slices
    assert top.frame == 1 and bottom.frame == 0
    assert np.all(read_hu(top) == 2 * 100 - 500)
    assert np.all(read_hu(bottom) == 1000 - 1024)


def test_missing_codec_fails_early_naming_file_and_fix(tmp_path):
    make_jpeg_xl_ct(tmp_path / "xl.dcm")
    with pytest.raises(DicomError, match=r"cannot decode xl\.dcm: transfer syntax .*"
                                         r"1\.2\.840\.10008\.1\.2\.4\.110.*gdcm"):
        read_study(tmp_path)


def test_read_hu_names_the_package_for_a_missing_plugin(tmp_path, monkeypatch):
    # Simulate a machine without pylibjpeg-openjpeg: JPEG 2000 has a decoder, no plugin.
    import pydicom.pixels

    make_ct(tmp_path / "a.dcm")
    ref = _only_slice(tmp_path)
    real = pydicom.pixels.get_decoder

    class _NoPlugin:
        is_available = False

    monkeypatch.setattr(pydicom.pixels, "get_decoder",
                        lambda uid: _NoPlugin() if uid == "1.2.840.10008.1.2.1" else real(uid))
    with pytest.raises(DicomError, match=r"cannot decode a\.dcm.*install gdcm"):
        read_hu(ref)
    from ctedge.dicom.codecs import missing_codec

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: _NoPlugin())
    assert "pylibjpeg-openjpeg" in missing_codec("1.2.840.10008.1.2.4.90")
    assert "pylibjpeg-libjpeg" in missing_codec("1.2.840.10008.1.2.4.70")
    assert "pylibjpeg-libjpeg" in missing_codec("1.2.840.10008.1.2.4.80")
    assert "pylibjpeg-rle" in missing_codec("1.2.840.10008.1.2.5")


def test_corrupt_compressed_data_is_a_dicom_error(tmp_path):
    make_ct(tmp_path / "a.dcm", pixels=STORED, transfer_syntax="1.2.840.10008.1.2.5")
    ref = _only_slice(tmp_path)
    data = bytearray(ref.path.read_bytes())
    data[-300:] = bytes(300)
    ref.path.write_bytes(bytes(data))
    with pytest.raises(DicomError, match=r"cannot decode the pixel data of a\.dcm"):
        read_hu(ref)


def test_read_hu_pickles(tmp_path):
    import pickle

    make_ct(tmp_path / "a.dcm", pixels=STORED)
    ref = _only_slice(tmp_path)
    func, ref2 = pickle.loads(pickle.dumps((read_hu, ref)))
    np.testing.assert_array_equal(func(ref2), read_hu(ref))


def test_file_without_preamble_or_meta_is_read_as_implicit_vr(tmp_path):
    """Old scanners write bare datasets: no 128-byte preamble, no "DICM", no file meta."""
    import pydicom
    from pydicom.dataset import FileMetaDataset

    make_ct(tmp_path / "src.dcm", pixels=STORED)
    ds = pydicom.dcmread(tmp_path / "src.dcm")
    ds.file_meta = FileMetaDataset()
    ds.preamble = None
    (tmp_path / "src.dcm").unlink()
    ds.save_as(tmp_path / "bare", implicit_vr=True, little_endian=True)
    assert (tmp_path / "bare").read_bytes()[128:132] != b"DICM"
    ref = _only_slice(tmp_path)
    np.testing.assert_array_equal(read_hu(ref), STORED.astype(np.float32) - 1024)
