"""Faults and attacks on the input data, each with its exact outcome.

Every class of bad input (docs/reliability.md, "Input data and records") is
built on the fly in a tiny cohort: the test asserts the REJECT reason or the
error, that every good slice is still converted, and where it matters the
exit status of `lma-tf convert` and that nothing outside the output folder
changed.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile

import h5py
import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from lma_tf import testing
from lma_tf.data import features, manifest, pipeline, records, records_dir, sources
from lma_tf.data.formats import mat, record_sheet
from lma_tf.data.slices import DenseSlice, Reject
from lma_tf.errors import LmaError, UsageError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SALT = "5b0e9d1c7a3f4e2d8c6b1a0f9e8d7c6b"  # 32 hex digits


@contextlib.contextmanager
def time_limit(seconds: float):
    """Fails (TimeoutError) instead of hanging when the body runs too long."""

    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _cohort(root, subjects: int = 3, per_subject: int = 2) -> list[DenseSlice]:
    return testing.write_cohort_npz(str(root), subjects, per_subject, seed=7)


def _good(slice_id: str = "s", subject: str = "Q") -> DenseSlice:
    return testing.random_slice(np.random.default_rng(1), subject, slice_id, 30)


def _convert(inputs, out, **kw) -> dict:
    opts = records.RecordsOptions(output_dir=str(out), progress=False, **kw)
    return records.make_records([str(i) for i in inputs], opts)


def _reasons(m: dict) -> dict[str, str]:
    """{file name: reason} of a manifest's rejects."""
    return {os.path.basename(r["file"]): r["reason"] for r in m["rejects"]}


def _snapshot(root, skip: str) -> dict[str, str]:
    """{path: sha256} of every file under `root` except those under `skip`."""
    out = {}
    for folder, _, names in os.walk(os.fsencode(str(root))):
        if folder.startswith(os.fsencode(str(skip))):
            continue
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


# ----------------------------------------------------------------------------
# One bad file never takes down the run


def _self_referencing_v73(path: str, two_cycle: bool) -> None:
    mat.write_v73(path, _good())
    with h5py.File(path, "r+") as f:
        group = f["StrainInfo"]
        del group["CCmidSVD"]
        ref = group.create_dataset("CCmidSVD", shape=(1, 1), dtype=h5py.ref_dtype)
        if two_cycle:  # CCmidSVD -> a -> b -> a -> ...
            a = f.create_dataset("cyc_a", shape=(1,), dtype=h5py.ref_dtype)
            b = f.create_dataset("cyc_b", shape=(1,), dtype=h5py.ref_dtype)
            a[0], b[0], ref[0, 0] = b.ref, a.ref, a.ref
        else:
            ref[0, 0] = ref.ref


def test_hdf5_reference_cycle_and_external_link_are_one_reject_each(tmp_path):
    originals = _cohort(tmp_path / "in")
    for name, two in (("self.mat", False), ("pair.mat", True)):
        _self_referencing_v73(str(tmp_path / "in" / "P999" / name), two)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = _good().strain_matrix.T
    with h5py.File(tmp_path / "in" / "P999" / "ext.mat", "w") as f:
        f["StrainInfo/CCmid"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "data")
    with time_limit(60):
        m = _convert([tmp_path / "in"], tmp_path / "out")
    assert m["num_slices"] == len(originals)
    cycle = "object references nested deeper than 4 (a reference cycle?)"
    assert _reasons(m) == {
        "self.mat": f"StrainInfo.CCmidSVD: {cycle}",
        "pair.mat": f"StrainInfo.CCmidSVD: {cycle}",
        "ext.mat": "StrainInfo.CCmid is a link into another file; not followed",
    }


