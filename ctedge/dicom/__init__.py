"""DICOM study ingest: index headers, choose the axial CT series, decode slices to HU.

    study = read_study("path/to/study")      # headers only, fast
    hu = read_hu(study.series.slices[0])     # float32 (rows, cols) in HU, one file read
"""

from .model import Problem, Series, SliceRef, Study
from .pixels import read_hu
from .study import read_study

__all__ = ["Problem", "Series", "SliceRef", "Study", "read_hu", "read_study"]
