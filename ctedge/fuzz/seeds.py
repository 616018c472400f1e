"""Seed files for fuzzing: small synthetic CT slices in every encoding ctedge reads, plus real
slices (the repo's sample, COVID-CT-MD, the JPEG 2000 edge case) when they are present.

Each seed is the bytes of one valid file; a seed's identifiers are known, so a case can check
that none of them reaches an output.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PATIENT_ID = "FZ-7Q2X-PID"
PATIENT_NAME = "Fuzzperson^Gertrud"
ACCESSION = "ACC5550123"
BIRTH_DATE = "19470815"
SYNTHETIC_IDENTIFIERS = (PATIENT_ID, PATIENT_NAME, ACCESSION, BIRTH_DATE)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"


@dataclass(frozen=True)
class Seed:
    """One valid file to mutate. identifiers: the patient identifier values it carries."""

    name: str
    data: bytes
    identifiers: tuple[str, ...]
    encapsulated: bool


def synthetic_seeds(size: int = 32) -> list[Seed]:
    """One slice per encoding (explicit/implicit VR, big endian, deflated, RLE, JPEG 2000) and
    one 3-frame Enhanced CT."""
    seeds = []
    for name, syntax in (("explicit-le", EXPLICIT_LE), ("implicit-le", IMPLICIT_LE),
                         ("explicit-be", EXPLICIT_BE), ("deflated", DEFLATED),
                         ("rle", RLE), ("j2k", J2K_LOSSLESS)):
        seeds.append(Seed(f"synthetic-{name}", synthetic_slice(syntax, size=size),
                          SYNTHETIC_IDENTIFIERS, syntax in (RLE, J2K_LOSSLESS)))
    seeds.append(Seed("synthetic-enhanced", synthetic_enhanced(size=size),
                      SYNTHETIC_IDENTIFIERS, False))
    return seeds


def real_seeds(repo: Path, shared_data: Path | None, per_study: int = 2) -> list[Seed]:
    """Real slices: the repo's sample study, and COVID-CT-MD and the JPEG 2000 edge case
    from `shared_data` when given and present."""
    files: list[Path] = []
    sample = repo / "samples" / "P001-every8th"
    if sample.is_dir():
        files += sorted(sample.glob("*.dcm"))[:per_study]
    if shared_data is not None and shared_data.is_dir():
        for study in ("covid-ct-md/CAP/cap001", "covid-ct-md/Normal/normal001",
                      "edge-cases/abdomen-j2k-no-uids"):
            folder = shared_data / study
            if folder.is_dir():
                files += sorted(p for p in folder.iterdir() if p.is_file())[:per_study]
    return [_real_seed(p) for p in files]


def _real_seed(path: Path) -> Seed:
    import pydicom

    data = path.read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    ids = []
    for keyword in ("PatientID", "PatientName", "AccessionNumber", "PatientBirthDate"):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            ids.append(value)
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    encapsulated = syntax not in (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED)
    return Seed(f"real-{path.parent.name}-{len(data)}", data, tuple(ids), encapsulated)


def _dataset(sop_class: str, syntax: str):
    from pydicom.dataset import Dataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.77.1"
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.AccessionNumber = ACCESSION
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.77.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.77.3"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.77.4"
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def _chest(size: int) -> np.ndarray:
    """Stored values (intercept -1024) of a body disc with two lungs: enough structure for
    the lung-field test to find lungs."""
    yy, xx = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    img = np.full((size, size), 24, dtype=np.uint16)  # air, -1000 HU
    img[xx ** 2 + yy ** 2 < 0.85] = 1064  # soft tissue, +40 HU
    for cx in (-0.4, 0.4):
        img[((xx - cx) / 0.3) ** 2 + (yy / 0.5) ** 2 < 1] = 174  # lung, -850 HU
    return img


def synthetic_slice(syntax: str, size: int = 32, z: float = 12.5, instance: int = 1) -> bytes:
    """One axial CT slice in transfer syntax `syntax` at position `z` (mm)."""
    ds = _dataset(CT_IMAGE, syntax)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = \
        f"1.2.826.0.1.3680043.8.498.77.1.{instance}"
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.ImagePositionPatient = [-100.0, -100.0, z]
    ds.PixelSpacing = [10.0, 10.0]  # a 32-pixel slice with a chest-sized field of view
    ds.SliceThickness = 2.0
    ds.Rows = ds.Columns = size
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    pixels = _chest(size)
    if syntax == EXPLICIT_BE:
        ds.PixelData = pixels.astype(">u2").tobytes()
    else:
        ds.PixelData = pixels.tobytes()
    if syntax in (RLE, J2K_LOSSLESS):
        ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
        kwargs = {"encoding_plugin": "pydicom"} if syntax == RLE else {}
        ds.compress(syntax, pixels, **kwargs)
    return _write(ds, syntax)


def synthetic_enhanced(size: int = 32, frames: int = 3) -> bytes:
    """An Enhanced CT object of `frames` axial frames with per-frame positions."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = _dataset(ENHANCED_CT, EXPLICIT_LE)
    ds.NumberOfFrames = frames
    ds.Rows = ds.Columns = size
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    shared.PlaneOrientationSequence = Sequence([orient])
    measures = Dataset()
    measures.PixelSpacing = [10.0, 10.0]
    measures.SliceThickness = 2.0
    shared.PixelMeasuresSequence = Sequence([measures])
    transform = Dataset()
    transform.RescaleSlope = 1
    transform.RescaleIntercept = -1024
    transform.RescaleType = "HU"
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    items = []
    for i in range(frames):
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [-100.0, -100.0, 2.0 * i]
        item.PlanePositionSequence = Sequence([pos])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.PixelData = np.stack([_chest(size)] * frames).tobytes()
    return _write(ds, EXPLICIT_LE)


def _write(ds, syntax: str) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
