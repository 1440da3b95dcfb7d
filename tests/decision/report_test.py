"""Decision metrics, the report folder, the one-page figure and `lma-tf report`."""

from __future__ import annotations

import ast
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from decision_samples import N, predicted, three_slices

from lma_tf import rules
from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision import report, run
from lma_tf.errors import UsageError
from lma_tf.serving import prediction_csv
from lma_tf.viz import activation_map, decision_quality, report_page

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
PNG = b"\x89PNG\r\n\x1a\n"


def _two_regions(subject: str) -> list:
    """Predicted late in 6 (120 ms) and 5 (100 ms); truly late in 5 only."""
    slices = three_slices(subject, late=range(63, 84), true_late=range(63, 84))
    b = slices[0]
    b.tos_ms[84:105] = 120.0
    b.lma_probability[84:105] = 0.95
    b.combined_tos_ms = rules.combine_tos(b.tos_ms, b.lma_probability)
    return slices


def _cohort() -> list:
    return [
        *three_slices("A", late=range(66, 81)),  # right
        *three_slices("B", late=range(84, 105), true_late=range(63, 84)),  # next door
        *three_slices("C"),  # no late activation, none recommended
        *three_slices("D", late=range(66, 81), true_late=()),  # a false target
        *_two_regions("E"),  # the true target second
        *three_slices("F", late=range(66, 81), labelled=False),
    ]


def test_decision_metrics():
    m = report.decision_metrics(_cohort())
    assert m["num_subjects"] == 5 and m["num_unlabelled_subjects"] == 1
    assert (m["num_with_target"], m["num_without_target"]) == (3, 2)
    assert m["top1_accuracy"] == pytest.approx(2 / 5)
    assert m["top2_accuracy"] == pytest.approx(3 / 5)
    assert m["adjacent_accuracy"] == pytest.approx(4 / 5)
    assert m["within_5ms_accuracy"] == pytest.approx(2 / 5)  # A and C
    assert m["with_target"] == pytest.approx(
        {
            "top1": 1 / 3,
            "top2": 2 / 3,
            "adjacent": 1.0,
            "within_5ms": 1 / 3,
            "tie_set_hit": 1 / 3,
        }
    )
    # No first target here has a near-tie: the set is the first target alone.
    # Decisive counts the 4 subjects given a target (A, B, D, E; not C).
    assert m["tie_set_accuracy"] == pytest.approx(2 / 5)
    assert m["decisive_share"] == 1.0 and m["decisive_top1_accuracy"] == 0.25
    # A: 0 ms; B and E name a segment at 17 ms in truth, 83 ms before 5.
    assert m["delay_ms"] == pytest.approx(
        {"median": 83.0, "p90": 83.0, "num_subjects": 3}
    )
    assert m["no_target_agreement"] == 0.5
    # A, B and E: segment 5 is the only late scar-free one (100 - 18 ms).
    assert m["clear_share"] == 1.0 and m["clear_top1_accuracy"] == pytest.approx(1 / 3)
    assert [b["num_subjects"] for b in m["top1_by_true_margin"]] == [0, 0, 3]
    per = {p["subject_id"]: p for p in m["per_subject"]}
    assert per["B"] == {
        "subject_id": "B",
        "true_target": 5,
        "predicted_targets": [6],
        "top1": False,
        "top2": False,
        "adjacent": True,
        "within_5ms": False,
        "delay_ms": 83.0,
        "near_ties": [],
        "tie_set_hit": False,
        "true_margin_ms": 82.0,
    }
    assert per["C"]["true_margin_ms"] is None
    assert per["E"]["predicted_targets"] == [6, 5] and per["E"]["top2"]
    assert per["C"]["true_target"] is None and per["C"]["top1"]
    assert not per["D"]["top1"] and not per["D"]["adjacent"]
    empty = report.decision_metrics(three_slices("F", labelled=False))
    assert empty["num_subjects"] == 0 and empty["top1_accuracy"] is None


