"""Which package decodes which transfer syntax, so a missing codec gets a useful message."""

from __future__ import annotations

from ctedge.errors import DicomError

_LIBJPEG = "pylibjpeg-libjpeg (pip install pylibjpeg pylibjpeg-libjpeg) or gdcm (python-gdcm)"
_OPENJPEG = "pylibjpeg-openjpeg (pip install pylibjpeg pylibjpeg-openjpeg) or gdcm (python-gdcm)"
_RLE = "pylibjpeg-rle (pip install pylibjpeg pylibjpeg-rle) or gdcm (python-gdcm)"

_PACKAGE_FOR = {
    "1.2.840.10008.1.2.4.50": _LIBJPEG,
    "1.2.840.10008.1.2.4.51": _LIBJPEG,
    "1.2.840.10008.1.2.4.57": _LIBJPEG,
    "1.2.840.10008.1.2.4.70": _LIBJPEG,
    "1.2.840.10008.1.2.4.80": _LIBJPEG,
    "1.2.840.10008.1.2.4.81": _LIBJPEG,
    "1.2.840.10008.1.2.4.90": _OPENJPEG,
    "1.2.840.10008.1.2.4.91": _OPENJPEG,
    "1.2.840.10008.1.2.4.201": _OPENJPEG,
    "1.2.840.10008.1.2.4.202": _OPENJPEG,
    "1.2.840.10008.1.2.4.203": _OPENJPEG,
    "1.2.840.10008.1.2.5": _RLE,
}
_UNSUPPORTED = (
    "no decoder for it is installed; install gdcm (pip install python-gdcm) if it supports "
    "this syntax, or convert the study to an uncompressed or JPEG Lossless transfer syntax "
    "(e.g. gdcmconv --raw, dcmtk dcmdjpeg) and read it again"
)


def transfer_syntax_label(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid


def missing_codec(uid: str) -> str | None:
    """None if pixel data in `uid` can be decoded here, else what to install (one phrase)."""
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return _UNSUPPORTED
    if decoder.is_available:
        return None
    return "install " + _PACKAGE_FOR.get(uid, "gdcm (pip install python-gdcm)")


def require_codec(uid: str, file: str) -> None:
    """Raise DicomError naming `file` and the package to install when `uid` cannot be decoded."""
    hint = missing_codec(uid)
    if hint:
        raise DicomError(
            f"cannot decode {file}: transfer syntax {transfer_syntax_label(uid)} is not "
            f"supported by the installed decoders; {hint}"
        )
