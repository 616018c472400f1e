"""Errors of the DICOM node, rooted in ctedge's one hierarchy."""

from ..errors import CtedgeError


class NodeError(CtedgeError):
    """The node cannot start: a bad configuration, a busy port, a missing extra."""


class SpoolFull(CtedgeError):
    """An instance could not be kept (disk full, read-only, permission, study too large)."""