def test_a_near_tie_is_within_5ms_and_a_scar_first_target_is_not():
    # Truly late in 5 (100 ms) and 6 (97 ms); predicted latest in 6.
    tie = three_slices("G", late=range(84, 105), true_late=range(63, 84))
    tie[0].true_tos_ms[84:105] = 97.0
    q = report.analyse(tie)[0].quality()
    assert (q["true_target"], q["predicted_targets"][0]) == (5, 6)
    assert not q["top1"] and q["within_5ms"]
    assert q["delay_ms"] == pytest.approx(3.0)
    tie[0].true_tos_ms[84:105] = 90.0  # 10 ms earlier: a real miss
    q = report.analyse(tie)[0].quality()
    assert not q["within_5ms"] and q["delay_ms"] == pytest.approx(10.0)
    # Ranked first on an LGE table that calls 6 scar-free; the data's
    # scar (the truth) says it is scar: a wrong target, not a near miss.
    scar = three_slices("H", late=range(84, 105), true_late=range(63, 84))
    scar[0].scar_fraction[84:105] = 0.8
    q = report.analyse(scar, lge={"H": {6: 0.0}})[0].quality()
    assert (q["true_target"], q["predicted_targets"][0]) == (5, 6)
    assert q["delay_ms"] is None and not q["within_5ms"]
    row = report.cohort_row(report.analyse(tie)[0])
    assert row["within_5ms"] is False and row["delay_ms"] == 10.0


def test_a_first_target_with_near_ties_names_them_and_scores_the_set():
    # Truly late in 5 (100 ms); predicted 6 at 100 ms first and 5 at 97 ms
    # second: a near-tie that holds the true target.
    tie = three_slices("T", late=range(84, 105), true_late=range(63, 84))
    b = tie[0]
    b.tos_ms[63:84], b.lma_probability[63:84] = 97.0, 0.95
    b.combined_tos_ms = rules.combine_tos(b.tos_ms, b.lma_probability)
    res = report.analyse([*tie, *three_slices("A", late=range(66, 81))])
    q = res[0].quality()
    assert q["predicted_targets"] == [6, 5] and q["near_ties"] == [5]
    assert not q["top1"] and q["tie_set_hit"]
    assert res[1].quality()["near_ties"] == [] and res[1].quality()["tie_set_hit"]
    m = report.metrics_from_results(res)
    assert m["tie_set_accuracy"] == 1.0 and m["top1_accuracy"] == 0.5
    assert m["decisive_share"] == 0.5 and m["decisive_top1_accuracy"] == 1.0
    assert m["with_target"]["tie_set_hit"] == 1.0
    row = report.cohort_row(res[0])
    assert row["near_ties"] == "5" and row["tie_set_hit"] is True
    assert "near-tie within 5 ms: segment 5" in row["summary"]
    assert set(row) == set(report.COHORT_COLUMNS)


def test_top1_by_the_true_margin_over_the_next_choice():
    def runner_up(subject: str, ms: float) -> list:
        # Truly latest in 5 (100 ms), next in 6 at `ms`; predicted latest in 6.
        s = three_slices(subject, late=range(84, 105), true_late=range(63, 84))
        s[0].true_tos_ms[84:105] = ms
        return s

    cohort = [
        *runner_up("P", 99.0),
        *runner_up("Q", 96.0),
        *runner_up("R", 90.0),
        *three_slices("S", late=range(66, 81)),
    ]
    res = report.analyse(cohort)
    margins = [r.quality()["true_margin_ms"] for r in res]
    assert margins == pytest.approx([1.0, 4.0, 10.0, 82.0])
    # Level in truth (to 0.1 ms): margin 0, the lower segment is the target.
    level = report.analyse(runner_up("U", 100.04))[0].quality()
    assert level["true_target"] == 5 and level["true_margin_ms"] == 0.0
    m = report.metrics_from_results(res)
    bands = [
        (b["band"], b["num_subjects"], b["top1_accuracy"], b["top2_accuracy"])
        for b in m["top1_by_true_margin"]
    ]
    assert bands == [
        ("0-2 ms", 1, 0.0, 0.0),
        ("2-5 ms", 1, 0.0, 0.0),
        ("> 5 ms", 2, 0.5, 0.5),
    ]
    assert m["clear_share"] == 0.5 and m["clear_top1_accuracy"] == 0.5
    assert report.cohort_row(res[1])["true_margin_ms"] == 4.0
    # A scar runner-up is no choice: the margin is over the late threshold.
    scar = runner_up("T", 99.0)
    scar[0].scar_fraction[84:105] = 0.8
    assert report.analyse(scar)[0].quality()["true_margin_ms"] == pytest.approx(82.0)
    scores = report.decision_scores(cohort)
    assert scores["decision_clear_top1_accuracy"] == 0.5
    assert scores["decision_clear_share"] == 0.5
    # The figure draws these numbers: top-1 bars, then top-2, then each
    # subject by where its true target was ranked.
    fig = decision_quality.decision_quality_figure(m)
    left, right = fig.axes
    assert [b.get_height() for b in left.patches] == [0.0, 0.0, 0.5] * 2
    legend = [t.get_text() for t in right.get_legend().get_texts()]
    assert legend == ["top-1 hit (1)", "second (0)", "missed both (3)"]
    assert "top-1 0.25, top-2 0.25" in fig._suptitle.get_text()
    none = report.metrics_from_results(report.analyse(three_slices("C")))
    with pytest.raises(ValueError, match="no labelled subject has a true target"):
        decision_quality.decision_quality_figure(none)