def test_folder_name_not_utf8_is_one_reject_and_exit_0(tmp_path):
    originals = _cohort(tmp_path / "in")
    bad = os.fsencode(str(tmp_path / "in")) + b"/\xff"
    os.mkdir(bad)
    with open(bad + b"/s.npz", "wb") as f:
        np.savez(f, strain_matrix=_good().strain_matrix)
    before = _snapshot(tmp_path, skip=tmp_path / "out")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "make_records.py")]
        + [f"--input={tmp_path / 'in'}", f"--output_dir={tmp_path / 'out'}"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {len(originals)} slices" in proc.stdout
    line = f"REJECT file={tmp_path / 'in'}/\\xff slice=?: the name is not valid UTF-8"
    assert line in proc.stderr
    assert proc.stderr.count("REJECT") == 1 and "Traceback" not in proc.stderr
    assert _snapshot(tmp_path, skip=tmp_path / "out") == before
    # Rerun (here in this process): byte-identical shards and manifest.
    _convert([tmp_path / "in"], tmp_path / "again")
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == sorted(os.listdir(tmp_path / "again"))
    for name in names:
        first = (tmp_path / "out" / name).read_bytes()
        assert first == (tmp_path / "again" / name).read_bytes(), name


def test_float64_overflowing_float32_is_rejected_after_the_cast(tmp_path):
    originals = _cohort(tmp_path / "in")
    s = _good()
    strain = s.strain_matrix.astype(np.float64)
    strain[5, 5] = 1e300  # finite in float64, inf in float32
    tos = s.tos_ms.astype(np.float64)
    tos[3] = 1e300
    testing.write_npz(str(tmp_path / "in" / "Q" / "big.npz"), s, strain_matrix=strain)
    testing.write_npz(str(tmp_path / "in" / "Q" / "bigtos.npz"), s, tos_ms=tos)
    m = _convert([tmp_path / "in"], tmp_path / "out")
    assert m["num_slices"] == len(originals)
    inf = "contains NaN or inf (after conversion to float32, whose largest value"
    inf += " is 3.4e38)"
    assert _reasons(m) == {
        "big.npz": f"strain_matrix {inf}",
        "bigtos.npz": f"tos_ms {inf}",
    }
    assert all(np.isfinite(v) for v in m["normalization"].values() if v is not None)


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("frame_period_ms", 1e9, "frame_period_ms is 1e+09 ms, expected 5..100"),
        ("frame_period_ms", 0.5, "frame_period_ms is 0.5 ms, expected 5..100"),
        ("slice_location", 2e4, "slice_location is 20000 mm, expected -10000..10000"),
        ("slice_location", np.nan, "slice_location contains NaN or inf"),
        ("scar_fraction", np.full(126, 1.5), "scar_fraction outside [0, 1]"),
        # Over 128 frames: refused from the .npz header, before reading.
        (
            "strain_matrix",
            np.zeros((126, 200)),
            "strain_matrix declares shape (126, 200)",
        ),
        ("strain_matrix", np.zeros((126, 8)), "strain_matrix has 8 frames"),
    ],
)
def test_every_number_is_checked_against_its_range(tmp_path, field, value, reason):
    _cohort(tmp_path / "in", 2, 1)
    overrides = {field: np.asarray(value)}
    if field == "strain_matrix":
        overrides["tos_ms"] = None
    testing.write_npz(str(tmp_path / "in" / "Q" / "bad.npz"), _good(), **overrides)
    m = _convert([tmp_path / "in"], tmp_path / "out")
    assert m["num_slices"] == 2
    assert _reasons(m)["bad.npz"].startswith(reason)


def _npz_declaring(path, shape, dtype="<f8") -> None:
    """An .npz whose strain header declares `shape` but holds a few bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("strain_matrix.npy", header.getvalue())  # magic + header


def _zeros_npz(path, shape) -> None:
    """A real decompression bomb: `shape` float64 zeros, deflated, written in chunks."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("strain_matrix.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<f8", "fortran_order": False, "shape": shape}
            )
            chunk = bytes(1 << 20)
            for _ in range(int(np.prod(shape)) * 8 >> 20):
                fh.write(chunk)


