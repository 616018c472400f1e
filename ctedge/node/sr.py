"""The result as a DICOM Comprehensive SR (highdicom), filed in the source study.

The SR carries the source study's patient and study modules (that is how PACS files it; it
goes only to the configured destination), the decision and the rule that made it, per-class
evidence, the strongest slices as image references, the model's name, version and sha256, and
the decision-support disclaimer. Its UIDs derive from the study and model, so building it twice
(a restart mid-classification) gives the same object and a PACS keeps one copy.
"""

from __future__ import annotations

from pathlib import Path

from ..result import DISCLAIMER, StudyResult
from .errors import NodeError

SCHEME = "99CTEDGE"  # private coding scheme for concepts DICOM and SNOMED do not name
SR_SERIES_NUMBER = 9901
MAX_IMAGE_REFERENCES = 5
# SNOMED CT codes of the paper's classes; other class names fall back to the private scheme.
LABEL_CODES = {
    "normal": ("17621005", "SCT", "Normal"),
    "covid19": ("840539006", "SCT", "COVID-19"),
    "viral_pneumonia": ("75570004", "SCT", "Viral pneumonia"),
    "bacterial_pneumonia": ("53084003", "SCT", "Bacterial pneumonia"),
    "tuberculosis": ("56717001", "SCT", "Tuberculosis"),
    "indeterminate": ("373068000", "SCT", "Undetermined"),
}
# The study modules highdicom copies from the first evidence instance; anonymised studies often
# lack some, which DICOM allows to be empty (type 2).
_TYPE2_STUDY_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                           "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
                           "ReferringPhysicianName")


def load_highdicom():
    try:
        import highdicom
    except ImportError:
        raise NodeError("building DICOM SR needs highdicom: install the node extra "
                        "(uv pip install -e '.[node]')") from None
    return highdicom


def label_code(label: str):
    hd = load_highdicom()
    value, scheme, meaning = LABEL_CODES.get(label, (label[:16], SCHEME,
                                                     label.replace("_", " ")[:64]))
    return hd.sr.CodedConcept(value, scheme, meaning)


def _concept(value: str, meaning: str, scheme: str = SCHEME):
    return load_highdicom().sr.CodedConcept(value, scheme, meaning)


def _header(path: Path):
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for keyword in _TYPE2_STUDY_ATTRIBUTES:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def strongest_slices(result: StudyResult) -> list[int]:
    """Slice indices that best support the decision, best first (at most MAX_IMAGE_REFERENCES).

    For a decided class: its strongest slices. For `indeterminate`: none.
    """
    for evidence in result.decision.classes:
        if evidence.label == result.decision.label:
            return list(evidence.strongest_slices[:MAX_IMAGE_REFERENCES])
    return []


def build_sr(result: StudyResult):
    """A highdicom ComprehensiveSR for one classified study (pydicom Dataset)."""
    hd = load_highdicom()
    from pydicom.uid import generate_uid

    sr = hd.sr
    refs = result.study.series.slices
    picked = [i for i in strongest_slices(result) if 0 <= i < len(refs)]
    evidence_paths = list(dict.fromkeys([refs[i].path for i in picked] + [refs[0].path]))
    evidence = [_header(p) for p in evidence_paths]
    by_path = dict(zip(evidence_paths, evidence, strict=True))
    study_uid = str(evidence[0].StudyInstanceUID)
    decision, model = result.decision, result.model

    contains = sr.RelationshipTypeValues.CONTAINS
    items = [
        sr.CodeContentItem(_concept("121071", "Finding", "DCM"), label_code(decision.label),
                           relationship_type=contains),
        sr.TextContentItem(_concept("decision-rule", "Decision rule"),
                           f"{decision.rule} rule: {decision.reason}"[:1024],
                           relationship_type=contains),
        sr.NumContentItem(_concept("slices-used", "Slices classified"), decision.slices_used,
                          _concept("{slices}", "slices", "UCUM"), relationship_type=contains),
    ]
    for ev in decision.classes:
        box = sr.ContainerContentItem(_concept("class-evidence", "Class evidence"),
                                      relationship_type=contains)
        unit_slices = _concept("{slices}", "slices", "UCUM")
        box.ContentSequence = sr.ContentSequence([
            sr.CodeContentItem(_concept("class", "Class"), label_code(ev.label),
                               relationship_type=contains),
            sr.NumContentItem(_concept("top1-slices", "Slices with this top class"),
                              ev.top1_slices, unit_slices, relationship_type=contains),
            sr.NumContentItem(_concept("above-threshold", "Slices at or above threshold"),
                              ev.above_threshold, unit_slices, relationship_type=contains),
            sr.NumContentItem(_concept("max-probability", "Maximum slice probability"),
                              round(float(ev.max_probability), 6),
                              _concept("1", "no units", "UCUM"), relationship_type=contains),
        ], is_root=False, is_sr=True)
        items.append(box)
    for i in picked:
        ds = by_path[refs[i].path]
        frames = None if refs[i].frame is None else refs[i].frame + 1
        items.append(sr.ImageContentItem(
            _concept("strongest-slice", "Strongest slice"), ds.SOPClassUID, ds.SOPInstanceUID,
            referenced_frame_numbers=frames, relationship_type=contains))
    params = [f"sha256={model.get('sha256', '')}", f"precision={model.get('precision', '')}",
              f"backend={model.get('backend', '')}"]
    algorithm = sr.AlgorithmIdentification(
        name=Path(str(model.get("path", "model"))).name[:64] or "ctedge",
        version=str(model.get("ctedge_version") or _ctedge_version()), parameters=params)
    items.extend(algorithm)
    items.append(sr.TextContentItem(_concept("disclaimer", "Disclaimer"), DISCLAIMER,
                                    relationship_type=contains))

    root = sr.ContainerContentItem(_concept("18748-4", "Diagnostic imaging report", "LN"))
    root.ContentSequence = sr.ContentSequence(items, is_root=False, is_sr=True)
    seed = [study_uid, str(model.get("sha256", "")), decision.rule]
    return sr.ComprehensiveSR(
        evidence=evidence,
        content=root,
        series_instance_uid=generate_uid(entropy_srcs=[*seed, "ctedge-sr-series"]),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(entropy_srcs=[*seed, "ctedge-sr"]),
        instance_number=1,
        manufacturer="ctedge",
        series_description="ctedge triage (decision support only)",
        is_complete=True,
        is_final=False,
        is_verified=False,
    )


def _ctedge_version() -> str:
    from .. import __version__

    return __version__
