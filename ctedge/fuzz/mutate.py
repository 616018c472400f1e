"""Deterministic mutations of one DICOM file, at three levels.

header: rewrite one element found by parsing the file (its VR, value or length field), chosen
    among the elements the pipeline reads (frames, rows, columns, spacing, orientation,
    position, InstanceNumber, rescale, bits, transfer syntax, UIDs, identifiers).
byte:   bit flips, truncation, insertion, deletion, overwritten runs anywhere in the file.
codec:  changes inside one fragment of encapsulated pixel data (JPEG Lossless, JPEG 2000,
    RLE), item lengths kept consistent so the decoder, not the parser, meets the damage.

`mutate(seed_bytes, random.Random(x))` returns (new bytes, a one-line description).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

# Elements the pipeline reads, by tag.
TARGETS = {
    0x00280008: "NumberOfFrames", 0x00280010: "Rows", 0x00280011: "Columns",
    0x00280030: "PixelSpacing", 0x00200037: "ImageOrientationPatient",
    0x00200032: "ImagePositionPatient", 0x00200013: "InstanceNumber",
    0x00281053: "RescaleSlope", 0x00281052: "RescaleIntercept", 0x00280100: "BitsAllocated",
    0x00280101: "BitsStored", 0x00280102: "HighBit", 0x00280103: "PixelRepresentation",
    0x00280002: "SamplesPerPixel", 0x00280004: "PhotometricInterpretation",
    0x00020010: "TransferSyntaxUID", 0x00080016: "SOPClassUID", 0x0020000E: "SeriesInstanceUID",
    0x00080008: "ImageType", 0x00080060: "Modality", 0x00100010: "PatientName",
    0x00100020: "PatientID", 0x00080050: "AccessionNumber", 0x52009230: "PerFrameFunctionalGroups",
    0x52009229: "SharedFunctionalGroups", 0x7FE00010: "PixelData", 0x00180050: "SliceThickness",
}
NUMBER_TEXTS = [b"1e400", b"-1e400", b"nan", b"NaN", b"inf", b"-inf", b"0", b"-0", b"-1",
                b"2147483647", b"-2147483648", b"4294967296", b"99999999999999999999999",
                b"1e-320", b"1\\0", b"0\\0", b"-0.5\\-0.5", b"abc", b"", b"\x00\x00",
                b"1\\2\\3\\4\\5\\6\\7", b"1e308\\1e308", b"1e38\\-1e38\\1e38\\1e38\\1e38\\1e38",
                b"0\\0\\0\\0\\0\\0", b"1\\0\\0\\1\\0\\0", b"\xff\xfe", b"100000", b"1048576",
                b"65536", b"3.5", b" 12 "]
BINARY_US = [0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 32, 33, 64, 0x7FFF, 0x8000, 0xFFFF]
UID_TEXTS = [b"1.2.840.10008.1.2.2\x00", b"1.2.840.10008.1.2.1.99", b"1.2.840.10008.1.2.4.90",
             b"1.2.840.10008.1.2.4.70", b"1.2.840.10008.1.2.5\x00", b"1.2.840.10008.1.2\x00",
             b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.80", b"9.9.9", b"",
             b"1.2.840.10008.5.1.4.1.1.2.1", b"1.2.840.10008.5.1.4.1.1.88.67",
             b"\xc3\x28.1.2", b"FZ-7Q2X-PID\x00"]
VRS = [b"XX", b"UN", b"SQ", b"OB", b"OW", b"US", b"SS", b"UL", b"FL", b"FD", b"IS", b"DS",
       b"UI", b"LO", b"CS", b"AT", b"UT", b"\x00\x00", b"ob"]
LENGTHS = [0, 1, 2, 3, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF, 0x10000, 0x1000000]
FRAME_COUNTS = [b"0", b"2", b"100000", b"2147483647", b"4294967295", b"-1", b"1.5", b"3\\3"]


@dataclass
class Element:
    """Where one top-level element sits in the file (byte offsets)."""

    tag: int
    vr: bytes | None  # None for implicit VR
    header: int  # offset of the tag
    length_at: int  # offset of the length field
    length_size: int  # 2 or 4
    value: int  # offset of the value
    length: int  # declared length (0xFFFFFFFF: undefined)
    little: bool


def mutate(data: bytes, rng: random.Random, encapsulated: bool) -> tuple[bytes, str]:
    """One mutation of `data`; the level is drawn with weights header 4, byte 3, codec 3."""
    levels = ["header"] * 4 + ["byte"] * 3 + (["codec"] * 3 if encapsulated else [])
    level = rng.choice(levels)
    if level == "header":
        elements = top_level_elements(data)
        if elements:
            return header_mutation(data, elements, rng)
    if level == "codec":
        fragments = pixel_fragments(data)
        if fragments:
            return codec_mutation(data, fragments, rng)
    return byte_mutation(data, rng)


# -- parsing: where elements and fragments are -------------------------------------------------

def top_level_elements(data: bytes) -> list[Element]:
    """Top-level elements of the file meta and the data set (not of deflated data sets)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return []
    out: list[Element] = []
    pos, implicit, little = 132, False, True
    syntax = None
    while pos + 8 <= len(data):
        el = _element_at(data, pos, implicit=False, little=True)
        if el is None or (el.tag >> 16) != 0x0002:
            break
        out.append(el)
        if el.tag == 0x00020010:
            syntax = data[el.value:el.value + el.length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = el.value + el.length
    if syntax == "1.2.840.10008.1.2.1.99":
        return out
    implicit = syntax == "1.2.840.10008.1.2"
    little = syntax != "1.2.840.10008.1.2.2"
    while pos + 8 <= len(data):
        el = _element_at(data, pos, implicit=implicit, little=little)
        if el is None:
            break
        out.append(el)
        if el.length == 0xFFFFFFFF:
            end = _skip_undefined(data, el.value, implicit, little)
            if end is None:
                break
            pos = end
        else:
            pos = el.value + el.length
    return out


_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}


