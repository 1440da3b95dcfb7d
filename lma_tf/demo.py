"""The end-to-end demo on the embedded synthetic cohort (`make demo`).

synthesize -> records -> input pipeline pass; later stages (training,
evaluation, export, figures) are appended here as they land.
"""

from __future__ import annotations

import json
import os

from lma_tf import config as lma_config
from lma_tf import pipeline, records, synthetic, synthetic_io


def run_demo(output_dir: str, num_subjects: int = 120, seed: int = 0) -> dict:
    """Runs every stage into `output_dir`; returns a summary of what it wrote."""
    cohort_dir = os.path.join(output_dir, "cohort")
    records_dir = os.path.join(output_dir, "records")
    slices = synthetic.generate_cohort(num_subjects, seed)
    synthetic_io.write_cohort(slices, cohort_dir, "npz")
    print(f"[demo] synthetic cohort: {len(slices)} slices -> {cohort_dir}")

    manifest = records.make_records(
        [cohort_dir], records.RecordsOptions(output_dir=records_dir, seed=seed)
    )
    counts = {k: v["num_slices"] for k, v in manifest["splits"].items()}
    print(f"[demo] records: {json.dumps(counts)} -> {records_dir}")

    cfg = lma_config.base_config()
    cfg.data.records_dir = records_dir
    batches = examples = 0
    for feats, _, _ in pipeline.make_dataset(cfg, "train"):
        batches += 1
        examples += int(feats["strain"].shape[0])
    print(
        f"[demo] pipeline: {batches} train batches, {examples} examples of shape "
        f"{tuple(feats['strain'].shape[1:])}"
    )
    return {
        "cohort_dir": cohort_dir,
        "records_dir": records_dir,
        "splits": {k: v["num_slices"] for k, v in manifest["splits"].items()},
        "train_batches": batches,
    }
