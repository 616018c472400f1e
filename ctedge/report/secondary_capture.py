"""The report summary as a DICOM Secondary Capture in the source study's context, so a PACS
files it beside the study (the DICOM node sends it with its SR).

Built with highdicom (optional extra `report`), from a header of the classified series: the
patient and study modules are copied from it, as DICOM requires of an object that belongs to
that study; the pixels (the summary PNG) carry no identifier. A new series and SOP instance
UID are generated per call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CtedgeError

SERIES_DESCRIPTION = "ctedge triage summary (decision support only)"
SERIES_NUMBER = 9901


class ReportUnavailable(CtedgeError):
    """An optional dependency of the report is not installed."""


def secondary_capture(summary, source, *, series_number: int = SERIES_NUMBER,
                      instance_number: int = 1, uid_seed: list[str] | None = None):
    """A pydicom Dataset: Secondary Capture Image of `summary` (a PIL image or an (H, W, 3)
    uint8 array) in the study of `source` (a DICOM file path or a pydicom Dataset of the
    classified series). Save it with `dataset.save_as(path)`. uid_seed: strings the series and
    instance UIDs derive from (the same seed gives the same UIDs, so a re-sent copy replaces
    the first at the PACS instead of doubling it); None: fresh random UIDs."""
    hd = _import_highdicom()
    import pydicom

    ref = source if isinstance(source, pydicom.Dataset) else pydicom.dcmread(
        Path(source), stop_before_pixels=True)
    ref = _with_required_study_attributes(ref)
    pixels = np.ascontiguousarray(np.asarray(summary.convert("RGB") if hasattr(
        summary, "convert") else summary, dtype=np.uint8))
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got an array of shape {pixels.shape}")
    from .. import __version__

    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref, pixel_array=pixels, photometric_interpretation="RGB",
        # The pictured slices are axial, shown as acquired: rows run to the patient's
        # left, columns to posterior (Patient Orientation L, P, as in the source CT).
        bits_allocated=8, coordinate_system="PATIENT", patient_orientation=("L", "P"),
        series_instance_uid=_uid(uid_seed, "ctedge-sc-series"),
        series_number=series_number, sop_instance_uid=_uid(uid_seed, "ctedge-sc"),
        instance_number=instance_number, manufacturer="ctedge",
        transfer_syntax_uid="1.2.840.10008.1.2.1")
    sc.SeriesDescription = SERIES_DESCRIPTION
    sc.SoftwareVersions = f"ctedge {__version__}"
    sc.BurnedInAnnotation = "NO"  # the pixels hold results, no patient identification
    return sc


def study_secondary_capture(result, files):
    """The Secondary Capture of a written report (`ReportFiles`) for its classified study
    (`StudyResult`): the summary PNG in the context of the series' first slice. Its UIDs
    derive from the series, the model and the rule, like the node's SR."""
    from PIL import Image

    seed = [str(result.study.series.key), str(result.model.get("sha256", "")),
            result.decision.rule]
    with Image.open(files.summary) as summary:
        return secondary_capture(summary.convert("RGB"), result.study.series.slices[0].path,
                                 uid_seed=seed)


def summary_object(result):
    """The DICOM node's second result object: the report summary as a Secondary Capture."""
    import tempfile

    from . import write_report

    with tempfile.TemporaryDirectory(prefix="ctedge-summary-") as tmp:
        return study_secondary_capture(result, write_report(result, tmp))


def _uid(seed: list[str] | None, salt: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid() if seed is None else generate_uid(entropy_srcs=[*seed, salt])


def _with_required_study_attributes(ref):
    """A copy of `ref` with the type-2 patient/study attributes present (empty if missing):
    de-identified studies often lack some, and an SC must still carry them."""
    ref = ref.copy()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
                    "ReferringPhysicianName"):
        if keyword not in ref:
            setattr(ref, keyword, "")
    return ref


def _import_highdicom():
    try:
        import highdicom
    except ImportError as exc:
        raise ReportUnavailable("the DICOM Secondary Capture needs highdicom; install it with "
                                "pip install 'ctedge[report]'") from exc
    return highdicom
