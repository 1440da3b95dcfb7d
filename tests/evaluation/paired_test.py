"""Paired comparisons: the bootstrap finds a real difference and no false one."""

import json

import numpy as np
import pytest

from lma_tf import rules
from lma_tf.evaluation import metrics, paired

N_SECTORS = 126


def _predictions(seed: int, subjects: int = 12, slices: int = 3, bias: float = 0.0):
    """Pooled prediction arrays as crossval saves them, with known errors."""
    rng = np.random.default_rng(seed)
    n = subjects * slices
    true = np.full((n, N_SECTORS), 17.0)
    true[:, 40:70] = rng.uniform(30, 80, (n, 1))
    scar = np.zeros((n, N_SECTORS))
    scar[::4, 90:110] = 0.9
    tos = true + rng.normal(0, 4, true.shape) + bias
    prob = rng.uniform(size=true.shape)
    calls = (prob >= 0.5).astype(np.int8)
    return {
        "subject_id": np.repeat([f"S{i:02d}" for i in range(subjects)], slices),
        "slice_id": np.array([f"s{i}" for i in range(n)]),
        "true_tos": true,
        "true_lma": rules.lma_labels(true, scar).astype(np.float64),
        "scar": scar,
        "has_scar": np.ones(n),
        "weight": np.ones((n, N_SECTORS)),
        "tos": tos,
        "calls": calls,
        "combined": np.where(calls > 0, tos, 17.0),
        "calls_tuned": calls,
        "combined_tuned": np.where(calls > 0, tos, 17.0),
    }


def test_subject_terms_reproduce_the_sector_metrics():
    p = _predictions(0)
    p["weight"][5, :10] = 0.0  # some sectors do not count
    expected = metrics.sector_metrics(
        p["true_tos"],
        p["tos"],
        p["combined"],
        p["true_lma"],
        p["calls"],
        p["scar"],
        p["has_scar"],
        p["weight"],
    )
    _, terms = paired.subject_terms(p["subject_id"], paired.slice_terms(p))
    assert set(terms) == set(paired.METRICS)
    for metric, (num, den) in terms.items():
        assert paired.ratio(num, den, metric) == pytest.approx(expected[metric])


def test_bootstrap_finds_a_known_difference():
    b = _predictions(1)
    a = dict(b, tos=b["tos"] + 3.0)  # A is 3 ms later everywhere: worse MAE
    result = paired.compare_predictions(a, b, resamples=1000, seed=0)
    r = result["tos_mae_ms"]
    low, high = r["ci"]
    assert 0.0 < low < r["difference"] < high
    assert r["difference"] == pytest.approx(r["a"] - r["b"])
    assert r["verdict"] == "B better"
    # The LMA calls are identical: no difference there, exactly.
    assert result["lma_accuracy"]["ci"] == [0.0, 0.0]
    assert result["lma_accuracy"]["verdict"] == paired.NO_DIFFERENCE


def test_bootstrap_reports_no_difference_when_there_is_none():
    # Per-subject MAE of A is B's plus or minus 2 ms, balanced over subjects:
    # the two are equally good, and the interval must say so.
    num_b = np.full(20, 100.0)
    den = np.full(20, 10.0)
    num_a = num_b + np.tile([20.0, -20.0], 10)
    r = paired.bootstrap_difference(
        (num_a, den), (num_b, den), "tos_mae_ms", resamples=2000, seed=3
    )
    assert r["difference"] == pytest.approx(0.0)
    assert r["ci"][0] < 0.0 < r["ci"][1]
    assert r["verdict"] == paired.NO_DIFFERENCE


def test_bootstrap_is_seeded_and_direction_aware():
    b = _predictions(2)
    a = dict(b, calls_tuned=(b["true_lma"] > 0).astype(np.int8))  # perfect calls
    r1 = paired.compare_predictions(a, b, resamples=300, seed=7, suffix="_tuned")
    r2 = paired.compare_predictions(a, b, resamples=300, seed=7, suffix="_tuned")
    assert r1 == r2
    assert r1["lma_accuracy"]["a"] == 1.0
    assert r1["lma_accuracy"]["verdict"] == "A better"  # higher accuracy wins
    assert paired.verdict(-2.0, -1.0, "min") == "A better"
    assert paired.verdict(-2.0, -1.0, "max") == "B better"


def test_slices_are_matched_by_id_and_must_be_the_same():
    a = _predictions(3)
    order = np.random.default_rng(0).permutation(len(a["slice_id"]))
    shuffled = {k: v[order] for k, v in a.items()}
    same = paired.compare_predictions(a, shuffled, resamples=100)
    assert same["tos_mae_ms"]["difference"] == pytest.approx(0.0)
    fewer = {k: v[1:] for k, v in a.items()}
    with pytest.raises(ValueError, match="same slices"):
        paired.compare_predictions(a, fewer, resamples=100)


def test_write_comparison_writes_table_json_and_figure(tmp_path):
    b = _predictions(4)
    a = dict(b, tos=b["tos"] - 2.0)
    out = paired.write_comparison(a, b, "A", "B", str(tmp_path), resamples=200)
    saved = json.loads((tmp_path / "paired.json").read_text())
    assert saved["shipped_rule"]["tos_mae_ms"]["ci"] == pytest.approx(
        out["shipped_rule"]["tos_mae_ms"]["ci"]
    )
    assert "| tos_mae_ms |" in (tmp_path / "paired.md").read_text()
    assert (tmp_path / "paired.png").stat().st_size > 5000