def test_oversized_declared_shapes_are_refused_before_reading(tmp_path):
    root = tmp_path / "in" / "Q"
    originals = _cohort(tmp_path / "in")
    root.mkdir()
    _npz_declaring(root / "huge.npz", (126, 10**9))
    _zeros_npz(root / "bomb.npz", (126, 100_000))  # 100 MB inflated, ~100 KB on disk
    assert os.path.getsize(root / "bomb.npz") < 500_000
    with h5py.File(root / "h5.mat", "w") as f:  # declared, never written
        f.create_dataset("StrainInfo/CCmid", shape=(100_000, 126), dtype="f8")
    big = np.zeros((126, 70_000))  # 70 MB in a v5 struct: over the 64 MiB cap
    scipy.io.savemat(
        root / "v5.mat", {"StrainInfo": {"CCmid": big}}, do_compression=True
    )
    del big
    tracemalloc.start()
    try:
        m = _convert([tmp_path / "in"], tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak
    assert m["num_slices"] == len(originals)
    limit = "more than a slice field may hold (16,128 values, 129,024 bytes); not read"
    assert _reasons(m) == {
        "huge.npz": f"strain_matrix declares shape (126, 1000000000) of float64 "
        f"(1,008,000,000,000 bytes): {limit}",
        "bomb.npz": f"strain_matrix declares shape (126, 100000) of float64 "
        f"(100,800,000 bytes): {limit}",
        "h5.mat": f"StrainInfo.CCmid declares shape (100000, 126) of float64 "
        f"(100,800,000 bytes): {limit}",
        "v5.mat": "variable StrainInfo inflates to more than 64 MiB (the limit of "
        "what is loaded from one .mat export); not read",
    }


# ----------------------------------------------------------------------------
# Silent corruption or loss


@pytest.mark.parametrize(
    "scale, hint",
    [
        (100.0, "looks like percent: divide by 100"),
        (1000.0, "looks like thousandths (x1000 integers): divide by 1000"),
        (None, "far outside any strain unit"),
    ],
)
def test_strain_in_the_wrong_unit_is_rejected_with_the_likely_mistake(
    tmp_path, scale, hint
):
    originals = _cohort(tmp_path / "in")
    s = _good()
    strain = s.strain_matrix.astype(np.float64)
    if scale is None:
        strain[0, 0] = 1e30  # one wild value
    else:
        strain = np.round(strain * scale) if scale == 1000 else strain * scale
    testing.write_npz(str(tmp_path / "in" / "Q" / "unit.npz"), s, strain_matrix=strain)
    m = _convert([tmp_path / "in"], tmp_path / "out")
    assert m["num_slices"] == len(originals)
    reason = _reasons(m)["unit.npz"]
    assert reason.startswith("strain_matrix has |Ecc| up to ") and reason.endswith(hint)
    # The wild value never reached the statistics the model normalises with.
    assert m["normalization"]["strain_std"] == pytest.approx(0.05, rel=0.2)


def test_complex_values_are_rejected_not_truncated(tmp_path):
    originals = _cohort(tmp_path / "in")
    s, root = _good(), tmp_path / "in" / "Q"
    testing.write_npz(str(root / "c1.npz"), s, strain_matrix=s.strain_matrix + 0.01j)
    testing.write_npz(str(root / "c2.npz"), s, tos_ms=s.tos_ms.astype(complex))
    strain = s.strain_matrix.astype(np.float64)
    scipy.io.savemat(root / "c3.mat", {"StrainInfo": {"CCmid": strain + 1e-3j}})
    tos = s.tos_ms.astype(np.float64) + 1j
    scipy.io.savemat(root / "c4.mat", {"StrainInfo": {"CCmid": strain}, "TOS126": tos})
    m = _convert([tmp_path / "in"], tmp_path / "out")
    assert m["num_slices"] == len(originals)
    real_only = "is complex; only real values are accepted"
    assert _reasons(m) == {
        "c1.npz": f"strain_matrix {real_only}",
        "c2.npz": f"tos_ms {real_only}",
        "c3.mat": f"StrainInfo.CCmid {real_only}",
        "c4.mat": f"TOS126 {real_only}",
    }


@pytest.fixture
def unreadable(monkeypatch):
    """Makes chosen paths fail with PermissionError (tests may run as root)."""
    denied: set[str] = set()
    real_scandir, real_open = os.scandir, builtins.open

    def scandir(path="."):
        if os.fspath(path) in denied:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    def open_(file, *args, **kw):
        if isinstance(file, str | bytes | os.PathLike) and os.fspath(file) in denied:
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kw)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    return denied


