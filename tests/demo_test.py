"""`make demo` end to end, shrunk: every stage runs and writes what it says."""

import json
import os

from lma_tf import demo


def test_demo_runs_every_stage(tmp_path):
    out = demo.run_demo(str(tmp_path), num_subjects=16, seed=2, epochs=1)
    assert set(out["results"]) == {"multitask", "classical"}
    comparison = json.loads((tmp_path / "results" / "comparison.json").read_text())
    assert comparison["multitask"]["num_slices"] == out["splits"]["test"]
    assert os.path.isdir(tmp_path / "export" / "1" / "variables")
    rows = (tmp_path / "results" / "test_predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + 126 * out["splits"]["test"]
    maps = out["figures"]["activation_maps"]
    assert maps and all(os.path.getsize(p) > 10_000 for p in maps)
    assert len(out["figures"]["gradcam"]) == 4
    # One pacing report page (and report.json) per test subject.
    manifest = json.loads((tmp_path / "records" / "manifest.json").read_text())
    test_subjects = manifest["splits"]["test"]["subjects"]
    pages = [p for p in out["figures"]["reports"] if p.endswith("report.png")]
    assert len(pages) == len(test_subjects)
    for page in pages:
        report = json.loads(open(page[: -len(".png")] + ".json").read())
        assert report["subject_id"] in test_subjects
