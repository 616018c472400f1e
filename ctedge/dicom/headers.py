"""Header-only reading of one file into image frames, or a reason to leave it out."""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from .bounds import (
    DEFLATED,
    IN_MEMORY_MAX,
    Unusable,
    bounded,
    image_layout,
    int_or_none,
    meta_end,
    pixel_data,
    value_of,
)
from .privacy import WarningLog

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
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
# Positions beyond this (mm) are not positions: 1e308 would overflow the projection to inf.
MAX_POSITION_MM = 1e6


class Skip(Exception):
    """The file is left out on purpose (a note, not a problem)."""


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


def read_frames(path: Path, redactor, log: WarningLog | None = None) -> list[Frame]:
    """Read the header of `path` (never its pixels) and return its frames.

    Raises Skip for files left out on purpose, Unusable for broken or non-CT-image files.
    Every header value is converted here, inside the error handling (pydicom converts on
    first access), and sizes the header declares are checked against the bytes present.
    Library warnings go to `log`, never to the terminal.
    """
    log = log or WarningLog()
    with open(path, "rb") as raw:  # OSError here: the file cannot be opened
        try:
            with log.capture():
                return _read_frames(path, bounded(raw, IN_MEMORY_MAX), redactor)
        except Skip:
            raise
        except Unusable:
            _learn_raw(path, redactor)
            raise
        except Exception as exc:  # pydicom raises many types (OSError too) on malformed input
            _learn_raw(path, redactor)
            raise Unusable(f"unreadable DICOM header ({type(exc).__name__})") from None


