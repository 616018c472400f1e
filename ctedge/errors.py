"""One error hierarchy. Every message says what went wrong and what to do next.

The CLI turns any `CtedgeError` into one line on stderr and exit code 2 (bad input);
anything else is an internal error (exit code 1).
"""


class CtedgeError(Exception):
    """Base class of every error ctedge raises on purpose."""


class DicomError(CtedgeError):
    """A study, series or file cannot be read as CT."""


class ImageError(CtedgeError):
    """A PNG/JPG slice cannot be read."""


class ModelError(CtedgeError):
    """A model artifact or engine is missing, corrupt or does not fit this runtime."""


class BackendUnavailable(CtedgeError):
    """An inference backend needs an optional dependency or hardware that is not here."""


class CalibrationError(CtedgeError):
    """INT8 calibration data is missing, empty or unreadable."""


class ParityError(CtedgeError):
    """A reduced-precision model disagrees with the FP32 reference beyond the gate."""


class DataError(CtedgeError):
    """A training or evaluation data set (folder, manifest) is malformed."""