def test_decision_metrics_follow_the_orientation():
    slices = three_slices("A", late=range(66, 81))
    o = orientation_lib.Orientation("rv_insertion", 30, "cw")
    m = report.decision_metrics(slices, o)
    assert m["top1_accuracy"] == 1.0  # truth and prediction move together
    assert m["per_subject"][0]["true_target"] != 5


def test_predicted_slices_from_evaluation_arrays():
    ref = three_slices("A", late=range(66, 81))
    got = report.predicted_slices(
        ["A"] * 3,
        [s.slice_id for s in ref],
        [30.0, 20.0, np.nan],
        np.stack([s.tos_ms for s in ref]),
        np.stack([s.lma_probability for s in ref]),
        np.stack([s.true_tos_ms for s in ref]),
        np.stack([s.scar_fraction for s in ref]),
        has_scar=[True, True, False],
    )
    assert got[2].slice_location is None and got[2].scar_fraction is None
    np.testing.assert_array_equal(got[0].combined_tos_ms, ref[0].combined_tos_ms)
    got[2].slice_location = 10.0
    assert report.decision_metrics(got)["top1_accuracy"] == 1.0


def test_slices_carrying_their_own_orientation():
    """Per-slice orientation fields (future CSV columns) win over the default."""
    slices = three_slices("A", late=range(66, 81))
    for s in slices:
        s.tos_ms, s.lma_probability, s.combined_tos_ms = (
            np.roll(s.tos_ms, 40),
            np.roll(s.lma_probability, 40),
            np.roll(s.combined_tos_ms, 40),
        )
        s.true_tos_ms = np.roll(s.true_tos_ms, 40)
        s.orientation_sector0, s.orientation_offset = "rv_insertion", "40"
        s.orientation_direction = "ccw"
    (result,) = report.analyse(slices)
    assert result.decision.recommended.segment == 5
    assert result.slices[0].orientation == orientation_lib.Orientation(
        "rv_insertion", 40, "ccw"
    )
    slices[1].orientation_direction = "up"
    with pytest.raises(ValueError, match="slice 'A_m' of subject 'A': bad orientation"):
        report.analyse(slices)


def test_sector_calibration():
    slices = three_slices("A", late=range(66, 81))
    c = report.sector_calibration(slices)
    # P 0.95 on 15 LMA sectors, 0.05 on the rest: ECE 0.05.
    assert c["ece"] == pytest.approx(0.05)
    assert c["num_sectors"] == 3 * N and c["tos_interval_coverage"] is None
    assert report.sector_calibration(three_slices("F", labelled=False)) is None


def _write(tmp_path, name, slices):
    path = str(tmp_path / name)
    prediction_csv.write(slices, path)
    return path


