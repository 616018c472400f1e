"""Header-only reading of one file into image frames, or a reason to leave it out."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

CT_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
MULTI_FRAME_CT = {"1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
# Storage SOP classes that never hold a CT slice: SR (incl. radiation dose SR), presentation
# states, RT objects (dose, plan, structures), waveforms, encapsulated documents, raw data,
# registrations, segmentations, key objects.
NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.11.",
    "1.2.840.10008.5.1.4.1.1.481.", "1.2.840.10008.5.1.4.1.1.9.",
    "1.2.840.10008.5.1.4.1.1.104.", "1.2.840.10008.5.1.4.1.1.66",
    "1.2.840.10008.5.1.4.1.1.67", "1.2.840.10008.5.1.4.1.1.68",
    "1.2.840.10008.3.1.2.",
)
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"
# "Mostly along z": the slice normal within 45 degrees of the patient's z axis. Gantry tilt
# (up to ~30 degrees) stays axial; coronal and sagittal images, scouts, do not.
AXIAL_MIN_NORMAL_Z = math.cos(math.radians(45))
_PIXEL_TAGS = {0x7FE00010: "Pixel Data", 0x7FE00008: "Float Pixel Data",
               0x7FE00009: "Double Float Pixel Data"}


class Skip(Exception):
    """The file is left out on purpose (a note, not a problem)."""


class Unusable(Exception):
    """The file is not a readable CT image (a problem)."""


@dataclass(frozen=True)
class Frame:
    """One 2-D image found in a header, before grouping into series."""

    path: Path
    frame: int | None
    series_uid: str
    fallback_fields: tuple
    modality: str
    description: str
    sop_class: str
    transfer_syntax: str
    orientation: tuple[float, ...] | None
    position: tuple[float, float, float] | None
    instance_number: int | None
    pixel_spacing_mm: tuple[float, float] | None
    shape: tuple[int, int]


def read_frames(path: Path, redactor) -> list[Frame]:
    """Read the header of `path` (never its pixels) and return its frames.

    Raises Skip for files left out on purpose, Unusable for broken or non-CT-image files.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    size = path.stat().st_size
    try:
        with open(path, "rb") as fp:
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True, force=False)
            except InvalidDicomError:
                # No "DICM" preamble: old files written without one are still DICOM when the
                # forced parse yields image attributes; anything else is not DICOM at all.
                fp.seek(0)
                ds = _forced(fp)
            pixel_problem = _pixel_data_problem(fp, size)
    except (Skip, Unusable):
        raise
    except Exception as exc:  # pydicom raises many types on malformed input
        raise Unusable(f"unreadable DICOM header ({type(exc).__name__})") from None
    redactor.learn(ds)

    meta = getattr(ds, "file_meta", None)
    media_sop = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
    sop = str(ds.get("SOPClassUID", "") or media_sop).strip()
    if sop == MEDIA_DIRECTORY or "DirectoryRecordSequence" in ds:
        raise Skip("DICOMDIR (media directory)")
    if sop.startswith(NON_IMAGE_SOP_PREFIXES) and sop not in CT_IMAGE_SOP_CLASSES:
        raise Skip(f"not an image: {_sop_name(sop)}")
    if "LOCALIZER" in _upper_values(ds.get("ImageType")):
        raise Skip("localizer (ImageType LOCALIZER)")
    if pixel_problem:
        raise Unusable(pixel_problem)
    modality = str(ds.get("Modality", "") or "").upper()
    if sop in CT_IMAGE_SOP_CLASSES:
        modality = modality or "CT"
    if "Rows" not in ds or "Columns" not in ds:
        raise Unusable("image without Rows/Columns")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise Skip("colour image (SamplesPerPixel > 1), not a CT slice")

    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    ts = ts or IMPLICIT_VR_LITTLE_ENDIAN  # files without a meta header: DICOM's default
    common = dict(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "") or "").strip(),
        fallback_fields=(
            str(ds.get("StudyInstanceUID", "") or ""), str(ds.get("SeriesNumber", "") or ""),
            str(ds.get("FrameOfReferenceUID", "") or ""),
        ),
        modality=modality,
        description=redactor(str(ds.get("SeriesDescription", "") or "").strip()),
        sop_class=sop,
        transfer_syntax=ts,
        instance_number=_int_or_none(ds.get("InstanceNumber")),
        shape=(int(ds.Rows), int(ds.Columns)),
    )
    n_frames = _int_or_none(ds.get("NumberOfFrames")) or 1
    if sop in MULTI_FRAME_CT or "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds, n_frames, common)
    if n_frames > 1:
        raise Unusable(f"multi-frame image ({n_frames} frames) without per-frame positions")
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    _require_axial(orientation)
    return [Frame(frame=None, orientation=orientation,
                  position=_floats(ds.get("ImagePositionPatient"), 3),
                  pixel_spacing_mm=_floats(ds.get("PixelSpacing"), 2), **common)]


