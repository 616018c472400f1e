"""Keep patient identifiers out of everything a study read reports.

File and folder names often carry a patient ID (COVID-CT-MD's do: 98C14734-ASSH_1.dcm), so
every string that leaves `read_study` (the study folder, file names, series keys,
descriptions, skip reasons, warnings, errors) goes through one `Redactor`, fed with the
identifiers of every file read. A value is found in any case and separator form
("98C14734-ASSH", "98c14734_assh", "98C14734ASSH"), and so are its fragments ("98C14734",
"ASSH"). Every redactor also teaches the process-wide `redact_known`, which the CLI applies
to its error lines.

Library warnings (pydicom's "Invalid value for VR UI: '<the UID>'") are captured by
`WarningLog`, never printed, and summarised as one line per kind.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections import Counter

IDENTIFIER_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                       "OtherPatientIDs")
REDACTED = "<redacted>"
# Shorter values and fragments ("12", "Li") are only redacted as whole tokens: as substrings
# they would blank out ordinary digits and letters of every file name.
_MIN_SUBSTRING = 4
# What separates parts of an identifier in names: DICOM's ^ and =, spaces, - _ . , / \
_SEPARATORS = r"[\^=\s\-_.,/\\]"
_SPLIT = re.compile(_SEPARATORS + "+")
_MAX_VALUE, _MAX_VALUES, _MAX_ITEMS = 200, 4096, 8


class Redactor:
    """Collects identifier values from datasets and removes them from strings."""

    def __init__(self, _global: bool = True) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern | None = None
        self._global = _global

    def learn(self, ds) -> None:
        """Remember the identifiers of one pydicom dataset (header only is enough).

        Never raises: a value pydicom cannot convert (unknown VR, bad bytes) is learnt from
        its raw bytes.
        """
        for keyword in IDENTIFIER_KEYWORDS:
            for text in _identifier_texts(ds, keyword):
                self.learn_value(text)

    def learn_raw(self, data: bytes) -> None:
        """Remember identifiers found by their tags in raw bytes (little endian, explicit or
        implicit VR): for files too damaged to parse, whose names may still carry them."""
        for tag, order in [(t, "little") for t in _RAW_TAGS] + \
                [(t[1::-1] + t[3:1:-1], "big") for t in _RAW_TAGS]:
            start = 0
            while (at := data.find(tag, start)) >= 0 and start < len(data):
                start = at + 4
                for value in _raw_values(data, at + 4, order):
                    self.learn_value(value)

    def learn_value(self, text: str) -> None:
        """Remember one identifier value (and its fragments).

        DICOM identifiers are at most 64 characters (PN: 3 x 64); a longer value is damage,
        and only its first fragments are kept, so no header can make the pattern huge.
        """
        text = text.strip().strip("\x00").strip()
        if not any(c.isalnum() for c in text):
            return  # separators alone identify no one (and would match everywhere)
        if len(text) > _MAX_VALUE:
            for fragment in [f for f in _SPLIT.split(text) if f][:8]:
                self.learn_value(fragment[:_MAX_VALUE])
            return
        if not text or text in self._values or len(self._values) >= _MAX_VALUES:
            return
        self._values.add(text)
        self._pattern = None
        if self._global:
            _KNOWN.learn_value(text)

    def __call__(self, text: str) -> str:
        if not self._values or not text:
            return text
        if self._pattern is None:
            self._pattern = _compile(self._values)
        return self._pattern.sub(REDACTED, text) if self._pattern else text

    def __getstate__(self):
        return {"_values": self._values, "_pattern": None, "_global": False}


def _identifier_texts(ds, keyword: str) -> list[str]:
    try:
        value = ds.get(keyword)
        if value is None:
            return []
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return [str(v) for v in list(value)[:_MAX_ITEMS]]
        return [str(value)]
    except Exception:  # unconvertible value: read its raw bytes instead
        pass
    try:
        from pydicom.datadict import tag_for_keyword

        raw = ds.get_item(tag_for_keyword(keyword))
        value = getattr(raw, "value", None)
        if isinstance(value, (bytes, bytearray)):
            return [value.decode("latin-1")]
    except Exception:
        pass
    return []


# (0010,0010) PatientName, (0010,0020) PatientID, (0010,0030) PatientBirthDate,
# (0008,0050) AccessionNumber, as little-endian tag bytes.
_RAW_TAGS = (b"\x10\x00\x10\x00", b"\x10\x00\x20\x00", b"\x10\x00\x30\x00",
             b"\x08\x00\x50\x00")
_PRINTABLE = re.compile(rb"[\x20-\x7e]{1,64}")


def _raw_values(data: bytes, pos: int, order: str = "little") -> list[str]:
    """Text after a tag at `pos` (explicit VR with a 2-byte length, or implicit with 4): the
    value its length declares, and the printable run there (the length may be damaged)."""
    head = data[pos:pos + 4]
    if len(head) < 4:
        return []
    if head[:2].isalpha() and head[:2].isupper():  # explicit VR, whatever it says
        length, start = int.from_bytes(head[2:4], order), pos + 4
    else:
        length, start = int.from_bytes(head, order), pos + 4
    out = []
    run = _PRINTABLE.match(data, start)
    if run:
        out.append(run.group().decode("ascii"))
    if 0 < length <= 64:
        match = _PRINTABLE.fullmatch(data[start:start + length].rstrip(b"\x00 "))
        if match:
            out.append(match.group().decode("ascii"))
    return out


def _compile(values: set[str]) -> re.Pattern | None:
    """One pattern: each value in any separator form, and each fragment."""
    long, short = set(), set()
    for value in values:
        compact = _SPLIT.sub("", value)
        fragments = [f for f in _SPLIT.split(value) if f]
        for piece in [compact, *fragments]:
            # one letter or digit ("A" of "A^B", "1" of "1-2") identifies nobody, and as a token
            # it would blank out "e.g.", "127.0.0.1" and "not a file" in every message
            if len(piece) >= 2 and any(c.isalnum() for c in piece):
                (long if len(piece) >= _MIN_SUBSTRING else short).add(piece)
    alternatives = []
    # Whole values with any (or no) separators between their characters, longest first.
    for piece in sorted(long, key=len, reverse=True):
        alternatives.append(f"{_SEPARATORS}*".join(re.escape(c) for c in piece))
    for piece in sorted(short, key=len, reverse=True):
        alternatives.append(rf"(?<![A-Za-z0-9]){re.escape(piece)}(?![A-Za-z0-9])")
    if not alternatives:
        return None
    return re.compile("|".join(alternatives), re.IGNORECASE)


_KNOWN = Redactor(_global=False)


def redact_known(text: str) -> str:
    """Remove every identifier any Redactor in this process has learnt (for error lines)."""
    return _KNOWN(text)


def forget_known() -> None:
    """Start a new command: identifiers of an earlier study in this process are dropped."""
    global _KNOWN
    _KNOWN = Redactor(_global=False)


_QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"|<[^>]*>|\S*[/\\]\S*")


def safe_detail(exc: BaseException, limit: int = 120) -> str:
    """A one-line account of a library exception that quotes no data: quoted values, byte
    strings and paths are cut out (they can hold element values or identifiers)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = _QUOTED.sub("...", text).strip()
    name = type(exc).__name__
    return f"{name}: {text[:limit]}" if text else name


class WarningLog:
    """Library warnings captured while reading, counted by kind (quoted values stripped)."""

    def __init__(self) -> None:
        self.kinds: Counter = Counter()

    @contextlib.contextmanager
    def capture(self):
        """Record every warning raised inside the block instead of printing it."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for w in caught:
                    self.kinds[_kind(w)] += 1

    def lines(self, redact=None) -> list[str]:
        """One line per kind: 'library warning (N x): <message without its values>'."""
        out = []
        for kind, n in sorted(self.kinds.items()):
            line = f"library warning ({n} x): {kind}"
            out.append(redact(line) if redact else line)
        return out


def _kind(w: warnings.WarningMessage) -> str:
    text = str(w.message).splitlines()[0] if str(w.message) else ""
    text = re.sub(r"https?://\S+", "", text)
    text = _QUOTED.sub("...", text).strip().rstrip(".")
    source = "pydicom" if "pydicom" in (w.filename or "") else \
        "numpy" if "numpy" in (w.filename or "") else "library"
    return f"{source} {w.category.__name__}: {text[:100]}"
