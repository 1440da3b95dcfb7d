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