def test_links_unreadable_and_special_entries_are_named(tmp_path, unreadable):
    cohort, outside = tmp_path / "in", tmp_path / "elsewhere"
    originals = _cohort(cohort, 2, 2)
    for name in ("l0", "l1"):  # a subject kept apart, reached through a link
        testing.write_npz(
            str(cohort / ".store" / "L1" / f"{name}.npz"), _good(name, "L1")
        )
    os.symlink(cohort / ".store" / "L1", cohort / "linked")
    testing.write_npz(str(outside / "O1" / "o.npz"), _good("o", "O1"))
    os.symlink(outside / "O1", cohort / "escape")
    os.symlink(cohort / "gone", cohort / "dangling")
    os.mkfifo(cohort / "P001" / "fifo.npz")  # reading it would block forever
    testing.write_npz(str(cohort / "P900" / "a.npz"), _good("a", "P900"))
    testing.write_npz(str(cohort / "P901" / "b.npz"), _good("b", "P901"))
    unreadable.update({str(cohort / "P900"), str(cohort / "P901" / "b.npz")})
    with time_limit(60):
        m = _convert([cohort], tmp_path / "out")
    assert m["num_slices"] == len(originals) + 2  # the linked subject too
    denied = "PermissionError: [Errno 13] Permission denied"
    assert {r["file"]: r["reason"] for r in m["rejects"]} == {
        str(cohort / "P900"): f"unreadable folder: {denied}: '{cohort / 'P900'}'",
        str(cohort / "P901" / "b.npz"): (
            f"unreadable file: {denied}: '{cohort / 'P901' / 'b.npz'}'"
        ),
        str(cohort / "escape"): "symbolic link to a path outside the input folders, "
        "not followed (pass --allow_outside_paths to read it)",
        str(cohort / "dangling"): "broken symbolic link (its target is missing)",
        str(cohort / "P001" / "fifo.npz"): "not a regular file (a device or pipe?)",
    }
    m2 = _convert([cohort], tmp_path / "out2", allow_outside_paths=True)
    assert m2["num_slices"] == len(originals) + 3


@pytest.mark.parametrize(
    "tos, reason",
    [
        (np.full(126, 5.0), "tos_ms below 17 ms (min 5 ms)"),
        (np.zeros(126), "tos_ms below 17 ms (min 0 ms)"),
        (np.full(126, 30 * 17 + 1.0), "tos_ms beyond the sequence (max 511.0 ms"),
    ],
)
def test_tos_outside_17ms_and_the_recording_is_rejected(tmp_path, tos, reason):
    _cohort(tmp_path / "in", 2, 1)
    testing.write_npz(str(tmp_path / "in" / "Q" / "t.npz"), _good(), tos_ms=tos)
    m = _convert([tmp_path / "in"], tmp_path / "out")
    assert m["num_slices"] == 2 and _reasons(m)["t.npz"].startswith(reason)


def test_tos_float_noise_below_17ms_is_clamped(tmp_path):
    tos = np.full(126, 17.0)
    tos[:3] = (16.9999, 16.6, 17.0 - 1e-6)
    testing.write_npz(str(tmp_path / "in" / "Q" / "t.npz"), _good(), tos_ms=tos)
    _convert([tmp_path / "in"], tmp_path / "out", split=(1.0, 0.0, 0.0))
    (raw,) = list(
        tf.data.TFRecordDataset(str(tmp_path / "out" / "train-00000-of-00001.tfrecord"))
    )
    np.testing.assert_array_equal(features.parse_example(raw)[features.TOS], 17.0)


def _truncate_at_record_boundary(path: str, keep: int) -> None:
    kept = [r.numpy() for r in tf.data.TFRecordDataset(path).take(keep)]
    with tf.io.TFRecordWriter(path) as w:
        for r in kept:
            w.write(r)


def test_truncated_shard_fails_naming_it(tmp_path):
    from lma_tf import config as lma_config

    _cohort(tmp_path / "in", 10, 2)
    out = tmp_path / "out"
    m = _convert([tmp_path / "in"], out, split=(0.0, 0.0, 1.0), num_shards=2)
    info = m["splits"]["test"]
    first, second = info["shards"]
    assert info["shard_num_slices"] == {first: 10, second: 10}
    assert manifest.verify_split(str(out), "test") == 20
    _truncate_at_record_boundary(str(out / second), 4)
    cfg = testing.tiny_config(lma_config.base_config(), str(out))
    with pytest.raises(manifest.RecordsIntegrityError) as err:
        pipeline.make_dataset(cfg, "test", training=False)
    assert isinstance(err.value, LmaError)  # the commands exit 1 with this line
    assert str(err.value).startswith(f"{out / second}: ")
    assert "the shard was truncated or replaced" in str(err.value)
    # Without the recorded size, the record count names the shard.
    del info["shard_bytes"]
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(manifest.RecordsIntegrityError) as err:
        manifest.verify_split(str(out), "test")
    assert str(err.value) == (
        f"{out / second}: 4 records, the manifest says 10; rerun `lma-tf convert`"
    )
    # Manifests of older versions record neither: the split's total.
    del info["shard_num_slices"]
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(manifest.RecordsIntegrityError, match="holds 14 records"):
        manifest.verify_split(str(out), "test")
    # A record with a valid checksum that is not an Example: named, never a
    # UnicodeDecodeError from TensorFlow's parse error.
    with tf.io.TFRecordWriter(str(out / second)) as w:
        w.write(b"\xff\xfe not a proto")
    with pytest.raises(manifest.RecordsIntegrityError) as err:
        manifest.verify_split(str(out), "test")
    assert str(err.value) == (
        f"{out / second}: record 0 is not a tf.train.Example; rerun `lma-tf convert`"
    )


