"""Ensembles of prediction CSVs and MC dropout: medians, means, 90 % intervals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from decision_samples import N, predicted, three_slices

from lma_tf import rules
from lma_tf.decision import uncertainty
from lma_tf.serving import prediction_csv


def test_summary_of_members():
    tos = np.array([[20.0, 100.0], [40.0, 110.0], [60.0, 120.0], [np.nan, 130.0]])
    prob = np.array([[0.9, 0.2], [0.8, 0.9], [0.1, 0.9], [0.5, 0.9]])
    s = uncertainty.summarise_members(tos, prob)
    np.testing.assert_allclose(s["tos_ms"], [40.0, 115.0])  # NaN member skipped
    np.testing.assert_allclose(s["lma_probability"], [0.6, 0.725])
    # The point is the paper's rule on the aggregate: both called LMA.
    np.testing.assert_allclose(s["combined_tos_ms"], [40.0, 115.0])
    # Members' own combined TOS: sector 0 = 20, 40, 17 -> 5-95 %: 17.3 .. 38.
    assert s["tos_lo_ms"][0] == pytest.approx(np.percentile([20, 40, 17], 5))
    assert s["tos_hi_ms"][0] == pytest.approx(40.0)  # widened to hold the point
    assert s["tos_lo_ms"][1] <= 115.0 <= s["tos_hi_ms"][1]
    assert s["probability_std"][0] == pytest.approx(np.std([0.9, 0.8, 0.1]))
    empty = uncertainty.summarise_members(np.full((2, 1), np.nan), np.ones((2, 1)))
    assert np.isnan(empty["combined_tos_ms"][0]) and np.isnan(empty["tos_lo_ms"][0])


def test_summary_matches_numpy_on_random_members():
    rng = np.random.default_rng(0)
    tos = rng.uniform(17, 150, (7, 4, N))
    tos[rng.random(tos.shape) < 0.3] = np.nan
    prob = rng.random(tos.shape)
    s = uncertainty.summarise_members(tos, prob)
    prob = np.where(np.isfinite(tos), prob, np.nan)
    members = np.where(np.isfinite(tos), rules.combine_tos(tos, prob), np.nan)
    np.testing.assert_allclose(s["tos_ms"], np.nanmedian(tos, axis=0))
    np.testing.assert_allclose(s["lma_probability"], np.nanmean(prob, axis=0))
    np.testing.assert_allclose(s["probability_std"], np.nanstd(prob, axis=0))
    lo, hi = np.nanpercentile(members, [5, 95], axis=0)
    np.testing.assert_allclose(s["tos_lo_ms"], np.fmin(lo, s["combined_tos_ms"]))
    np.testing.assert_allclose(s["tos_hi_ms"], np.fmax(hi, s["combined_tos_ms"]))


def test_one_member_keeps_its_numbers_and_has_no_width():
    s = predicted("p", "b", 30.0, late=range(10, 20))
    (e,) = uncertainty.as_ensemble([s])
    np.testing.assert_array_equal(e.combined_tos_ms, s.combined_tos_ms)
    np.testing.assert_array_equal(e.interval_width_ms, np.zeros(N))
    assert e.num_members == 1 and e.location == 30.0


def test_aggregate_csvs_of_the_same_inputs(tmp_path):
    paths = []
    for m, tos in enumerate((60.0, 80.0, 100.0)):
        p = str(tmp_path / f"m{m}.csv")
        prediction_csv.write(three_slices("p", late=range(63, 84), tos_late=tos), p)
        paths.append(p)
    ens = uncertainty.read_ensemble(paths)
    assert [e.slice_id for e in ens] == ["p_b", "p_m", "p_a"]
    basal = ens[0]
    assert basal.num_members == 3
    assert basal.combined_tos_ms[70] == 80.0
    assert basal.tos_lo_ms[70] == pytest.approx(62.0)
    assert basal.tos_hi_ms[70] == pytest.approx(98.0)
    assert basal.interval_width_ms[0] == 0.0  # all members agree at 17 ms
    np.testing.assert_array_equal(basal.true_tos_ms[63:84], 100.0)
    # A temperature rescales every member before the aggregation.
    hot = uncertainty.read_ensemble(paths, temperature=4.0)
    assert 0.5 < hot[0].lma_probability[70] < ens[0].lma_probability[70]


def test_members_must_hold_the_same_slices(tmp_path):
    a = three_slices("p", late=range(63, 84))
    with pytest.raises(uncertainty.EnsembleError, match=r"b\.csv: no slice 'p_a'"):
        uncertainty.aggregate([a, a[:2]], ["a.csv", "b.csv"])
    with pytest.raises(uncertainty.EnsembleError, match=r"a\.csv: no slice 'x'"):
        extra = [*a, dataclasses.replace(a[0], slice_id="x")]
        uncertainty.aggregate([a, extra], ["a.csv", "b.csv"])
    moved = [dataclasses.replace(a[0], slice_location=31.0), *a[1:]]
    with pytest.raises(uncertainty.EnsembleError, match="not the same inputs"):
        uncertainty.aggregate([a, moved], ["a.csv", "b.csv"])


def test_sector_uncertain():
    got = uncertainty.sector_uncertain(np.array([0.1, 0.36, 0.5, 0.64, 0.65, 0.9]))
    assert list(got) == [False, True, True, True, False, False]


def _tiny_model(dropout: float, sectors: int = N):
    import keras

    inp = keras.Input((sectors, 8), name="strain")
    x = keras.layers.Dense(16, activation="relu")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(dropout)(x)
    tos = keras.layers.Reshape((sectors,))(keras.layers.Dense(1)(x))
    tos = keras.layers.Lambda(lambda t: 17.0 + 50.0 * keras.ops.abs(t))(tos)
    lma = keras.layers.Dense(2)(x)
    return keras.Model(inp, {"tos": tos, "lma": lma})


def test_mc_dropout_varies_only_through_dropout():
    import keras

    keras.utils.set_random_seed(1)
    strain = np.random.default_rng(0).normal(size=(3, N, 8)).astype(np.float32)
    model = _tiny_model(0.5)
    before = [np.array(v) for v in model.non_trainable_weights]
    deterministic = model(strain, training=False)
    tos, prob = uncertainty.mc_dropout(model, strain, num_samples=12)
    assert tos.shape == prob.shape == (12, 3, N)
    assert np.all(tos >= 17.0) and np.all((prob >= 0) & (prob <= 1))
    assert np.std(tos, axis=0).mean() > 0.1  # dropout is on
    # Batch norm stayed in inference mode and its statistics are untouched.
    for b, v in zip(before, model.non_trainable_weights):
        np.testing.assert_array_equal(b, np.array(v))
    assert all(layer.trainable for layer in model.layers)
    summary = uncertainty.summarise_members(tos, prob)
    assert np.all(summary["tos_lo_ms"] <= summary["combined_tos_ms"])
    assert np.all(summary["combined_tos_ms"] <= summary["tos_hi_ms"])
    # Without dropout every pass is the inference output.
    still = _tiny_model(0.0)
    tos0, prob0 = uncertainty.mc_dropout(still, strain, num_samples=3)
    np.testing.assert_allclose(tos0[0], tos0[2])
    ref = still(strain, training=False)
    np.testing.assert_allclose(tos0[1], rules.floor_tos(np.asarray(ref["tos"])), 1e-5)
    np.testing.assert_allclose(
        prob0[1], rules.lma_probability(np.asarray(ref["lma"])), atol=1e-5
    )
    assert deterministic["tos"].shape == (3, N)
    with pytest.raises(ValueError, match="num_samples"):
        uncertainty.mc_dropout(model, strain, num_samples=0)
    # A network on 128 padded sectors: the padding (last) is dropped.
    padded = np.concatenate([strain, strain[:, :2]], axis=1)
    tos128, prob128 = uncertainty.mc_dropout(_tiny_model(0.0, N + 2), padded, 2)
    assert tos128.shape == prob128.shape == (2, 3, N)