def slice_normal(orientation: tuple[float, ...]) -> tuple[float, float, float]:
    """Unit normal (row x column direction), turned to point towards the head (+z)."""
    r, c = orientation[:3], orientation[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n)) or 1.0
    sign = -1.0 if n[2] < 0 else 1.0
    return (sign * n[0] / norm, sign * n[1] / norm, sign * n[2] / norm)


def _enhanced_frames(ds, n_frames: int, common: dict) -> list[Frame]:
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) not in (0, n_frames):
        raise Unusable(f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items "
                       f"for {n_frames} frames")
    frames = []
    for i in range(n_frames):
        groups = [per_frame[i]] if per_frame else []
        groups.append(shared)

        def attr(seq, keyword, count, groups=groups):
            for g in groups:
                item = _first(g.get(seq)) if g is not None else None
                if item is not None and keyword in item:
                    return _floats(item.get(keyword), count)
            return None

        frame_type = None
        for g in groups:
            item = _first(g.get("CTImageFrameTypeSequence")) if g is not None else None
            if item is not None and "FrameType" in item:
                frame_type = item.FrameType
                break
        if "LOCALIZER" in _upper_values(frame_type):
            continue  # a scout frame inside the object: leave it out
        orientation = attr("PlaneOrientationSequence", "ImageOrientationPatient", 6) \
            or _floats(ds.get("ImageOrientationPatient"), 6)
        if orientation is not None and abs(slice_normal(orientation)[2]) < AXIAL_MIN_NORMAL_Z:
            continue
        frames.append(Frame(
            frame=i, orientation=orientation,
            position=attr("PlanePositionSequence", "ImagePositionPatient", 3),
            pixel_spacing_mm=attr("PixelMeasuresSequence", "PixelSpacing", 2)
            or _floats(ds.get("PixelSpacing"), 2),
            **common,
        ))
    if not frames:
        raise Skip("multi-frame object without axial image frames")
    return frames


def _require_axial(orientation) -> None:
    if orientation is not None and abs(slice_normal(orientation)[2]) < AXIAL_MIN_NORMAL_Z:
        raise Skip("not axial (slice normal more than 45 degrees from z)")


def _pixel_data_problem(fp, size: int) -> str | None:
    """Check, without reading it, that pixel data is present and not cut short."""
    pos = fp.tell()
    if pos + 8 > size:
        return "no pixel data"
    fp.seek(pos)
    head = fp.read(12)
    group, element = struct.unpack("<HH", head[:4])
    tag = (group << 16) | element
    if tag not in _PIXEL_TAGS:
        return "no pixel data"
    implicit = head[4:6] not in (b"OB", b"OW", b"OF", b"OD", b"UN")
    length = struct.unpack("<I", head[4:8] if implicit else head[8:12])[0]
    start = pos + (8 if implicit else 12)
    if length == 0xFFFFFFFF:  # encapsulated (compressed): needs at least one item
        return None if size - start >= 16 else "truncated pixel data"
    if size - start < length:
        return f"truncated: pixel data has {size - start} of {length} bytes"
    return None


def _forced(fp):
    import pydicom

    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
    except Exception:
        raise Unusable("not a DICOM file") from None
    if "SOPClassUID" not in ds and "Rows" not in ds:
        raise Unusable("not a DICOM file")
    return ds


def _sop_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid or "unknown SOP class"


def _first(seq):
    return seq[0] if seq else None


def _upper_values(value) -> set[str]:
    if value is None:
        return set()
    items = [value] if isinstance(value, str) else list(value)
    return {str(v).strip().upper() for v in items}


def _floats(value, count: int):
    if value is None:
        return None
    try:
        items = [float(v) for v in (value if not isinstance(value, (str, float, int))
                                    else [value])]
    except (TypeError, ValueError):
        return None
    if len(items) != count or not all(math.isfinite(v) for v in items):
        return None
    return tuple(items)


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