def test_a_second_writer_fails_at_once_naming_folder_and_pid(tmp_path):
    _cohort(tmp_path / "in", 2, 1)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / records_dir.LOCK_NAME, "w") as holder:  # another run's lock
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("4242\n")
        holder.flush()
        start = time.monotonic()
        with pytest.raises(records_dir.FolderBusyError) as err:
            _convert([tmp_path / "in"], out)
        assert time.monotonic() - start < 5  # before reading any input
    assert isinstance(err.value, LmaError)
    assert str(err.value) == (
        f"{out} is being written by another `lma-tf convert` (pid 4242); wait "
        "for it to finish, or choose another --output_dir"
    )
    assert os.listdir(out) == [records_dir.LOCK_NAME]
    m = _convert([tmp_path / "in"], out)  # released: the next run works
    assert m["num_slices"] == 2


# ----------------------------------------------------------------------------
# Attacks


def test_sheet_paths_stay_inside_the_inputs_and_content_is_never_echoed(tmp_path):
    cohort, secret = tmp_path / "in", tmp_path / "private" / "pw.csv"
    originals = _cohort(cohort, 2, 1)
    secret.parent.mkdir()
    secret.write_text("0.5\nhunter2_password\n")
    (cohort / "inner.csv").write_text("0.5\nhunter2_inner\n")
    rows = [f"{s.subject_id}/{s.slice_id}.npz,,," for s in originals]
    rows += [
        "P000/P000_0.npz,P7,outside_scar,../private/pw.csv",
        "P000/P000_0.npz,P8,inside_scar,inner.csv",
        f"{secret},P9,outside_file,",
    ]
    (cohort / "manifest.csv").write_text(
        "file,subject_id,slice_id,scar_csv\n" + "\n".join(rows) + "\n"
    )
    m = _convert([cohort], tmp_path / "out")
    assert m["num_slices"] == len(originals)
    sheet = f"manifest {cohort / 'manifest.csv'}"
    assert {r["slice_id"]: r["reason"] for r in m["rejects"]} == {
        "outside_scar": f"column 'scar_csv' names a path outside the input folders "
        f"({sheet} line 4); pass --allow_outside_paths to read it",
        "inside_scar": f"unreadable scar CSV {cohort / 'inner.csv'}: non-numeric "
        f"value at line 2, column 1 ({sheet} line 5)",
        "outside_file": "column 'file' names a path outside the input folders "
        f"({sheet} line 6); pass --allow_outside_paths to read it",
    }
    m = _convert([cohort], tmp_path / "out2", allow_outside_paths=True)
    reasons = {r["slice_id"]: r["reason"] for r in m["rejects"]}
    assert "non-numeric value at line 2, column 1" in reasons["outside_scar"]
    for out in ("out", "out2"):
        assert "hunter2" not in (tmp_path / out / "manifest.json").read_text()


def test_control_characters_cannot_forge_a_reject_line(tmp_path, capsys):
    originals = _cohort(tmp_path / "in", 2, 1)
    forged = "x\nREJECT file=/etc/other.npz slice=y: forged"
    s = _good()
    testing.write_npz(
        str(tmp_path / "in" / "Q" / "f.npz"),
        s,
        slice_id=np.array(forged),
        strain_matrix=s.strain_matrix[:, :8],
        tos_ms=None,
    )
    m = _convert([tmp_path / "in"], tmp_path / "out")
    assert m["num_slices"] == len(originals)
    lines = [x for x in capsys.readouterr().err.splitlines() if "REJECT" in x]
    escaped = forged.replace("\n", "\\x0a")
    assert lines == [
        f"REJECT file={tmp_path / 'in' / 'Q' / 'f.npz'} slice={escaped}: "
        "strain_matrix has 8 frames, expected 16..128"
    ]
    assert m["rejects"][0]["slice_id"] == escaped


