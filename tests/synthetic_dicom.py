"""Synthetic DICOM made by the tests: tiny CT slices, scouts, dose reports, multi-frame CT.

The `ct_factory` fixture in tests/conftest.py hands these builders to any test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
PATIENT_ID = "SECRET-PID-4711"
PATIENT_NAME = "Testperson^Hildegard"
ACCESSION = "ACC99887766"
BIRTH_DATE = "19510203"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _base(sop_class: str, series_uid: str | None, transfer_syntax: str):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.AccessionNumber = ACCESSION
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid if series_uid is not None else ""
    ds.SeriesNumber = 1
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    return ds


def make_ct(path: Path, *, z: float | None = 0.0, instance: int | None = 1,
            series_uid: str | None = "1.2.826.0.1.3680043.8.498.10", pixels=None,
            slope: float | None = None, intercept: float | None = -1024.0,
            transfer_syntax: str = "1.2.840.10008.1.2.1", image_type=("ORIGINAL", "PRIMARY",
                                                                        "AXIAL"),
            orientation=AXIAL, modality: str = "CT", sop_class: str = CT_IMAGE,
            with_pixels: bool = True, signed: bool = False, description: str = "Chest",
            size: int = 16, spacing: float = 0.5) -> Path:
    """Write one small CT slice; `pixels` are the stored values (default: a ramp)."""
    from pydicom.uid import RLELossless

    native = transfer_syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
    ds = _base(sop_class, series_uid, transfer_syntax if native else "1.2.840.10008.1.2.1")
    ds.Modality = modality
    ds.SeriesDescription = description
    ds.ImageType = list(image_type)
    if instance is not None:
        ds.InstanceNumber = instance
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    if z is not None:
        ds.ImagePositionPatient = [-100.0, -100.0, float(z)]
    ds.PixelSpacing = [spacing, spacing]
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if with_pixels:
        if pixels is None:
            pixels = np.arange(size * size).reshape(size, size) % 2000
        pixels = np.asarray(pixels, dtype=np.int16 if signed else np.uint16)
        ds.PixelData = pixels.tobytes()
        if transfer_syntax == RLELossless:
            ds.compress(RLELossless, encoding_plugin="pydicom")
        elif not native:
            ds.compress(transfer_syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_dose_report(path: Path) -> Path:
    """An X-Ray Radiation Dose SR: a non-image object that lives beside CT series."""
    ds = _base(DOSE_SR, "1.2.826.0.1.3680043.8.498.99", "1.2.840.10008.1.2.1")
    ds.Modality = "SR"
    ds.SeriesDescription = "Dose Report"
    ds.save_as(path, enforce_file_format=True)
    return path


def make_enhanced_ct(path: Path, frames: list[dict], *, size: int = 8,
                     series_uid: str = "1.2.826.0.1.3680043.8.498.50") -> Path:
    """An Enhanced CT file; each frame dict has z, value (stored), and optional slope,
    intercept, frame_type."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = _base(ENHANCED_CT, series_uid, "1.2.840.10008.1.2.1")
    ds.Modality = "CT"
    ds.SeriesDescription = "Enhanced"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(frames)
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = list(AXIAL)
    shared.PlaneOrientationSequence = Sequence([orient])
    measures = Dataset()
    measures.PixelSpacing = [0.8, 0.8]
    measures.SliceThickness = 1.0
    shared.PixelMeasuresSequence = Sequence([measures])
    transform = Dataset()
    transform.RescaleSlope = 1
    transform.RescaleIntercept = -1024
    transform.RescaleType = "HU"
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    data = []
    for f in frames:
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [-10.0, -10.0, float(f["z"])]
        item.PlanePositionSequence = Sequence([pos])
        if "slope" in f or "intercept" in f:
            t = Dataset()
            t.RescaleSlope = f.get("slope", 1)
            t.RescaleIntercept = f.get("intercept", 0)
            t.RescaleType = "HU"
            item.PixelValueTransformationSequence = Sequence([t])
        ftype = Dataset()
        ftype.FrameType = list(f.get("frame_type", ("ORIGINAL", "PRIMARY", "AXIAL", "NONE")))
        item.CTImageFrameTypeSequence = Sequence([ftype])
        per_frame.append(item)
        data.append(np.full((size, size), f["value"], dtype=np.uint16))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(data).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def make_series(folder: Path, zs, *, instances=None, prefix: str = "slice", **kwargs) -> Path:
    instances = instances or list(range(1, len(zs) + 1))
    for i, (z, inst) in enumerate(zip(zs, instances, strict=True)):
        make_ct(folder / f"{prefix}{i:03d}.dcm", z=z, instance=inst, **kwargs)
    return folder


def make_jpeg_xl_ct(path, **kwargs):
    """Encapsulated pixel data in JPEG XL, which no decoder of pydicom 3.0 handles.

    pydicom 3.0 refuses to write a transfer syntax it does not know, so the file is
    assembled from its parts: preamble, file meta, explicit VR little endian body.
    """
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    make_ct(path, **kwargs)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.110"
    ds.PixelData = encapsulate([b"\xff\x0a" + bytes(64)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    path.write_bytes(bytes(128) + b"DICM" + meta.getvalue() + body.getvalue())
    return path
