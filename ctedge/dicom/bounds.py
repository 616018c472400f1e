"""What one file may make ctedge read, allocate or loop over, checked before any decoding.

A header can declare anything (2^31 frames, 1,048,576 rows, a 4 GB element); the bytes
present cannot lie. So: reads never ask for more than the file holds (`bounded`), the pixel
data is located and measured without reading it (`pixel_data`), and the image the header
declares must fit those bytes and sane limits (`image_layout`) before a decoder sees it.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

# Largest image side (pixels). CT slices are 512 or 1024; 4096 leaves room for micro-CT
# while keeping one decoded frame under 64 MB of float32.
MAX_SIDE = 4096
# Most frames one file may hold: an enhanced CT series is a few thousand frames at most.
MAX_FRAMES = 5000
# Largest data set a deflated file may inflate to (bytes): a guard against zip bombs.
MAX_INFLATED = 1 << 30
BITS_ALLOCATED = (8, 16, 32, 64)
DEFLATED = "1.2.840.10008.1.2.1.99"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
_PIXEL_TAGS = {0x7FE00010: "Pixel Data", 0x7FE00008: "Float Pixel Data",
               0x7FE00009: "Double Float Pixel Data"}
_ITEM, _SEQ_END = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)


class Unusable(Exception):
    """The file is not a readable CT image (a problem)."""


def value_of(ds, keyword: str):
    """The converted value of `keyword`, or None when it is absent or pydicom cannot convert
    it (an unknown VR, an IS of "1e400", bytes of the wrong length): never raises."""
    try:
        return ds.get(keyword)
    except Exception:
        return None


def int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None


class _Bounded(io.RawIOBase):
    """A read-only view of an open file whose reads never ask for more than is left, so a
    declared length of 4 GB costs what the file holds, not a 4 GB buffer."""

    def __init__(self, fp, size: int):
        self._fp, self._size = fp, size
        self.name = "<file>"  # never the path: pydicom quotes it in its messages

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self._size - self._fp.tell())
        return self._fp.read(left if n is None or n < 0 or n > left else n)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()

    @property
    def size(self) -> int:
        return self._size


class _InMemory(io.BytesIO):
    """A whole small file in memory: bounded by nature, and pydicom's hundreds of small reads
    per header become C calls instead of system calls through `_Bounded`."""

    name = "<file>"

    def __init__(self, data: bytes):
        super().__init__(data)
        self.size = len(data)


# Files up to this size are read whole for header indexing (a compressed CT slice is ~0.1-0.5 MB,
# an uncompressed one 0.5 MB); bigger ones (enhanced multi-frame) are read in place.
IN_MEMORY_MAX = 4 << 20


def bounded(fp, in_memory_max: int = 0) -> _Bounded | _InMemory:
    """Wrap an open binary file (at its start) so that no read outruns its size; a file of at
    most `in_memory_max` bytes is read whole into memory instead."""
    fp.seek(0, io.SEEK_END)
    size = fp.tell()
    fp.seek(0)
    if size <= in_memory_max:
        return _InMemory(fp.read(size))
    return _Bounded(fp, size)


@dataclass(frozen=True)
class PixelData:
    """Pixel data as found in the file: its byte count and, when encapsulated, its fragments."""

    encapsulated: bool
    length: int  # bytes present (native) or total fragment bytes (encapsulated)
    fragments: int  # encapsulated fragments (not the offset table); 0 when native


def pixel_data(fp: _Bounded, ds, syntax: str) -> PixelData | str:
    """Locate the pixel data after a `stop_before_pixels` read of `fp`; a problem string when
    it is missing or cut short. Reads item headers only, never the pixels."""
    if syntax == DEFLATED:
        return _deflated_pixel_data(fp)
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        implicit, little = syntax == IMPLICIT_VR_LITTLE_ENDIAN, True
    e = "<" if little else ">"
    pos, size = fp.tell(), fp.size
    if pos + 8 > size:
        return "no pixel data"
    fp.seek(pos)
    head = fp.read(12)
    group, element = struct.unpack(e + "HH", head[:4])
    if (group << 16) | element not in _PIXEL_TAGS:
        return "no pixel data"
    if implicit:
        length, start = struct.unpack(e + "I", head[4:8])[0], pos + 8
    else:
        if len(head) < 12:
            return "truncated pixel data"
        length, start = struct.unpack(e + "I", head[8:12])[0], pos + 12
    if length != 0xFFFFFFFF:
        if size - start < length:
            return f"truncated: pixel data has {size - start} of {length} bytes"
        return PixelData(False, length, 0)
    return _fragments(fp, start, size, e)


def _fragments(fp: _Bounded, pos: int, size: int, e: str) -> PixelData | str:
    """Walk the items of encapsulated pixel data (headers only: seek over each value)."""
    count, total, first = 0, 0, True
    while pos + 8 <= size:
        fp.seek(pos)
        group, element, length = struct.unpack(e + "HHI", fp.read(8))
        if (group, element) == _SEQ_END:
            break
        if (group, element) != _ITEM or length == 0xFFFFFFFF:
            return "malformed encapsulated pixel data (not an item where one is expected)"
        pos += 8 + length
        if pos > size:
            return "truncated: an encapsulated pixel data fragment runs past the end of the file"
        if not first:
            count += 1
            total += length
        first = False
    if count == 0:
        return "truncated pixel data (no compressed fragment)"
    return PixelData(True, total, count)


def _deflated_pixel_data(fp: _Bounded) -> PixelData | str:
    """A deflated file: inflate with a size cap (the data set must fit MAX_INFLATED), then
    read the pixel element from the inflated data set."""
    import pydicom

    fp.seek(0)
    end = meta_end(fp)
    if end is None:
        return "deflated data set without a readable file meta header"
    fp.seek(end)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    while True:
        chunk = fp.read(1 << 20)
        if not chunk:
            break
        total += len(inflater.decompress(chunk, MAX_INFLATED + 1 - total))
        if total > MAX_INFLATED or inflater.unconsumed_tail:
            return f"deflated data set inflates beyond {MAX_INFLATED >> 20} MB"
    fp.seek(0)
    ds = pydicom.dcmread(fp, force=True)
    for tag in _PIXEL_TAGS:
        if tag in ds:
            value = ds[tag].value
            if value is None:
                return "no pixel data"
            return PixelData(False, len(value), 0)
    return "no pixel data"


def meta_end(fp: _Bounded) -> int | None:
    """Offset where the file meta group ends (explicit VR little endian by definition)."""
    head = fp.read(132)
    if len(head) < 132 or head[128:] != b"DICM":
        return None
    pos = 132
    while True:
        fp.seek(pos)
        raw = fp.read(12)
        if len(raw) < 8:
            return None
        group = struct.unpack("<H", raw[:2])[0]
        if group != 0x0002:
            return pos
        vr = raw[4:6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR", b"OD", b"OF", b"OL", b"OV"):
            if len(raw) < 12:
                return None
            pos += 12 + struct.unpack("<I", raw[8:12])[0]
        else:
            pos += 8 + struct.unpack("<H", raw[6:8])[0]


@dataclass(frozen=True)
class Layout:
    """The image the header declares, checked against the bytes present."""

    rows: int
    columns: int
    frames: int
    bits_allocated: int


def image_layout(ds, pixels: PixelData) -> Layout:
    """Rows, columns, frames and bits the header declares; Unusable when they are out of range
    or do not fit the pixel bytes present (native: exactly enough bytes; encapsulated: at
    least one fragment per frame)."""
    rows, columns = int_or_none(value_of(ds, "Rows")), int_or_none(value_of(ds, "Columns"))
    if rows is None or columns is None or not (1 <= rows <= MAX_SIDE
                                              and 1 <= columns <= MAX_SIDE):
        raise Unusable(f"image size {rows} x {columns} is outside 1..{MAX_SIDE} pixels a side")
    frames_value = value_of(ds, "NumberOfFrames")
    frames = int_or_none(frames_value)
    if frames is None:
        if frames_value not in (None, ""):
            raise Unusable("NumberOfFrames is not a number")
        frames = 1
    if not 1 <= frames <= MAX_FRAMES:
        raise Unusable(f"NumberOfFrames {frames} is outside 1..{MAX_FRAMES}")
    bits = int_or_none(value_of(ds, "BitsAllocated"))
    if bits not in BITS_ALLOCATED:
        raise Unusable(f"BitsAllocated {bits} is not one of {BITS_ALLOCATED}")
    if pixels.encapsulated:
        if frames > pixels.fragments:
            raise Unusable(f"the header declares {frames} frames but the compressed pixel "
                           f"data holds {pixels.fragments} fragments")
    else:
        needed = rows * columns * frames * bits // 8
        if pixels.length < needed:
            raise Unusable(f"pixel data has {pixels.length} bytes; {frames} frame(s) of "
                           f"{rows} x {columns} at {bits} bits need {needed}")
    return Layout(rows, columns, frames, bits)