def test_write_reports(tmp_path):
    a = [*three_slices("A", late=range(66, 81)), *three_slices("C")]
    b = [*three_slices("A", late=range(66, 81), tos_late=110.0), *three_slices("C")]
    paths = [_write(tmp_path, "a.csv", a), _write(tmp_path, "b.csv", b)]
    lge = tmp_path / "lge.csv"
    lge.write_text("subject_id,segment,scar_fraction\nA,6,0.7\n")
    info = tmp_path / "model.json"
    info.write_text('{"name": "multitask", "seed": 3}')
    out = tmp_path / "R"
    result = run.write_reports(
        paths,
        str(out),
        scar_table=str(lge),
        model=run.load_model_info(str(info)),
        progress=False,
    )
    assert sorted(os.listdir(out)) == [
        "A",
        "C",
        "cohort_summary.csv",
        "cohort_summary.json",
        "decision_quality.png",
        "reliability.png",
    ]
    assert sorted(os.listdir(out / "A")) == ["report.json", "report.png"]

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"JSON {c}"))

    doc = strict((out / "A" / "report.json").read_text())
    assert (doc["schema"], doc["schema_version"]) == (report.SCHEMA, 1)
    assert doc["notice"] == "Research use only \u2014 not a medical device"
    assert doc["orientation"]["sector0"] == "rv_insertion"
    assert doc["model"]["name"] == "multitask" and doc["model"]["seed"] == 3
    assert len(doc["segments"]) == 16
    assert doc["segments"][5]["scar_source"] == "lge_table"
    assert doc["decision"]["recommended"] == 5
    assert doc["decision"]["targets"][0]["tos_median_ms"] == 105.0  # median of 2
    assert doc["segments"][4]["tos_interval_ms"] == pytest.approx(9.0)
    assert doc["decision_quality"]["top1"] is True
    assert [s["level"] for s in doc["slices"]] == ["basal", "mid", "apical"]
    assert doc["inputs"]["predictions"] == [os.path.abspath(p) for p in paths]
    cohort = strict((out / "cohort_summary.json").read_text())
    assert cohort["decision_metrics"]["top1_accuracy"] == 1.0
    # Members at 100 and 110 ms: the 90 % interval 100.5-109.5 misses the
    # true 100 ms of A's 15 late sectors, out of 6 slices x 126.
    cover = cohort["calibration"]["tos_interval_coverage"]
    assert cover == pytest.approx(1 - 15 / (6 * N))
    with open(out / "cohort_summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["subject_id"] for r in rows] == ["A", "C"]
    assert (
        rows[0]["recommended_segment"] == "5" and rows[1]["recommended_segment"] == ""
    )
    for png in (
        "A/report.png",
        "C/report.png",
        "reliability.png",
        "decision_quality.png",
    ):
        assert (out / png).read_bytes()[:8] == PNG
    assert result["num_subjects"] == 2 and len(result["paths"]) == 8


def test_temperature_fitted_on_a_validation_csv(tmp_path):
    rng = np.random.default_rng(0)
    val = three_slices("V", late=range(40, 100))
    for s in val:  # over-confident: P 0.99 / 0.01, right 80 % of the time
        wrong = rng.random(N) < 0.2
        s.lma_probability = np.where(s.true_tos_ms > 18, 0.99, 0.01)
        s.lma_probability[wrong] = 1 - s.lma_probability[wrong]
    t = run.fit_temperature_on(_write(tmp_path, "val.csv", val))
    assert t > 2.0
    test = _write(tmp_path, "test.csv", three_slices("A", late=range(66, 81)))
    result = run.write_reports(
        [test],
        str(tmp_path / "R"),
        calibrate_on=str(tmp_path / "val.csv"),
        progress=False,
    )
    assert result["temperature"] == pytest.approx(t)
    doc = json.loads((tmp_path / "R" / "A" / "report.json").read_text())
    assert doc["calibration"]["temperature"] == pytest.approx(t)
    with pytest.raises(UsageError, match="not both"):
        run.write_reports(
            [test],
            str(tmp_path / "R2"),
            temperature=2.0,
            calibrate_on=str(tmp_path / "val.csv"),
        )
    with pytest.raises(UsageError, match="no true_tos_ms"):
        unlabelled = three_slices("U", late=range(5), labelled=False)
        run.fit_temperature_on(_write(tmp_path, "u.csv", unlabelled))


def test_model_info_from_an_export(tmp_path):
    for version, kind in ((1, "old"), (3, "multitask")):
        d = tmp_path / "E" / str(version) / "assets.extra"
        d.mkdir(parents=True)
        (d / "lma_tf_export.json").write_text(
            json.dumps(
                {
                    "format": "saved_model",
                    "version": version,
                    "model_kind": kind,
                    "config": {"name": "multitask"},
                    "tensorflow": "2.21",
                }
            )
        )
    info = run.load_model_info(saved_model=str(tmp_path / "E"))
    assert info["version"] == 3 and info["model_kind"] == "multitask"
    assert info["config_name"] == "multitask"
    with pytest.raises(UsageError, match="has no"):
        run.load_model_info(saved_model=str(tmp_path))
    with pytest.raises(UsageError, match="not both"):
        run.load_model_info("x.json", str(tmp_path))
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(UsageError, match="JSON object"):
        run.load_model_info(str(tmp_path / "list.json"))
    assert run.load_model_info() is None


def test_report_page_shows_targets_strain_and_banner():
    slices = three_slices("A", late=range(66, 81))
    (result,) = report.analyse(slices)
    strain = np.zeros((N, 30))
    fig = report_page.report_figure(result, strains={"A_b": (strain, 17.0)})
    texts = [t.get_text() for t in fig.texts]
    assert "Research use only \u2014 not a medical device" in texts
    assert any("anterior RV insertion" in t for t in texts)
    eye = next(ax for ax in fig.axes if ax.get_title().startswith("median combined"))
    (coll,) = [c for c in eye.collections if c.get_gid() == "bullseye"]
    (first,) = [p for p in eye.patches if p.get_gid() == "target1"]
    np.testing.assert_allclose(first.get_path().vertices, coll.get_paths()[4].vertices)
    assert np.ma.filled(coll.get_array(), np.nan)[4] == 100.0
    (img_ax,) = [ax for ax in fig.axes if ax.images]
    assert "segment 5 shaded" in img_ax.get_title()
    no_strain = report_page.report_figure(result)
    assert not any(ax.images for ax in no_strain.axes)
    import matplotlib.pyplot as plt

    plt.close(fig)
    plt.close(no_strain)


def test_activation_map_boundaries_follow_the_orientation():
    (result,) = report.analyse(three_slices("A", late=range(66, 81)))
    rings = report_page._rings(result)
    scene = activation_map.activation_map_scene(
        rings, [r.tos_ms for r in rings], (17.0, 100.0)
    )
    moved = report_page._oriented_scene(scene, [orientation_lib.DEFAULT] * 3)
    kinds = np.asarray(moved.kinds)
    apex = moved.quads[(kinds == "aha_boundary") & (moved.ring == 2)]
    angles = np.sort(
        np.mod(np.arctan2(apex[..., 1].mean(1), apex[..., 0].mean(1)), 2 * np.pi)
    )
    want = 2 * np.pi * np.array([5.25, 36.75, 68.25, 99.75]) / N
    np.testing.assert_allclose(angles, want, atol=1e-9)
    assert (kinds == "sector").sum() == (np.asarray(scene.kinds) == "sector").sum()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_report_command(tmp_path):
    path = _write(tmp_path, "p.csv", three_slices("A", late=range(66, 81)))
    out = tmp_path / "R"
    proc = _run(
        "-m",
        "lma_tf.cli.report",
        f"--predictions={path}",
        f"--output_dir={out}",
        "--direction=ccw",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "orientation: the anterior RV insertion at the start of sector 0" in (
        proc.stdout
    )
    assert "A: segment 5 (basal inferolateral)" in proc.stdout
    assert "top-1 1.000" in proc.stdout and "coverage n/a (one model)" in proc.stdout
    assert "not a medical device" in proc.stderr
    assert (out / "A" / "report.png").read_bytes()[:8] == PNG
    assert "of the subjects given a target, 1.000 have no near-tie" in proc.stdout
    bands = "0-2 ms: 0 at top-1 n/a, 2-5 ms: 0 at top-1 n/a, > 5 ms: 1 at top-1 1.000"
    assert bands in proc.stdout
    # No subject given a target: the shares over such subjects are n/a.
    none = _write(tmp_path, "untargeted.csv", three_slices("C"))
    proc = _run(
        "-m", "lma_tf.cli.report", f"--predictions={none}", f"--output_dir={out}2"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "given a target, n/a have no near-tie, their top-1 n/a" in proc.stdout
    # No true target either: nothing to draw by margin.
    assert not (tmp_path / "R2" / "decision_quality.png").exists()
    assert (tmp_path / "R2" / "reliability.png").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("subject_id,slice_id\nA,b\n")
    for args, needle in (
        ([f"--predictions={bad}"], "missing column"),
        ([f"--predictions={tmp_path / 'none.csv'}"], "none.csv"),
        ([f"--predictions={path}", "--sector0=apex"], "sector0"),
        ([f"--predictions={path}", "extra"], "unexpected arguments"),
    ):
        proc = _run("tools/report.py", *args, f"--output_dir={tmp_path / 'X'}")
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert "lma-tf report: error:" in proc.stderr and needle in proc.stderr
        assert "Traceback" not in proc.stderr


def test_report_flags_need_no_numpy_and_agree_with_the_library():
    code = (
        "import sys, lma_tf.cli.report as m\n"
        "heavy = {'numpy', 'matplotlib', 'tensorflow'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print(repr((m.SECTOR0, m.DIRECTIONS, m.NOTICE)))\n"
    )
    proc = _run("-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sector0, directions, notice = ast.literal_eval(proc.stdout.strip())
    assert sector0 == tuple(orientation_lib.LANDMARK_DEG)
    assert directions == orientation_lib.DIRECTIONS
    assert notice == report.BANNER


def test_predicted_helper_matches_the_csv_round_trip(tmp_path):
    s = predicted("A", "b", 30.0, late=range(3))
    (back,) = prediction_csv.read(_write(tmp_path, "p.csv", [s]))
    np.testing.assert_allclose(back.combined_tos_ms, s.combined_tos_ms)
