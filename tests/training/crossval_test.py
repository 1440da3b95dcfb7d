"""Cross-validation: folds by subject, fold records, runs, resume, rules."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lma_tf import testing
from lma_tf.data import folds, manifest
from lma_tf.decision import calibration
from lma_tf.errors import UsageError
from lma_tf.evaluation import rule_search
from lma_tf.training import crossval


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    return testing.synthetic_records(str(tmp_path_factory.mktemp("cv")), 9, 4)


def test_folds_are_balanced_stable_and_deal_scar_subjects_first():
    subjects = {f"P{i:02d}": i % 3 == 0 for i in range(20)}
    a = folds.assign_folds(subjects, 5)
    b = folds.assign_folds(dict(reversed(list(subjects.items()))), 5)
    assert a == b  # a function of the ids only, whatever the order given
    sizes = np.bincount(list(a.values()), minlength=5)
    assert sizes.max() - sizes.min() <= 1
    scar_sizes = np.bincount([a[s] for s, v in subjects.items() if v], minlength=5)
    assert scar_sizes.max() - scar_sizes.min() <= 1
    with pytest.raises(UsageError, match="fewer folds"):
        folds.assign_folds({"a": True, "b": False}, 3)


def test_validation_share_is_stratified_and_never_empty():
    train = [f"P{i:02d}" for i in range(20)]
    scar = {s: i < 10 for i, s in enumerate(train)}
    val = folds.validation_subjects(train, scar, 0.2)
    assert len(val) == 4 and sum(scar[s] for s in val) == 2
    assert len(folds.validation_subjects(train[:2], scar, 0.1)) == 1


def test_fold_records_partition_every_subject_once(records_dir, tmp_path):
    root = str(tmp_path / "folds")
    info = folds.make_fold_records(records_dir, root, 3)
    source = manifest.load_manifest(records_dir)
    all_subjects = {s for sp in source["splits"].values() for s in sp["subjects"]}
    assert set(info["folds"]) == all_subjects
    tested = []
    for i in range(3):
        m = manifest.load_manifest(folds.fold_dir(root, i))
        splits = {k: set(v["subjects"]) for k, v in m["splits"].items()}
        assert not (splits["train"] & splits["val"]) and not (
            splits["test"] & (splits["train"] | splits["val"])
        )
        assert splits["train"] | splits["val"] | splits["test"] == all_subjects
        assert sum(v["num_slices"] for v in m["splits"].values()) == info["num_slices"]
        assert m["normalization"]["strain_std"] > 0
        tested += sorted(splits["test"])
    assert sorted(tested) == sorted(all_subjects)
    # A second call with the same slices reuses the folds, untouched.
    stamp = os.stat(os.path.join(folds.fold_dir(root, 0), manifest.MANIFEST))
    assert folds.make_fold_records(records_dir, root, 3) == info
    again = os.stat(os.path.join(folds.fold_dir(root, 0), manifest.MANIFEST))
    assert again.st_mtime_ns == stamp.st_mtime_ns


def test_extra_train_records_join_every_train_split_and_keep_the_folds(
    records_dir, tmp_path
):
    from lma_tf.data import records, synthetic, synthetic_io

    # Subjects 9-11 of another seed: other hearts, other ids.
    cohort = str(tmp_path / "extra_cohort")
    synthetic_io.synthesize_cohort(cohort, 3, 4, first_subject=9)
    extra = str(tmp_path / "extra")
    records.make_records(
        [cohort], records.RecordsOptions(output_dir=extra, progress=False)
    )
    extra_ids = {synthetic.subject_id_for(i) for i in range(9, 12)}
    plain = folds.make_fold_records(records_dir, str(tmp_path / "plain"), 3)
    root = str(tmp_path / "with_extra")
    info = folds.make_fold_records(records_dir, root, 3, extra_train_dir=extra)
    assert info["folds"] == plain["folds"]
    assert info["val_subjects"] == plain["val_subjects"]
    assert info["extra_train_subjects"] == 3 and info["extra_train_slices"] > 0
    assert info["fingerprint"] != plain["fingerprint"]
    for i in range(3):
        m = manifest.load_manifest(folds.fold_dir(root, i))
        p = manifest.load_manifest(folds.fold_dir(str(tmp_path / "plain"), i))
        train = set(m["splits"]["train"]["subjects"])
        assert train == set(p["splits"]["train"]["subjects"]) | extra_ids
        for split in ("val", "test"):
            assert m["splits"][split] == p["splits"][split]
        assert m["crossval"]["extra_train_source"] == os.path.abspath(extra)
    # The same folds root without the extras (or with others): refused, so
    # models trained on other data never mix with the finished folds.
    with pytest.raises(UsageError, match="made with extra training records"):
        folds.make_fold_records(records_dir, root, 3)
    with pytest.raises(UsageError, match=r"extra_train_records=.*manifest.json"):
        folds.make_fold_records(
            records_dir, str(tmp_path / "y"), 3, extra_train_dir=str(tmp_path / "no")
        )
    # crossval.json records them (from the folds of the output root).
    out = str(tmp_path / "cvx")
    crossval.prepare_folds(records_dir, out, 3, 0.15, extra)
    assert crossval._extra_train(out) == {
        "source": os.path.abspath(extra),
        "subjects": 3,
        "slices": info["extra_train_slices"],
    }
    # The cohort's own subjects as "extra": refused, naming them.
    with pytest.raises(UsageError, match=r"9 subject\(s\) also in .*SYN0000"):
        folds.make_fold_records(
            records_dir, str(tmp_path / "x"), 3, extra_train_dir=records_dir
        )
    # The command says what it adds, and refuses the same as a usage error.
    for flag, code, needle in (
        (extra, 0, "every fold also trains on 3 extra subjects"),
        (records_dir, 2, "also in"),
    ):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "lma_tf.cli.crossval",
                "--config=classical",
                f"--records_dir={records_dir}",
                f"--extra_train_records={flag}",
                f"--output_dir={tmp_path / 'cli'}",
                "--folds=3",
                "--estimate_only",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == code, proc.stderr[-2000:]
        assert needle in proc.stderr


def test_config_overrides_are_typed_and_checked():
    c = crossval.experiment_config(
        "multitask", 7, ("train.batch_size=16", "data.sector_padding=edge")
    )
    assert (c.train.epochs, c.train.batch_size) == (7, 16)
    assert c.data.sector_padding == "edge"
    with pytest.raises(UsageError, match="no config field"):
        crossval.experiment_config("multitask", 0, ("train.nope=1",))
    with pytest.raises(UsageError, match="sector_padding"):
        crossval.experiment_config("multitask", 0, ("data.sector_padding=wrap",))


def test_classical_crossval_pools_every_slice_and_resumes(records_dir, tmp_path):
    out = str(tmp_path)
    info = crossval.prepare_folds(records_dir, out, 3, 0.15)
    c = crossval.experiment_config("classical")
    assert crossval.estimate(c, out, [0, 1, 2]).folds == 3
    for f in range(3):
        result = crossval.run_fold(c, out, f, progress=False)
        assert result["tuned"]["rule"].startswith("tos>")
    summary = crossval.summarize(c, out, 3)
    assert summary["num_slices"] == info["num_slices"]
    assert summary["mean_sd"]["tos_mae_ms"]["n"] == 3
    # Pacing-target accuracy per fold and pooled, from the saved locations.
    assert summary["mean_sd"]["decision_top1_accuracy"]["n"] == 3
    top1 = summary["pooled"]["decision_top1_accuracy"]
    assert 0.0 <= top1 <= summary["pooled"]["decision_top2_accuracy"] <= 1.0
    # ... and by the true target's margin, over the subjects with a target.
    bands = summary["decision_by_true_margin"]
    assert [b["band"] for b in bands] == ["0-2 ms", "2-5 ms", "> 5 ms"]
    with_target = sum(b["num_subjects"] for b in bands)
    assert 0 < with_target <= info["num_subjects"]
    clear = summary["pooled"]["decision_clear_share"]
    assert bands[2]["num_subjects"] == round(clear * with_target)
    png = tmp_path / "classical" / "decision_quality.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pooled = crossval.load_pooled(os.path.join(out, "classical"))
    keys = set(zip(pooled["subject_id"].tolist(), pooled["slice_id"].tolist()))
    assert len(keys) == info["num_slices"]
    assert crossval.estimate(c, out, [0, 1, 2]).folds == 0  # every fold done
    assert summary["extra_train"] is None
    # The same experiment under two roots compares as <root>_<experiment>.
    shutil.copytree(tmp_path / "classical", tmp_path / "again" / "classical")
    first = f"{tmp_path.name}_classical"
    results = crossval.compare(
        [str(tmp_path / "classical"), str(tmp_path / "again" / "classical")],
        str(tmp_path / "cmp"),
    )
    assert set(results) == {"again_classical"}
    assert (tmp_path / "cmp" / f"{first}_vs_again_classical" / "paired.json").exists()
    rows = (tmp_path / "classical" / "per_subject.csv").read_text().splitlines()
    assert len(rows) == 1 + info["num_subjects"]

    # A second detector on the same folds, compared subject-paired.
    smooth = crossval.experiment_config(
        "classical", 0, ("name=classical_smooth", "classical.smooth_sectors=15")
    )
    for f in range(3):
        crossval.run_fold(smooth, out, f, progress=False)
    crossval.summarize(smooth, out, 3)
    dirs = [os.path.join(out, "classical"), os.path.join(out, "classical_smooth")]
    assert all(crossval.is_crossval_dir(d) for d in dirs)
    assert not crossval.is_crossval_dir(os.path.join(out, "folds"))
    results = crossval.compare(dirs, os.path.join(out, "cmp"), resamples=200)
    mae = results["classical_smooth"]["shipped_rule"]["tos_mae_ms"]
    low, high = mae["ci"]
    assert low <= mae["difference"] <= high
    assert mae["a"] - mae["b"] == pytest.approx(mae["difference"])
    text = crossval.compare_markdown(results)
    assert "A = classical, B = classical_smooth" in text
    assert (tmp_path / "cmp" / "classical_vs_classical_smooth" / "paired.png").exists()


def test_network_fold_estimate_and_predictions(records_dir, tmp_path):
    out = str(tmp_path)
    crossval.prepare_folds(records_dir, out, 3, 0.15)
    c = testing.tiny_config(
        crossval.experiment_config("multitask"), records_dir, epochs=1
    )
    est = crossval.estimate(c, out, [0])
    assert est.step_seconds > 0 and est.steps_per_epoch == 3 and est.seconds > 0
    result = crossval.run_fold(c, out, 0, progress=False)
    assert result["epochs_run"] == 1
    with np.load(tmp_path / "multitask" / "fold0" / "predictions.npz") as z:
        assert z["tos"].shape == z["true_tos"].shape == (result["num_test_slices"], 126)
        assert set(np.unique(z["calls_tuned"])) <= {0, 1}
        # The calibrated probability is the raw one through the calibration
        # fitted on val, saved with the result as evaluate saves it.
        fitted = calibration.Calibrator.from_dict(result["lma_calibration"])
        assert fitted.method in ("temperature", "isotonic")
        expect = fitted(z["probability"])
        np.testing.assert_allclose(z["probability_calibrated"], expect, atol=1e-6)
    assert 0.0 <= result["metrics"]["lma_ece_calibrated"] <= 1.0
    saved = json.loads((tmp_path / "multitask" / "fold0" / "result.json").read_text())
    assert saved["tuned"]["val_accuracy"] >= saved["tuned"]["val_accuracy_shipped_rule"]


def test_an_ensemble_fold_scores_the_members_average(records_dir, tmp_path):
    from lma_tf import inference
    from lma_tf.training import run_dir

    out = str(tmp_path)
    crossval.prepare_folds(records_dir, out, 3, 0.15)
    c = testing.tiny_config(
        crossval.experiment_config("multitask"), records_dir, epochs=1
    )
    c.model.test_time_shifts = 2  # the views stay in each member
    # Fold 0 of the single model and the second member: two trainings.
    assert crossval.estimate(c, out, [0], members=2).folds == 2
    result = crossval.run_fold(c, out, 0, progress=False, members=2)
    assert result["experiment"] == "multitask_x2"
    single = tmp_path / "multitask" / "fold0"
    ens = tmp_path / "multitask_x2" / "fold0"
    assert (single / "result.json").exists() and (ens / "result.json").exists()
    assert crossval.estimate(c, out, [0], members=2).folds == 0
    dirs = [str(single / "model"), str(ens / "member1" / "model")]
    seeds = [run_dir.load_config(d).seed for d in dirs]
    assert seeds == [c.seed, c.seed + 1]
    # The saved predictions are the mean of the members' own predictions.
    preds = []
    for d in dirs:
        saved = run_dir.load_config(d)
        predictor = inference.load_predictor(saved, d)
        _, p = inference.predict_split(saved, predictor, "test", progress=False)
        preds.append(p)
    with np.load(ens / "predictions.npz") as z:
        tos, prob = z["tos"], z["probability"]
    np.testing.assert_allclose(tos, np.mean([p.tos_ms for p in preds], 0), atol=1e-4)
    np.testing.assert_allclose(
        prob, np.mean([p.lma_probability for p in preds], 0), atol=1e-6
    )
    assert not np.allclose(preds[0].tos_ms, preds[1].tos_ms)  # two models
    with np.load(single / "predictions.npz") as z:
        np.testing.assert_allclose(z["tos"], preds[0].tos_ms, atol=1e-4)


def _history(model_dir, values):
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "history.json"), "w") as f:
        json.dump([{"epoch": i, "val_loss": v} for i, v in enumerate(values)], f)


def test_estimate_counts_the_epochs_each_training_has_left(tmp_path):
    c = crossval.experiment_config("multitask")
    c.train.epochs, c.train.early_stopping_patience = 6, 2
    model = str(tmp_path / "m")
    assert crossval.epochs_left(c, model) == 6  # nothing trained
    _history(model, [5.0, 4.0, 3.0, 2.0])
    assert crossval.epochs_left(c, model) == 2  # interrupted: resumes at 5
    _history(model, [5.0, 4.0, 4.5, 4.2])
    assert crossval.epochs_left(c, model) == 0  # stopped early
    _history(model, [6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    assert crossval.epochs_left(c, model) == 0  # every epoch
    # An interrupted ensemble fold: the single model scored, member 1
    # finished, member 2 half way, member 3 not started.
    out = str(tmp_path / "cv")
    os.makedirs(os.path.join(out, "multitask", "fold0"))
    with open(os.path.join(out, "multitask", "fold0", "result.json"), "w") as f:
        f.write("{}")
    ens = os.path.join(out, "multitask_x4", "fold0")
    _history(os.path.join(ens, "member1", "model"), [3.0, 2.0, 1.5, 1.2, 1.1, 1.0])
    _history(os.path.join(ens, "member2", "model"), [3.0, 2.0, 1.0])
    members_left = [
        crossval.epochs_left(c, os.path.join(ens, f"member{m}", "model"))
        for m in (1, 2, 3)
    ]
    assert members_left == [0, 3, 6]


def test_a_tos_only_ensemble_calls_lma_from_the_mean_tos():
    # What crossval scores an ensemble with (`_ensemble_predictor`): the
    # exported Ensemble run through the evaluation predictor.
    import ml_collections

    from lma_tf import inference
    from lma_tf.models import ensemble, registry

    def member(tos_row, prob_row=None):
        tos = np.full((1, 128), 17.0, np.float32)
        tos[0, :2] = tos_row
        out = {"tos": tos}
        if prob_row is not None:
            p = np.full((1, 128), 0.1)
            p[0, :2] = prob_row
            out["lma"] = np.stack([np.zeros_like(p), np.log(p / (1 - p))], -1)
        return lambda x, training=False: {k: tf_const(v) for k, v in out.items()}

    def config(kind):
        c = ml_collections.ConfigDict()
        c.model = {"kind": kind, "test_time_shifts": 1, "test_time_mirror": False}
        c.data = {"num_sectors": 128, "sector_padding": "circular"}
        return c

    def predict(models, kind):
        net = ensemble.Ensemble(models, [config(kind)] * len(models))
        return inference.network_predictor(net, registry.get(kind))(batch)

    batch = inference.SliceBatch(
        ["s"],
        ["s/0"],
        np.zeros(1),
        np.zeros((1, 128, 4), np.float32),
        np.full(1, 4),
        *[np.zeros((1, 126))] * 3,
        np.ones(1, bool),
        np.ones(1, bool),
        np.ones((1, 126)),
    )
    # Sector 0: one member calls it (18.5 ms), the other not (17.2 ms); the
    # mean of their calls (0.5) would call it LMA, the mean TOS (17.85) not.
    tos = [[17.2, 30.0], [18.5, 17.5]]
    pred = predict([member(t) for t in tos], "regression_only")
    np.testing.assert_allclose(pred.tos_ms[:, :2], [[17.85, 23.75]], atol=1e-4)
    np.testing.assert_array_equal(pred.lma_probability[:, :2], [[0.0, 1.0]])
    # With an LMA head the probabilities are averaged.
    probs = [[0.2, 0.9], [0.6, 0.3]]
    pred = predict([member(t, p) for t, p in zip(tos, probs)], "multitask")
    np.testing.assert_allclose(pred.lma_probability[:, :2], [[0.4, 0.6]], atol=1e-6)


def tf_const(value):
    import tensorflow as tf

    return tf.constant(value, tf.float32)


def test_despike_flips_short_runs_around_the_ring():
    row = np.zeros(126, bool)
    row[10:40] = True  # a real LMA region
    row[20:23] = False  # a 3-sector gap inside it
    row[80:83] = True  # a 3-sector spike
    row[124:] = True  # a 3-sector spike across the wrap...
    row[:1] = True
    clean = rule_search.despike(row[None])[0]
    expected = np.zeros(126, bool)
    expected[10:40] = True
    np.testing.assert_array_equal(clean, expected)
    closed = rule_search.close_if_spiky(row[None])[0]
    assert closed[10:40].all()  # the gap is closed
    smooth = expected[None]
    np.testing.assert_array_equal(rule_search.close_if_spiky(smooth), smooth)


def test_rule_choice_prefers_the_shipped_rule_unless_validation_disagrees():
    rng = np.random.default_rng(0)
    true = np.zeros((4, 126))
    true[:, 30:60] = 1
    weight = np.ones_like(true)
    perfect = np.where(true > 0, 0.9, 0.1)
    rule, scores = rule_search.choose(None, perfect, true, weight, has_lma_head=True)
    assert rule.name == "p>=0.5" and scores["p>=0.5"] == 1.0
    # Calibrated low: only a lower threshold recovers the region.
    low = np.where(true > 0, 0.35, 0.05) + rng.uniform(0, 0.01, true.shape)
    rule, _ = rule_search.choose(None, low, true, weight, has_lma_head=True)
    assert rule.prob_threshold == 0.3
    tos = np.where(true > 0, 40.0, 19.5)  # TOS-only: 18 ms calls too much
    rule, _ = rule_search.choose(tos, np.zeros_like(tos), true, weight, False)
    assert rule.tos_threshold_ms == 20.0
