"""`read_hu`: decode one slice (one file, one frame) to Hounsfield units."""

from __future__ import annotations

import functools

import numpy as np

from ctedge.errors import DicomError

from .codecs import require_codec
from .headers import IMPLICIT_VR_LITTLE_ENDIAN
from .model import SliceRef


def read_hu(ref: SliceRef) -> np.ndarray:
    """Decode the slice `ref` points at: float32 (rows, cols), HU = stored x slope + intercept.

    Reads only `ref.path` and decodes only `ref.frame` of a multi-frame file. Slope and
    intercept come from the frame's PixelValueTransformationSequence, then the shared
    functional groups, then RescaleSlope/RescaleIntercept, else 1 and 0. Pixel Padding Value
    is left as it is. Module-level (no state) so it pickles into worker processes.
    """
    import pydicom
    from pydicom.pixels import pixel_array

    name = ref.name or ref.path.name
    try:
        with open(ref.path, "rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
            meta = getattr(ds, "file_meta", None)
            syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
            require_codec(syntax or IMPLICIT_VR_LITTLE_ENDIAN, name)
            if syntax:
                stored = _decode(fp, ref.frame, syntax)
            else:  # no meta header: pixel_array needs one, so read whole and set the default
                fp.seek(0)
                full = pydicom.dcmread(fp, force=True)
                full.file_meta = pydicom.dataset.FileMetaDataset()
                full.file_meta.TransferSyntaxUID = IMPLICIT_VR_LITTLE_ENDIAN
                stored = pixel_array(full, index=ref.frame)
    except DicomError:
        raise
    except FileNotFoundError:
        raise DicomError(f"{name} has disappeared since the study was indexed; "
                         "read the study again") from None
    except Exception as exc:  # decoders raise many types on corrupt data
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DicomError(f"cannot decode the pixel data of {name} ({detail}); the file may be "
                         "truncated or corrupt: re-export it from the scanner or PACS") from None
    if stored.ndim == 3 and ref.frame is None and stored.shape[0] == 1:
        stored = stored[0]
    if stored.ndim != 2:
        raise DicomError(f"{name} holds an image of shape {stored.shape}, not one grey slice; "
                         "pass a CT series")
    slope, intercept = _rescale(ds, ref.frame)
    hu = stored.astype(np.float32)
    if slope != 1.0:
        hu *= np.float32(slope)
    if intercept != 0.0:
        hu += np.float32(intercept)
    return hu


def _decode(fp, frame: int | None, syntax: str) -> np.ndarray:
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
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if frame is not None and per_frame and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        seq = group.get("PixelValueTransformationSequence")
        if seq and "RescaleSlope" in seq[0]:
            return _number(seq[0].get("RescaleSlope"), 1.0), \
                _number(seq[0].get("RescaleIntercept"), 0.0)
    return _number(ds.get("RescaleSlope"), 1.0), _number(ds.get("RescaleIntercept"), 0.0)


def _number(value, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default
