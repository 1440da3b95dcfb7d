"""Records tool: round trip, rejects, splits, determinism, atomicity."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lma_tf import testing
from lma_tf.data import features, manifest, records
from lma_tf.errors import LmaError, UsageError
from lma_tf.rules import lma_labels

SALT = "8f1c2b7e9a4d6035c1e2f3a4b5c6d7e8"  # 16 bytes as hex: strong enough
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read_all(out_dir: str) -> dict:
    manifest = records.load_manifest(out_dir)
    comp = manifest["compression"]
    got = {}
    for split, info in manifest["splits"].items():
        for name in info["shards"]:
            path = os.path.join(out_dir, name)
            for raw in tf.data.TFRecordDataset(path, compression_type=comp):
                p = {k: v.numpy() for k, v in features.parse_example(raw).items()}
                s = features.example_to_slice(p)
                got[s.key] = (split, s, p)
    return got


def _opts(out_dir, **kw):
    return records.RecordsOptions(output_dir=str(out_dir), progress=False, **kw)


def test_round_trip_is_exact(tmp_path):
    originals = testing.write_cohort_npz(str(tmp_path / "in"), 12, 3, seed=1)
    manifest = records.make_records([str(tmp_path / "in")], _opts(tmp_path / "out"))
    got = _read_all(str(tmp_path / "out"))
    assert manifest["num_slices"] == len(originals) == len(got)
    for o in originals:
        _, s, p = got[o.key]
        np.testing.assert_array_equal(s.strain_matrix, o.strain_matrix)
        np.testing.assert_array_equal(s.tos_ms, o.tos_ms)
        np.testing.assert_array_equal(s.scar_fraction, o.scar_fraction)
        np.testing.assert_array_equal(
            p[features.LMA], lma_labels(o.tos_ms, o.scar_fraction)
        )
        assert s.slice_location == pytest.approx(o.slice_location, abs=1e-5)
        assert s.frame_period_ms == 17.0


def test_manifest_counts_and_no_subject_in_two_splits(tmp_path):
    testing.write_cohort_npz(str(tmp_path / "in"), 40, 2, seed=2)
    m = records.make_records([str(tmp_path / "in")], _opts(tmp_path / "out"))
    subjects = [set(m["splits"][k]["subjects"]) for k in records.SPLITS]
    assert sum(len(s) for s in subjects) == 40
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2])
    assert not subjects[1] & subjects[2]
    assert sum(m["splits"][k]["num_slices"] for k in records.SPLITS) == 80
    assert all(m["splits"][k]["num_subjects"] > 0 for k in records.SPLITS)
    read_back = _read_all(str(tmp_path / "out")).values()
    assert len(read_back) == 80
    for split, s, _ in read_back:
        assert s.subject_id in m["splits"][split]["subjects"]
    norm = m["normalization"]
    assert norm["strain_std"] == pytest.approx(0.05, rel=0.1)
    assert 17.0 <= norm["tos_mean_ms"] <= 17.0 * 30


def test_split_is_stable_when_subjects_are_added():
    before = {
        f"P{i}": records.assign_split(f"P{i}", (0.7, 0.15, 0.15), 3) for i in range(50)
    }
    after = {
        f"P{i}": records.assign_split(f"P{i}", (0.7, 0.15, 0.15), 3) for i in range(80)
    }
    assert all(after[k] == v for k, v in before.items())
    other_seed = {k: records.assign_split(k, (0.7, 0.15, 0.15), 4) for k in before}
    assert other_seed != before


def _bad_inputs(root: str) -> dict[str, str]:
    """One file per reject reason; returns {expected substring: path}."""
    rng = np.random.default_rng(5)
    good = testing.random_slice(rng, "B0", "b", 30)
    bad = {}
    p = os.path.join(root, "bad", "nan.npz")
    strain = good.strain_matrix.copy()
    strain[3, 4] = np.nan
    bad["NaN"] = testing.write_npz(
        p, good, strain_matrix=strain, slice_id=np.array("nan")
    )
    p = os.path.join(root, "bad", "shape.npz")
    bad["shape"] = testing.write_npz(
        p, good, strain_matrix=strain[:100], slice_id=np.array("shape")
    )
    p = os.path.join(root, "bad", "neg.npz")
    tos = good.tos_ms.copy()
    tos[0] = -5
    bad["negative"] = testing.write_npz(p, good, tos_ms=tos, slice_id=np.array("neg"))
    p = os.path.join(root, "bad", "late.npz")
    tos = good.tos_ms.copy()
    tos[0] = 30 * 17 + 50
    bad["beyond the sequence"] = testing.write_npz(
        p, good, tos_ms=tos, slice_id=np.array("late")
    )
    p = os.path.join(root, "bad", "short.npz")
    bad["frames"] = testing.write_npz(
        p,
        good,
        strain_matrix=good.strain_matrix[:, :8],
        slice_id=np.array("short"),
        tos_ms=None,
    )
    p = os.path.join(root, "bad", "garbage.npz")
    with open(p, "wb") as f:
        f.write(b"this is not a zip file")
    bad["unreadable"] = p
    p = os.path.join(root, "bad", "authors.npy")
    np.save(p, np.array([{"strain_matrix": good.strain_matrix}], dtype=object))
    bad["allow_pickle"] = p
    return bad


def test_every_reject_reason_is_reported_and_good_slices_survive(tmp_path, capsys):
    originals = testing.write_cohort_npz(str(tmp_path / "in"), 6, 2, seed=3)
    bad = _bad_inputs(str(tmp_path / "in"))
    # Duplicate: the same subject/slice id as a good slice, in another file.
    dup_path = str(tmp_path / "in" / "zz_dup.npz")
    testing.write_npz(dup_path, originals[0])
    m = records.make_records([str(tmp_path / "in")], _opts(tmp_path / "out"))
    assert m["num_slices"] == len(originals)
    reasons = {os.path.abspath(r["file"]): r["reason"] for r in m["rejects"]}
    for needle, path in bad.items():
        assert needle.lower() in reasons[os.path.abspath(path)].lower(), (
            needle,
            reasons,
        )
    assert "duplicate" in reasons[os.path.abspath(dup_path)]
    assert len(m["rejects"]) == len(bad) + 1
    err = capsys.readouterr().err
    assert err.count("REJECT") == len(bad) + 1
    assert "slice=late" in err and "late.npz" in err


def test_strict_and_empty_inputs_fail_clearly(tmp_path):
    testing.write_cohort_npz(str(tmp_path / "in"), 3, 1)
    _bad_inputs(str(tmp_path / "in"))
    assert issubclass(records.RecordsError, LmaError)  # one line, exit 1
    with pytest.raises(records.RecordsError, match="--strict"):
        records.make_records(
            [str(tmp_path / "in")], _opts(tmp_path / "o1", strict=True)
        )
    with pytest.raises(records.RecordsError, match="no valid slice"):
        records.make_records([str(tmp_path / "in" / "bad")], _opts(tmp_path / "o2"))
    assert not os.path.exists(tmp_path / "o2" / "manifest.json")


def test_pickled_npy_read_only_when_allowed(tmp_path):
    rng = np.random.default_rng(0)
    entries = []
    for j in range(3):
        s = testing.random_slice(rng, "A1", f"a{j}", 25)
        entries.append(
            {
                "strain_matrix": s.strain_matrix,
                "TOS": s.tos_ms[None, :],
                "subject_id": "A1",
                "slice_name": f"a{j}",
            }
        )
    path = tmp_path / "in" / "authors.npy"
    path.parent.mkdir()
    with open(path, "wb") as f:
        np.save(f, np.array(entries, dtype=object), allow_pickle=True)
    with pytest.raises(records.RecordsError):
        records.make_records([str(path)], _opts(tmp_path / "o1"))
    m = records.make_records([str(path)], _opts(tmp_path / "o2", allow_pickle=True))
    assert m["num_slices"] == 3
    with pytest.raises(ValueError, match="allow_pickle"):  # really a pickle
        np.load(path, allow_pickle=False)


@pytest.mark.parametrize("compression", ["", "GZIP"])
def test_rerun_gives_byte_identical_shards(tmp_path, compression):
    testing.write_cohort_npz(str(tmp_path / "in"), 10, 2, seed=4)
    blobs = []
    for out in ("a", "b"):
        records.make_records(
            [str(tmp_path / "in")],
            _opts(tmp_path / out, compression=compression, num_shards=2),
        )
        names = sorted(os.listdir(tmp_path / out))
        blobs.append({n: (tmp_path / out / n).read_bytes() for n in names})
    assert blobs[0].keys() == blobs[1].keys()
    assert blobs[0] == blobs[1]
    suffix = ".tfrecord.gz" if compression else ".tfrecord"
    assert any(n.endswith(suffix) and "-of-00002" in n for n in blobs[0])


def test_pseudonymized_ids_hide_the_subject(tmp_path):
    testing.write_cohort_npz(str(tmp_path / "in"), 5, 1)
    m = records.make_records(
        [str(tmp_path / "in")], _opts(tmp_path / "out", pseudonymize_salt=SALT)
    )
    ids = [s for info in m["splits"].values() for s in info["subjects"]]
    assert len(ids) == 5 and not any(i.startswith("P0") for i in ids)
    assert records.pseudonymize("P000", SALT) in ids
    assert records.pseudonymize("P000", "salt") != records.pseudonymize(
        "P000", "pepper"
    )
    got = _read_all(str(tmp_path / "out"))
    # Neither subject nor slice ids (which embed the subject) survive.
    assert all("P0" not in k[0] and "P0" not in k[1] for k in got)
    text = (tmp_path / "out" / "manifest.json").read_text()
    assert "P0" not in text and str(tmp_path) not in text


def test_pseudonymized_manifest_keeps_no_names_in_rejects(tmp_path):
    testing.write_cohort_npz(str(tmp_path / "in"), 3, 1)
    _bad_inputs(str(tmp_path / "in"))
    m = records.make_records(
        [str(tmp_path / "in")], _opts(tmp_path / "out", pseudonymize_salt=SALT)
    )
    assert m["num_rejects"] > 0
    text = (tmp_path / "out" / "manifest.json").read_text()
    assert str(tmp_path) not in text and "late.npz" not in text
    assert any("beyond the sequence" in r["reason"] for r in m["rejects"])


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    testing.write_cohort_npz(str(tmp_path / "in"), 8, 2)
    out = tmp_path / "out"
    records.make_records([str(tmp_path / "in")], _opts(out, num_shards=2))
    assert (out / "manifest.json").exists()
    calls = {"n": 0}
    real = features.slice_to_example

    def failing(s):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt("simulated kill")
        return real(s)

    monkeypatch.setattr(features, "slice_to_example", failing)
    with pytest.raises(KeyboardInterrupt):
        records.make_records([str(tmp_path / "in")], _opts(out, num_shards=3))
    assert not (out / "manifest.json").exists()
    assert not glob.glob(str(out / ".tmp-*")), os.listdir(out)
    with pytest.raises(FileNotFoundError, match="interrupted"):
        records.load_manifest(str(out))


def test_stale_shards_of_another_shard_count_are_removed(tmp_path):
    testing.write_cohort_npz(str(tmp_path / "in"), 10, 2)
    out = tmp_path / "out"
    records.make_records([str(tmp_path / "in")], _opts(out, num_shards=3))
    records.make_records([str(tmp_path / "in")], _opts(out, num_shards=1))
    shards = sorted(n for n in os.listdir(out) if ".tfrecord" in n)
    assert all("-of-00001" in n for n in shards), shards
    m = json.loads((out / "manifest.json").read_text())
    assert sorted(n for v in m["splits"].values() for n in v["shards"]) == shards


def test_cli_reports_and_exits_nonzero_without_valid_slices(tmp_path):
    _bad_inputs(str(tmp_path))
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "make_records.py"),
            f"--input={tmp_path / 'bad'}",
            f"--output_dir={tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 1, proc.stderr  # LmaError: no traceback
    assert "lma-tf convert: error: no valid slice" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "REJECT file=" in proc.stderr and "allow_pickle" in proc.stderr


def _convert(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "make_records.py"), *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def test_cli_converts_and_refuses_bad_flags_with_usage_errors(tmp_path):
    testing.write_cohort_npz(str(tmp_path / "in"), 6, 1)
    out = tmp_path / "out"
    proc = _convert(f"--input={tmp_path / 'in'}", f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 6 slices" in proc.stdout
    assert manifest.load_manifest(str(out))["num_slices"] == 6
    # Percentages instead of fractions: exit 2 with one line that says why.
    proc = _convert(
        f"--input={tmp_path / 'in'}", f"--output_dir={out}2", "--split=70,15,15"
    )
    assert proc.returncode == 2, proc.stderr
    assert "lma-tf convert: error: --split=70,15,15" in proc.stderr
    assert "sum to 1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out2").exists()
    proc = _convert(f"--input={tmp_path / 'nowhere'}", f"--output_dir={out}3")
    assert proc.returncode == 2 and "input path not found" in proc.stderr


@pytest.mark.parametrize(
    "split",
    [(70, 15, 15), (0.7, 0.2, 0.2), (0.5, 0.5), (1.2, -0.1, -0.1), (0.7, 0.3, np.nan)],
)
def test_bad_split_is_a_usage_error(split):
    with pytest.raises(UsageError, match="sum to 1"):
        records.check_split(split)
    with pytest.raises(ValueError):  # a UsageError is a ValueError too
        records.RecordsOptions(output_dir="x", split=split)


def test_good_splits_and_other_options():
    for split in [(0.7, 0.15, 0.15), (1.0, 0.0, 0.0), (0.5, 0.5, 0.0)]:
        records.check_split(split)
    with pytest.raises(UsageError, match="compression"):
        records.RecordsOptions(output_dir="x", compression="ZLIB")
    with pytest.raises(UsageError, match="num_shards"):
        records.RecordsOptions(output_dir="x", num_shards=-1)


def test_manifest_reader_refuses_other_schema_versions(tmp_path):
    testing.write_cohort_npz(str(tmp_path / "in"), 3, 1)
    out = tmp_path / "out"
    m = records.make_records([str(tmp_path / "in")], _opts(out))
    assert manifest.load_manifest(str(out)) == m
    assert records.load_manifest is manifest.load_manifest  # one reader
    m["schema_version"] = features.SCHEMA_VERSION + 1
    (out / manifest.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(UsageError, match="schema_version"):
        manifest.load_manifest(str(out))
