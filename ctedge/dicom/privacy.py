"""Keep patient identifiers out of everything a study read reports.

File and folder names often carry a patient ID (COVID-CT-MD's do), so every string that
leaves `read_study` (file names, descriptions, warnings) goes through one `Redactor`, fed
with the identifiers of every file read.
"""

from __future__ import annotations

import re

IDENTIFIER_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                       "OtherPatientIDs")
REDACTED = "<redacted>"
# Shorter values ("12", "Li") are only redacted as whole tokens: as substrings they would
# blank out ordinary digits and letters of every file name.
_MIN_SUBSTRING = 4


class Redactor:
    """Collects identifier values from datasets and removes them from strings."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern | None = None

    def learn(self, ds) -> None:
        """Remember the identifiers of one pydicom dataset (header only is enough)."""
        from pydicom.multival import MultiValue

        for keyword in IDENTIFIER_KEYWORDS:
            value = ds.get(keyword)
            if value is None:
                continue
            items = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
            for item in items:
                text = str(item).strip()
                if not text:
                    continue
                parts = {text} | set(re.split(r"[\^=\s]+", text))
                new = {p for p in parts if p.strip()} - self._values
                if new:
                    self._values |= new
                    self._pattern = None

    def __call__(self, text: str) -> str:
        if not self._values or not text:
            return text
        if self._pattern is None:
            long = sorted((v for v in self._values if len(v) >= _MIN_SUBSTRING),
                          key=len, reverse=True)
            short = sorted(v for v in self._values if len(v) < _MIN_SUBSTRING)
            alternatives = [re.escape(v) for v in long]
            alternatives += [rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])" for v in short]
            self._pattern = re.compile("|".join(alternatives), re.IGNORECASE)
        return self._pattern.sub(REDACTED, text)
