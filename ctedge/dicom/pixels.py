"""`read_hu`: decode one slice (one file, one frame) to Hounsfield units."""

from __future__ import annotations

import functools
import math

import numpy as np

from ctedge.errors import DicomError

from .bounds import DEFLATED, Unusable, bounded, image_layout, pixel_data, value_of
from .codecs import require_codec
from .headers import IMPLICIT_VR_LITTLE_ENDIAN
from .model import SliceRef
from .privacy import WarningLog, safe_detail

# Exceptions that mean "stop", not "this file is bad": never turned into a per-file problem.
_STOP = (KeyboardInterrupt, SystemExit, GeneratorExit)
# RLE is decoded by pydicom's own decoder: pylibjpeg-rle panics (a Rust panic, printed raw on
# stderr) on corrupt segments. pydicom's takes ~11 ms for a 512x512 slice against ~2 ms, about
# what a JPEG Lossless slice costs anyway, and RLE CT studies are rare.
_PLUGIN = {"1.2.840.10008.1.2.5": {"decoding_plugin": "pydicom"}}


def read_hu(ref: SliceRef) -> np.ndarray:
    """Decode the slice `ref` points at: float32 (rows, cols), HU = stored x slope + intercept.

    Reads only `ref.path` and decodes only `ref.frame` of a multi-frame file. Slope and
    intercept come from the frame's PixelValueTransformationSequence, then the shared
    functional groups, then RescaleSlope/RescaleIntercept, else 1 and 0. Pixel Padding Value
    is left as it is. Module-level (no state) so it pickles into worker processes.

    Every failure, whatever the decoder raises (pyo3's PanicException is not an Exception),
    becomes a DicomError naming the file; the sizes the header declares are checked against
    the bytes present before decoding, and the result is always finite. Library warnings are
    captured (read_study has reported those of the header already).
    """
    name = ref.name or ref.path.name
    try:
        with WarningLog().capture(), np.errstate(all="ignore"):
            stored, slope, intercept = _decode(ref, name)
    except DicomError:
        raise
    except FileNotFoundError:
        raise DicomError(f"{name} has disappeared since the study was indexed; "
                         "read the study again") from None
    except Unusable as why:
        raise DicomError(f"cannot decode the pixel data of {name} ({why}); re-export it "
                         "from the scanner or PACS") from None
    except BaseException as exc:  # decoders raise many types on corrupt data, panics included
        if isinstance(exc, _STOP):
            raise
        raise DicomError(f"cannot decode the pixel data of {name} ({safe_detail(exc)}); the "
                         "file may be truncated or corrupt: re-export it from the scanner or "
                         "PACS") from None
    if stored.ndim == 3 and ref.frame is None and stored.shape[0] == 1:
        stored = stored[0]
    if stored.ndim != 2:
        raise DicomError(f"{name} holds an image of shape {stored.shape}, not one grey slice; "
                         "pass a CT series")
    with np.errstate(all="ignore"):
        hu = stored.astype(np.float32)
        if slope != 1.0:
            hu *= np.float32(slope)
        if intercept != 0.0:
            hu += np.float32(intercept)
    if not np.isfinite(hu).all():
        raise DicomError(f"{name}: RescaleSlope {slope:g} and RescaleIntercept {intercept:g} "
                         "give values beyond float32; fix the rescale values of the file")
    return hu


def _decode(ref: SliceRef, name: str):
    """Stored values of the frame, and its slope and intercept."""
    import pydicom
    from pydicom.pixels import pixel_array

    with open(ref.path, "rb") as raw:
        fp = bounded(raw)
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
        meta = getattr(ds, "file_meta", None)
        syntax = str(value_of(meta, "TransferSyntaxUID") or "") if meta is not None else ""
        syntax = syntax.strip("\x00 ")
        pixels = pixel_data(fp, ds, syntax or IMPLICIT_VR_LITTLE_ENDIAN)
        if isinstance(pixels, str):
            raise Unusable(pixels)
        layout = image_layout(ds, pixels)
        if ref.frame is not None and not 0 <= ref.frame < layout.frames:
            raise Unusable(f"frame {ref.frame} of {layout.frames}")
        require_codec(syntax or IMPLICIT_VR_LITTLE_ENDIAN, name)
        fp.seek(0)
        if syntax and syntax != DEFLATED:
            stored = (pixel_array(fp, index=ref.frame, **_PLUGIN[syntax])
                      if syntax in _PLUGIN else _pixel_array(fp, ref.frame, syntax))
        else:  # deflated, or no meta header: decode from a whole data set
            full = pydicom.dcmread(fp, force=True)
            if not syntax:
                full.file_meta = pydicom.dataset.FileMetaDataset()
                full.file_meta.TransferSyntaxUID = IMPLICIT_VR_LITTLE_ENDIAN
            stored = pixel_array(full, index=ref.frame)
    slope, intercept = _rescale(ds, ref.frame)
    return stored, slope, intercept


def _pixel_array(fp, frame: int | None, syntax: str) -> np.ndarray:
    """pixel_array with pydicom's plugins in order, each tried until one decodes; gdcm only for
    JPEG Lossless (see _plugins)."""
    from pydicom.pixels import pixel_array

    plugins = _plugins(syntax)
    for plugin in plugins[:-1]:
        fp.seek(0)
        try:
            return pixel_array(fp, index=frame, decoding_plugin=plugin)
        except Exception:  # noqa: BLE001  (as pydicom does: try the next plugin)
            continue
    fp.seek(0)
    return pixel_array(fp, index=frame, decoding_plugin=plugins[-1] if plugins else "")


# JPEG Lossless (process 14 and its selection value 1): gdcm, first in pydicom's own order,
# decodes a 512x512 CT slice about twice as fast as pylibjpeg with identical pixels
# (tests/dicom/test_decoder_choice.py). Other syntaxes keep the plugins they had before gdcm
# became a dependency.
_GDCM_SYNTAXES = ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70")


@functools.lru_cache(maxsize=64)
def _plugins(syntax: str) -> tuple[str, ...]:
    """pydicom decoding plugins to try for `syntax`, in order; () = pydicom's default."""
    from pydicom.pixels import get_decoder

    try:
        plugins = get_decoder(syntax).available_plugins
    except (NotImplementedError, ValueError):  # native or unknown syntax: no plugins
        return ()
    if syntax in _GDCM_SYNTAXES or "gdcm" not in plugins:
        return ()
    return tuple(p for p in plugins if p != "gdcm")


def _rescale(ds, frame: int | None) -> tuple[float, float]:
    groups = []
    per_frame = value_of(ds, "PerFrameFunctionalGroupsSequence")
    if frame is not None and per_frame and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = value_of(ds, "SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        seq = value_of(group, "PixelValueTransformationSequence")
        if seq and "RescaleSlope" in seq[0]:
            return _number(value_of(seq[0], "RescaleSlope"), 1.0), \
                _number(value_of(seq[0], "RescaleIntercept"), 0.0)
    return _number(value_of(ds, "RescaleSlope"), 1.0), \
        _number(value_of(ds, "RescaleIntercept"), 0.0)


def _number(value, default: float) -> float:
    """A finite float, else `default` (absent, unparseable, NaN or infinite values)."""
    try:
        number = float(value) if value not in (None, "") else default
    except (TypeError, ValueError, OverflowError):
        return default
    return number if math.isfinite(number) else default
