"""The result as a DICOM Comprehensive SR, built from a real study classified by a tiny model."""

from __future__ import annotations

import pydicom
import pytest

from node_net import SAMPLE_STUDY

pytest.importorskip("highdicom", reason="the node extra (highdicom) is not installed")


def _items(content):
    for item in content:
        yield item
        yield from _items(item.get("ContentSequence", []))


def test_sr_holds_decision_evidence_slices_model_and_disclaimer_in_the_source_study(tiny_model):
    from ctedge.node.sr import build_sr, label_code, strongest_slices
    from ctedge.pipeline import ClassifyConfig, classify_study

    result = classify_study(SAMPLE_STUDY, ClassifyConfig(model=tiny_model, workers=1))
    sr = build_sr(result)
    source = pydicom.dcmread(result.study.series.slices[0].path, stop_before_pixels=True)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert sr.PatientID == source.PatientID
    items = list(_items(sr.ContentSequence))
    by_name = {}
    for item in items:
        by_name.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(item)
    finding = by_name["Finding"][0].ConceptCodeSequence[0]
    assert finding.CodeValue == label_code(result.decision.label).value
    assert by_name["Decision rule"][0].TextValue.startswith(f"{result.decision.rule} rule")
    assert len(by_name["Class evidence"]) == len(result.model["classes"])
    picked = strongest_slices(result)
    assert picked, "the tiny model's decision should rest on some slices"
    refs = result.study.series.slices
    expected = {str(pydicom.dcmread(refs[i].path, stop_before_pixels=True).SOPInstanceUID)
                for i in picked}
    referenced = {str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
                  for i in by_name["Strongest slice"]}
    assert referenced == expected
    texts = " ".join(str(i.get("TextValue", "")) for i in items)
    assert f"sha256={result.model['sha256']}" in texts
    assert "Decision support only" in texts
    again = build_sr(result)
    assert again.SOPInstanceUID == sr.SOPInstanceUID  # rebuilt after a restart: same object
