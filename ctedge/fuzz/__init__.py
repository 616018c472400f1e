"""A seeded, deterministic fuzz harness for ctedge's DICOM ingest.

    seeds  = build_seeds(workdir, shared_data)        # real and synthetic DICOM files
    report = run_campaign(CampaignConfig(cases=300))   # each case in a limited subprocess

Case `i` of seed `s` is always the same file: a failure found in a long run is replayed with
`ctedge fuzz --seed s --only i --keep DIR`. Nothing here imports torch.
"""

from .campaign import CampaignConfig, CampaignReport, run_campaign

__all__ = ["CampaignConfig", "CampaignReport", "run_campaign"]