def _learn_raw(path: Path, redactor) -> None:
    """A header too damaged to parse may still name the patient (and so may its file name);
    a deflated one, once inflated."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(1 << 16)
            redactor.learn_raw(head)
            if DEFLATED.encode() in head[:4096]:
                end = meta_end(bounded(raw)) or 132
                # The meta group itself may be damaged: look for the deflate stream near it.
                for start in range(end, min(end + 512, len(head)), 2):
                    inflated = _inflate(head[start:], 1 << 16)
                    if len(inflated) >= 64:
                        redactor.learn_raw(inflated)
                        break
    except OSError:
        pass


def _inflate(data: bytes, limit: int) -> bytes:
    try:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data, limit)
    except zlib.error:
        return b""


def _read_frames(path: Path, fp, redactor) -> list[Frame]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=False)
    except InvalidDicomError:
        # No "DICM" preamble: old files written without one are still DICOM when the
        # forced parse yields image attributes; anything else is not DICOM at all.
        fp.seek(0)
        ds = _forced(fp)
    header_end = fp.tell()  # where the pixel data starts, if any
    fp.seek(0)
    # Raw bytes first: a damaged VR or length parses as numbers or junk.
    redactor.learn_raw(fp.read(min(header_end, 1 << 16)))
    fp.seek(header_end)
    redactor.learn(ds)
    meta = getattr(ds, "file_meta", None)
    ts = _text(value_of(meta, "TransferSyntaxUID")) if meta is not None else ""
    ts = ts or IMPLICIT_VR_LITTLE_ENDIAN  # files without a meta header: DICOM's default
    if not _UID.fullmatch(ts):
        raise Unusable("the transfer syntax is not a UID")
    pixels = pixel_data(fp, ds, ts)

    media_sop = _text(value_of(meta, "MediaStorageSOPClassUID")) if meta is not None else ""
    sop = _text(value_of(ds, "SOPClassUID")) or media_sop
    if sop == MEDIA_DIRECTORY or "DirectoryRecordSequence" in ds:
        raise Skip("DICOMDIR (media directory)")
    if sop.startswith(NON_IMAGE_SOP_PREFIXES) and sop not in CT_IMAGE_SOP_CLASSES:
        raise Skip(f"not an image: {_sop_name(sop)}")
    if "LOCALIZER" in _upper_values(value_of(ds, "ImageType")):
        raise Skip("localizer (ImageType LOCALIZER)")
    if isinstance(pixels, str):
        raise Unusable(pixels)
    modality = _text(value_of(ds, "Modality")).upper()
    if sop in CT_IMAGE_SOP_CLASSES:
        modality = modality or "CT"
    if "Rows" not in ds or "Columns" not in ds:
        raise Unusable("image without Rows/Columns")
    if (int_or_none(value_of(ds, "SamplesPerPixel")) or 1) != 1:
        raise Skip("colour image (SamplesPerPixel > 1), not a CT slice")
    layout = image_layout(ds, pixels)  # raises Unusable when sizes do not fit the bytes

    common = dict(
        path=path,
        series_uid=_text(value_of(ds, "SeriesInstanceUID")),
        fallback_fields=(
            _text(value_of(ds, "StudyInstanceUID")), _text(value_of(ds, "SeriesNumber")),
            _text(value_of(ds, "FrameOfReferenceUID")),
        ),
        modality=modality,
        description=_text(value_of(ds, "SeriesDescription")),
        sop_class=sop,
        transfer_syntax=ts,
        instance_number=int_or_none(value_of(ds, "InstanceNumber")),
        shape=(layout.rows, layout.columns),
    )
    if sop in MULTI_FRAME_CT or "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds, layout.frames, common)
    if layout.frames > 1:
        raise Unusable(f"multi-frame image ({layout.frames} frames) without per-frame positions")
    orientation = _orientation(value_of(ds, "ImageOrientationPatient"))
    _require_axial(orientation)
    return [Frame(frame=None, orientation=orientation,
                  position=_position(value_of(ds, "ImagePositionPatient")),
                  pixel_spacing_mm=_spacing(value_of(ds, "PixelSpacing")), **common)]


def slice_normal(orientation: tuple[float, ...]) -> tuple[float, float, float] | None:
    """Unit normal (row x column direction), turned to point towards the head (+z); None when
    the two direction vectors are degenerate (zero, parallel)."""
    r, c = _unit(orientation[:3]), _unit(orientation[3:])
    if r is None or c is None:
        return None
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n))
    if not norm > 1e-6:
        return None
    sign = -1.0 if n[2] < 0 else 1.0
    return (sign * n[0] / norm, sign * n[1] / norm, sign * n[2] / norm)


def _unit(v) -> tuple[float, float, float] | None:
    scale = max(abs(x) for x in v)
    if not (scale > 0 and math.isfinite(scale)):
        return None
    v = [x / scale for x in v]  # scaled first: squares of 1e200 would overflow
    norm = math.sqrt(sum(x * x for x in v))
    return (v[0] / norm, v[1] / norm, v[2] / norm)


def _enhanced_frames(ds, n_frames: int, common: dict) -> list[Frame]:
    shared = _first(value_of(ds, "SharedFunctionalGroupsSequence"))
    per_frame = value_of(ds, "PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) not in (0, n_frames):
        raise Unusable(f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items "
                       f"for {n_frames} frames")
    top_orientation = _orientation(value_of(ds, "ImageOrientationPatient"))
    top_spacing = _spacing(value_of(ds, "PixelSpacing"))
    frames = []
    for i in range(n_frames):
        groups = [per_frame[i]] if per_frame else []
        groups.append(shared)

        def attr(seq, keyword, groups=groups):
            for g in groups:
                item = _first(value_of(g, seq)) if g is not None else None
                if item is not None and keyword in item:
                    return value_of(item, keyword)
            return None

        if "LOCALIZER" in _upper_values(attr("CTImageFrameTypeSequence", "FrameType")):
            continue  # a scout frame inside the object: leave it out
        orientation = _orientation(attr("PlaneOrientationSequence", "ImageOrientationPatient")) \
            or top_orientation
        if orientation is not None and not _is_axial(orientation):
            continue
        frames.append(Frame(
            frame=i, orientation=orientation,
            position=_position(attr("PlanePositionSequence", "ImagePositionPatient")),
            pixel_spacing_mm=_spacing(attr("PixelMeasuresSequence", "PixelSpacing"))
            or top_spacing,
            **common,
        ))
    if not frames:
        raise Skip("multi-frame object without axial image frames")
    return frames


def _is_axial(orientation) -> bool:
    normal = slice_normal(orientation)
    return normal is not None and abs(normal[2]) >= AXIAL_MIN_NORMAL_Z


def _require_axial(orientation) -> None:
    if orientation is not None and not _is_axial(orientation):
        raise Skip("not axial (slice normal more than 45 degrees from z)")


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
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError, KeyError):
        return None


def _text(value) -> str:
    """A header value as one clean line (a MultiValue joined), never raising."""
    if value is None:
        return ""
    try:
        items = [value] if isinstance(value, (str, bytes)) else list(value)
    except TypeError:
        items = [value]
    text = "\\".join(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in items)
    return " ".join(text.split()).strip("\x00 ")


def _upper_values(value) -> set[str]:
    if value is None:
        return set()
    try:
        items = [value] if isinstance(value, (str, bytes)) else list(value)
    except TypeError:
        items = [value]
    return {str(v).strip().upper() for v in items}


def _floats(value, count: int):
    """`count` finite floats, else None."""
    if value is None:
        return None
    try:
        items = [float(v) for v in (value if not isinstance(value, (str, bytes, float, int))
                                    else [value])]
    except (TypeError, ValueError, OverflowError):
        return None
    if len(items) != count or not all(math.isfinite(v) for v in items):
        return None
    return tuple(items)


def _orientation(value):
    """Six finite direction cosines whose two vectors define a plane, else None."""
    orientation = _floats(value, 6)
    if orientation is None or slice_normal(orientation) is None:
        return None
    return orientation


def _position(value):
    position = _floats(value, 3)
    if position is None or max(abs(v) for v in position) > MAX_POSITION_MM:
        return None
    return position


def _spacing(value):
    """(row, column) spacing in mm, both positive and at most 1 m, else None."""
    spacing = _floats(value, 2)
    if spacing is None or not all(0 < v <= 1000.0 for v in spacing):
        return None
    return spacing