def _element_at(data: bytes, pos: int, implicit: bool, little: bool) -> Element | None:
    e = "<" if little else ">"
    if pos + 8 > len(data):
        return None
    group, elem = struct.unpack(e + "HH", data[pos:pos + 4])
    tag = (group << 16) | elem
    if implicit:
        length = struct.unpack(e + "I", data[pos + 4:pos + 8])[0]
        return Element(tag, None, pos, pos + 4, 4, pos + 8, length, little)
    vr = data[pos + 4:pos + 6]
    if not (vr.isalpha() and vr.isupper()):
        return None
    if vr in _LONG_VRS:
        if pos + 12 > len(data):
            return None
        length = struct.unpack(e + "I", data[pos + 8:pos + 12])[0]
        return Element(tag, vr, pos, pos + 8, 4, pos + 12, length, little)
    length = struct.unpack(e + "H", data[pos + 6:pos + 8])[0]
    return Element(tag, vr, pos, pos + 6, 2, pos + 8, length, little)


def _skip_undefined(data: bytes, pos: int, implicit: bool, little: bool) -> int | None:
    """End offset of an undefined-length value starting at `pos` (items up to the sequence
    delimiter), or None if the file ends first."""
    e = "<" if little else ">"
    depth_guard = 0
    while pos + 8 <= len(data):
        depth_guard += 1
        if depth_guard > 100000:
            return None
        group, elem, length = struct.unpack(e + "HHI", data[pos:pos + 8])
        tag = (group << 16) | elem
        pos += 8
        if tag == 0xFFFEE0DD:  # sequence delimiter
            return pos
        if tag != 0xFFFEE000:
            return None
        if length != 0xFFFFFFFF:
            pos += length
            continue
        # an undefined-length item: elements until the item delimiter
        while pos + 8 <= len(data):
            group, elem = struct.unpack(e + "HH", data[pos:pos + 4])
            if (group << 16 | elem) == 0xFFFEE00D:
                pos += 8
                break
            el = _element_at(data, pos, implicit, little)
            if el is None:
                return None
            if el.length == 0xFFFFFFFF:
                end = _skip_undefined(data, el.value, implicit, little)
                if end is None:
                    return None
                pos = end
            else:
                pos = el.value + el.length
        else:
            return None
    return None