def test_clean_up_deletes_only_what_this_tool_created(tmp_path, monkeypatch):
    _cohort(tmp_path / "in", 6, 2)
    out = tmp_path / "out"
    (out / ".tmp-dir").mkdir(parents=True)
    (out / ".tmp-dir" / "keep.txt").write_text("mine")
    (out / ".tmp-notes.txt").write_text("mine too")
    user = {
        p: p.read_bytes()
        for p in (out / ".tmp-dir" / "keep.txt", out / ".tmp-notes.txt")
    }
    _convert([tmp_path / "in"], out, num_shards=3)
    old = {n for n in os.listdir(out) if n.endswith(".tfrecord")}
    real, calls = features.slice_to_example, []

    def killed_midway(s):
        calls.append(s)
        if len(calls) > 3:
            raise KeyboardInterrupt("simulated kill")
        return real(s)

    monkeypatch.setattr(features, "slice_to_example", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        _convert([tmp_path / "in"], out, num_shards=1)
    monkeypatch.setattr(features, "slice_to_example", real)
    marker = json.loads((out / records_dir.MARKER_NAME).read_text())
    (token,) = marker["tokens"]
    assert set(marker["shards"]) == old
    leftover = out / f"{records_dir.TMP_PREFIX}{token}-train-00000-of-00001.tfrecord"
    leftover.write_bytes(b"half a shard, as after a SIGKILL")
    m = _convert([tmp_path / "in"], out, num_shards=1)
    shards = sorted(n for n in os.listdir(out) if ".tfrecord" in n)
    assert shards == sorted(n for v in m["splits"].values() for n in v["shards"])
    assert not leftover.exists() and not (out / records_dir.MARKER_NAME).exists()
    assert all(p.read_bytes() == b for p, b in user.items())


def test_a_weak_salt_is_refused_and_strong_ones_come_from_file_or_env(tmp_path):
    for weak in ("a", "pepper", "0123456789abcdef", "a" * 40):
        with pytest.raises(UsageError, match="too weak") as err:
            records.RecordsOptions(output_dir="x", pseudonymize_salt=weak)
        assert len(weak) < 4 or weak not in str(err.value)
    assert SALT not in repr(records.RecordsOptions("x", pseudonymize_salt=SALT))
    path = tmp_path / "salt.txt"
    path.write_text(SALT + "\n")
    assert records.resolve_salt(path=str(path), environ={}) == (SALT, [])
    assert records.resolve_salt(environ={"LMA_TF_SALT": SALT}) == (SALT, [])
    salt, warnings = records.resolve_salt(flag=SALT, environ={})
    assert salt == SALT and "visible to other users" in warnings[0]
    with pytest.raises(UsageError, match="not both"):
        records.resolve_salt(flag=SALT, path=str(path))
    with pytest.raises(UsageError, match="LMA_TF_SALT too weak"):
        records.resolve_salt(environ={"LMA_TF_SALT": "short"})
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "make_records.py")]
        + [f"--input={tmp_path}", f"--output_dir={tmp_path / 'o'}"]
        + ["--pseudonymize_salt=hunter2"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "lma-tf convert: error: --pseudonymize_salt too weak" in proc.stderr
    assert "hunter2" not in proc.stderr and not (tmp_path / "o").exists()


def test_a_huge_sheet_is_streamed_and_long_lines_are_refused(tmp_path):
    originals = _cohort(tmp_path / "in", 2, 1)
    sheet = tmp_path / "in" / "manifest.csv"
    with open(sheet, "w") as f:
        f.write("file\n")
        f.writelines(f"# {'c' * 100}\n" for _ in range(100_000))  # ~10 MB
        f.writelines(f"{s.subject_id}/{s.slice_id}.npz\n" for s in originals)
    tracemalloc.start()
    try:
        items = list(sources.read_source(str(sheet)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, peak  # the sheet is ~10 MB
    assert [type(x) for x in items] == [DenseSlice] * len(originals)
    with open(sheet, "a") as f:
        f.write("x" * (record_sheet.MAX_LINE_CHARS + 10) + "\n")
    items = list(sources.read_source(str(sheet)))
    assert items[-1] == Reject(
        str(sheet),
        "",
        f"line {100_002 + len(originals)} is longer than 65536 characters",
    )
    assert sum(isinstance(x, DenseSlice) for x in items) == len(originals)
