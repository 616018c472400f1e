"""The committed UCSD manifest matches the data set's own split and metadata files."""

from collections import Counter
from pathlib import Path

from ctedge.train.manifest import read_manifest
from ctedge.train.splits import official_split
from ctedge.train.ucsd import ucsd_manifest

MANIFEST = Path(__file__).resolve().parents[2] / "data" / "manifests" / "ucsd-covid-ct.csv"


def test_manifest_rebuilds_identically_and_is_patient_disjoint(shared_data):
    built = ucsd_manifest(shared_data)
    assert read_manifest(MANIFEST) == built
    counts = Counter((s.label, s.split) for s in built)
    assert counts == {("covid19", "train"): 191, ("non_covid", "train"): 234,
                      ("covid19", "val"): 60, ("non_covid", "val"): 58,
                      ("covid19", "test"): 98, ("non_covid", "test"): 105}
    official_split(built)  # raises if any patient straddles two splits
    assert all((shared_data / s.path).is_file() for s in built)