def pixel_fragments(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each fragment item of encapsulated Pixel Data (not the offset
    table)."""
    for el in top_level_elements(data):
        if el.tag == 0x7FE00010 and el.length == 0xFFFFFFFF:
            out, pos, first = [], el.value, True
            while pos + 8 <= len(data):
                tag_g, tag_e, length = struct.unpack("<HHI", data[pos:pos + 8])
                if (tag_g, tag_e) != (0xFFFE, 0xE000):
                    break
                if not first:
                    out.append((pos, length))
                first = False
                pos += 8 + length
            return out
    return []


# -- the three levels -----------------------------------------------------------------------------

def header_mutation(data: bytes, elements: list[Element], rng: random.Random):
    targets = [el for el in elements if el.tag in TARGETS] or elements
    el = rng.choice(targets)
    name = TARGETS.get(el.tag, f"({el.tag >> 16:04X},{el.tag & 0xFFFF:04X})")
    kind = rng.choice(["value", "value", "value", "length", "vr", "frames"])
    if kind == "frames":
        value = rng.choice(FRAME_COUNTS)
        nof = next((x for x in elements if x.tag == 0x00280008), None)
        if nof is not None:
            return _replace_value(data, nof, value), f"header NumberOfFrames = {value!r}"
        return _insert_element(data, elements, 0x00280008, b"IS", value), \
            f"header NumberOfFrames added = {value!r}"
    if kind == "vr" and el.vr is not None:
        vr = rng.choice(VRS)
        out = bytearray(data)
        out[el.header + 4:el.header + 6] = vr
        return bytes(out), f"header {name} VR {el.vr.decode()} -> {vr!r}"
    if kind == "length" or el.tag == 0x7FE00010 or el.length == 0xFFFFFFFF:
        length = rng.choice(LENGTHS + [max(0, el.length + rng.randint(-3, 3))])
        out = bytearray(data)
        e = "<" if el.little else ">"
        if el.length_size == 2:
            out[el.length_at:el.length_at + 2] = struct.pack(e + "H", length & 0xFFFF)
        else:
            out[el.length_at:el.length_at + 4] = struct.pack(e + "I", length & 0xFFFFFFFF)
        return bytes(out), f"header {name} length {el.length} -> {length}"
    value = _value_for(el, rng)
    return _replace_value(data, el, value), f"header {name} = {value[:40]!r}"


def _value_for(el: Element, rng: random.Random) -> bytes:
    if el.vr in (b"US", b"SS") or (el.vr is None and el.length == 2):
        fmt = ("<" if el.little else ">") + "H"
        if rng.random() < 0.8:
            return struct.pack(fmt, rng.choice(BINARY_US))
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 3, 4])))
    if el.vr == b"UI" or el.tag in (0x00020010, 0x00080016, 0x0020000E):
        return rng.choice(UID_TEXTS)
    if el.vr in (b"SQ",) or el.tag in (0x52009230, 0x52009229):
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 24)))
    return rng.choice(NUMBER_TEXTS)


def _replace_value(data: bytes, el: Element, value: bytes) -> bytes:
    if len(value) % 2:
        value += b" "
    e = "<" if el.little else ">"
    if el.length_size == 2:
        if len(value) > 0xFFFF:
            value = value[:0xFFFE]
        length = struct.pack(e + "H", len(value))
    else:
        length = struct.pack(e + "I", len(value))
    old_end = el.value + (0 if el.length == 0xFFFFFFFF else el.length)
    if el.length == 0xFFFFFFFF:
        end = _skip_undefined(data, el.value, el.vr is None, el.little)
        old_end = end if end is not None else el.value
    return data[:el.length_at] + length + value + data[old_end:]


def _insert_element(data: bytes, elements: list[Element], tag: int, vr: bytes,
                    value: bytes) -> bytes:
    """Insert an element (explicit VR, little endian files only; else appended raw) before the
    first element with a larger tag in the data set."""
    if len(value) % 2:
        value += b" "
    body = [el for el in elements if el.tag >> 16 != 0x0002]
    if not body:
        return data
    after = next((el for el in body if el.tag > tag), None)
    pos = after.header if after else len(data)
    e = "<" if body[0].little else ">"
    head = struct.pack(e + "HH", tag >> 16, tag & 0xFFFF)
    if body[0].vr is None:
        raw = head + struct.pack(e + "I", len(value)) + value
    else:
        raw = head + vr + struct.pack(e + "H", len(value)) + value
    return data[:pos] + raw + data[pos:]


def byte_mutation(data: bytes, rng: random.Random):
    kind = rng.choice(["flip", "flip", "truncate", "insert", "delete", "overwrite"])
    # Half the time aim at the header (the first 1.5 KB), where a flip changes meaning most.
    limit = len(data) if rng.random() < 0.5 else min(len(data), 1536)
    pos = rng.randrange(max(1, limit))
    out = bytearray(data)
    if kind == "flip":
        n = rng.randint(1, 8)
        spots = sorted(rng.randrange(max(1, limit)) for _ in range(n))
        for p in spots:
            out[p] ^= 1 << rng.randrange(8)
        return bytes(out), f"byte flip {n} bits at {spots[:4]}"
    if kind == "truncate":
        return bytes(out[:pos]), f"byte truncate at {pos} of {len(data)}"
    if kind == "insert":
        n = rng.choice([1, 2, 4, 8, 64])
        blob = bytes(rng.randrange(256) for _ in range(n))
        return bytes(out[:pos] + blob + out[pos:]), f"byte insert {n} at {pos}"
    if kind == "delete":
        n = rng.choice([1, 2, 4, 8, 64])
        return bytes(out[:pos] + out[pos + n:]), f"byte delete {n} at {pos}"
    n = rng.choice([2, 4, 16, 128])
    fill = rng.choice([0x00, 0xFF, None])
    blob = bytes(fill if fill is not None else rng.randrange(256) for _ in range(n))
    out[pos:pos + n] = blob
    return bytes(out[:len(data)]), f"byte overwrite {n} at {pos}"


# JPEG markers and JPEG 2000 markers a decoder reacts to.
_MARKERS = [b"\xff\xd9", b"\xff\xd8", b"\xff\xc3", b"\xff\xc4", b"\xff\xda", b"\xff\x4f",
            b"\xff\x51", b"\xff\x52", b"\xff\x90", b"\xff\x93", b"\xff\xd9\xff\xd9", b"\xff"]


def codec_mutation(data: bytes, fragments: list[tuple[int, int]], rng: random.Random):
    offset, length = rng.choice(fragments)
    start = offset + 8
    frag = bytearray(data[start:start + length])
    if not frag:
        return byte_mutation(data, rng)
    kind = rng.choice(["flip", "flip", "flip", "truncate", "marker", "zero", "header-flip",
                       "size"])
    p = rng.randrange(len(frag))
    if kind == "flip":
        n = rng.randint(1, 16)
        for _ in range(n):
            frag[rng.randrange(len(frag))] ^= 1 << rng.randrange(8)
        what = f"{n} bit flips"
    elif kind == "header-flip":  # codec headers (SOF, SIZ, RLE segment table) are at the start
        n = rng.randint(1, 4)
        for _ in range(n):
            frag[rng.randrange(min(len(frag), 96))] ^= 1 << rng.randrange(8)
        what = f"{n} bit flips in the first 96 bytes"
    elif kind == "truncate":
        frag = frag[:p & ~1]
        what = f"truncated to {len(frag)} bytes"
    elif kind == "marker":
        m = rng.choice(_MARKERS)
        frag[p:p] = m
        what = f"marker {m.hex()} inserted at {p}"
    elif kind == "zero":
        n = rng.choice([2, 16, 256, 4096])
        frag[p:p + n] = bytes(min(n, len(frag) - p))
        what = f"{n} bytes zeroed at {p}"
    else:  # "size": a big value into a 16/32-bit field near the start (SOF/SIZ dimensions,
        # RLE segment count/offsets)
        q = rng.randrange(min(len(frag), 64) - 3) if len(frag) > 4 else 0
        val = rng.choice([b"\xff\xff", b"\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x10\x00\x00",
                          b"\x10\x00"])
        frag[q:q + len(val)] = val
        what = f"value {val.hex()} written at {q}"
    if len(frag) % 2:
        frag += b"\x00"
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(frag)) + bytes(frag)
    return data[:offset] + item + data[start + length:], f"codec fragment@{offset}: {what}"



def rewrite(data: bytes, tag: int, *, value: bytes | None = None, vr: bytes | None = None,
            length: int | None = None) -> bytes:
    """Set one top-level element's value (length fixed up), VR bytes or raw length field:
    the building block of hand-made malformed files (regression tests)."""
    elements = top_level_elements(data)
    el = next((e for e in elements if e.tag == tag), None)
    if el is None:
        if value is None:
            raise KeyError(f"tag {tag:08X} not in the file")
        return _insert_element(data, elements, tag, vr or b"UN", value)
    if value is not None:
        data = _replace_value(data, el, value)
        el = next(e for e in top_level_elements(data) if e.tag == tag)
    out = bytearray(data)
    if vr is not None:
        out[el.header + 4:el.header + 6] = vr
    if length is not None:
        e = "<" if el.little else ">"
        size = el.length_size
        out[el.length_at:el.length_at + size] = struct.pack(e + ("H" if size == 2 else "I"),
                                                             length)
    return bytes(out)
