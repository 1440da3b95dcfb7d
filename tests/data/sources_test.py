"""Reading .npz, .npy and CSV sheets via sources, dispatch and discovery.

The .mat readers have their own file, mat_source_test.py.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io

from lma_tf.data import sources
from lma_tf.data.formats import record_sheet
from lma_tf.data.slices import DenseSlice, Reject, validate_slice

S = 126


def _strain(frames: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.2, 0.2, (S, frames))


def _tos(peak: float = 100.0) -> np.ndarray:
    return np.linspace(17.0, peak, S)


def _read(path, allow_pickle: bool = False) -> list:
    return list(sources.read_source(str(path), allow_pickle=allow_pickle))


def _slices(items) -> list[DenseSlice]:
    return [x for x in items if isinstance(x, DenseSlice)]


def _rejects(items) -> list[Reject]:
    return [x for x in items if isinstance(x, Reject)]


def _one_slice(path, **kw) -> DenseSlice:
    items = _read(path, **kw)
    assert len(items) == 1 and isinstance(items[0], DenseSlice), items
    return items[0]


def _one_reject(path, **kw) -> Reject:
    items = _read(path, **kw)
    assert len(items) == 1 and isinstance(items[0], Reject), items
    return items[0]


# ----------------------------------------------------------------------------
# .npz


def test_npz_all_keys(tmp_path):
    strain, tos, scar = _strain(), _tos(), np.full(S, 0.25)
    path = tmp_path / "p1" / "s.npz"
    path.parent.mkdir()
    np.savez(
        path,
        subject_id="P001",
        slice_id="base",
        strain_matrix=strain,
        frame_period_ms=16.0,
        tos_ms=tos,
        scar_fraction=scar,
        slice_location=-3.5,
    )
    s = _one_slice(path)
    assert (s.subject_id, s.slice_id) == ("P001", "base")
    np.testing.assert_allclose(s.strain_matrix, strain)
    np.testing.assert_allclose(s.tos_ms, tos)
    np.testing.assert_allclose(s.scar_fraction, scar)
    assert s.frame_period_ms == 16.0 and s.slice_location == -3.5
    assert s.source == str(path)
    validate_slice(s)


def test_npz_fallbacks(tmp_path):
    path = tmp_path / "patient7" / "mid_slice.npz"
    path.parent.mkdir()
    np.savez(path, strain_matrix=_strain(), tos_ms=_tos()[None])  # (1, 126)
    s = _one_slice(path)
    assert (s.subject_id, s.slice_id) == ("patient7", "mid_slice")
    assert s.frame_period_ms == 17.0
    assert s.tos_ms.shape == (S,)
    assert s.scar_fraction is None and s.slice_location is None


def test_npz_missing_strain(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, subject_id="P", slice_id="apex", tos_ms=_tos())
    r = _one_reject(path)
    assert r.reason == "missing key strain_matrix"
    assert (r.file, r.slice_id) == (str(path), "apex")


def test_npz_pickled_key_rejected(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, strain_matrix=_strain(), subject_id=np.array([{"a": 1}]))
    assert "pickle" in _one_reject(path).reason


@pytest.mark.parametrize("ext", [".npz", ".npy", ".mat", ".csv"])
@pytest.mark.parametrize("content", [b"", b"\x00garbage\xff" * 20])
def test_corrupt_file_is_a_reject(tmp_path, ext, content):
    path = tmp_path / f"bad{ext}"
    path.write_bytes(content)
    for allow_pickle in (False, True):
        r = _one_reject(path, allow_pickle=allow_pickle)
        assert r.file == str(path) and r.slice_id == ""
        assert r.reason


# ----------------------------------------------------------------------------
# .npy (pickled list of dicts)


def _save_npy(path, entries) -> None:
    arr = np.empty(len(entries), dtype=object)
    arr[:] = entries
    np.save(path, arr, allow_pickle=True)


def test_npy_refused_without_allow_pickle(tmp_path):
    path = tmp_path / "data.npy"
    _save_npy(path, [{"strain_matrix": _strain(), "subject_id": "P"}])
    r = _one_reject(path)
    assert "--allow_pickle" in r.reason
    assert "pickle" in r.reason and "arbitrary code" in r.reason


def test_npy_plain_numeric_rejected(tmp_path):
    path = tmp_path / "strain.npy"
    np.save(path, _strain())
    for allow_pickle in (False, True):
        r = _one_reject(path, allow_pickle=allow_pickle)
        assert "plain numeric .npy" in r.reason and "(126, 30)" in r.reason


def test_npy_list_of_dicts(tmp_path):
    strain0, strain1 = _strain(30, 1), _strain(40, 2)
    scar = np.zeros(S)
    scar[:20] = 60.0  # percent
    path = tmp_path / "cohortA" / "data.npy"
    path.parent.mkdir()
    _save_npy(
        path,
        [
            {
                "strain_matrix": strain0,
                "TOS": _tos()[None],  # (1, 126), the authors' shape
                "subject_id": "P1",
                "slice_name": "base",
                "scar_sector_percentage": scar,
                "slice_location": 4.0,
            },
            {"strain_matrix": strain1, "TOS": _tos(60.0), "subject_id": "P2"},
            "not a dict",
            {"TOS": _tos(), "subject_id": "P3", "slice_name": "no_strain"},
            {"strain_matrix": strain0},  # no subject: the folder name
        ],
    )
    items = _read(path, allow_pickle=True)
    good, bad = _slices(items), _rejects(items)
    assert [(s.subject_id, s.slice_id) for s in good] == [
        ("P1", "base"),
        ("P2", "data_1"),
        ("cohortA", "data_4"),
    ]
    np.testing.assert_allclose(good[0].strain_matrix, strain0)
    np.testing.assert_allclose(good[1].strain_matrix, strain1)
    assert good[0].tos_ms.shape == (S,)
    np.testing.assert_allclose(good[1].tos_ms, _tos(60.0))
    np.testing.assert_allclose(good[0].scar_fraction, scar / 100.0)
    assert good[0].slice_location == 4.0 and good[1].slice_location is None
    assert all(s.source == str(path) for s in good)
    assert [(r.slice_id, r.file) for r in bad] == [
        ("data_2", str(path)),
        ("no_strain", str(path)),
    ]
    assert "not a dict" in bad[0].reason and "strain" in bad[1].reason
    for s in good:
        validate_slice(s)


def test_npy_scar_percent_rule_is_per_file(tmp_path):
    low = np.zeros(S)
    low[:5] = 0.8  # 0.8 % scar in a percent file: must stay small
    high = np.zeros(S)
    high[:30] = 70.0
    path = tmp_path / "mixed.npy"
    _save_npy(
        path,
        [
            {
                "strain_matrix": _strain(),
                "subject_id": "A",
                "scar_sector_percentage": low,
            },
            {
                "strain_matrix": _strain(),
                "subject_id": "B",
                "scar_sector_percentage": high,
            },
        ],
    )
    a, b = _slices(_read(path, allow_pickle=True))
    np.testing.assert_allclose(a.scar_fraction, low / 100.0)
    np.testing.assert_allclose(b.scar_fraction, high / 100.0)

    frac = np.zeros(S)
    frac[:10] = 0.9
    path = tmp_path / "fractions.npy"
    _save_npy(
        path,
        [
            {
                "strain_matrix": _strain(),
                "subject_id": "C",
                "scar_sector_percentage": frac,
            }
        ],
    )
    (c,) = _slices(_read(path, allow_pickle=True))
    np.testing.assert_allclose(c.scar_fraction, frac)  # already fractions


def test_npy_authors_4d_strain_is_squeezed(tmp_path):
    path = tmp_path / "d.npy"
    _save_npy(
        path, [{"strainMatFullResolution": _strain()[None, None], "subject_id": "P"}]
    )
    (s,) = _slices(_read(path, allow_pickle=True))
    assert s.strain_matrix.shape == (S, 30)


# ----------------------------------------------------------------------------
# CSV manifest


def _savemat(path, variables) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables)


def _cohort(tmp_path):
    root = tmp_path / "cohort"
    _savemat(root / "pA" / "s1.mat", {"StrainInfo": {"CCmid": _strain(30, 1)}})
    (root / "pB").mkdir()
    np.savez(
        root / "pB" / "x.npz", subject_id="inner", slice_id="x", strain_matrix=_strain()
    )
    scar1 = np.linspace(0.0, 1.0, S)
    (root / "scar").mkdir()
    (root / "scar" / "s1.csv").write_text(",".join(f"{v:.6f}" for v in scar1) + "\n")
    scar2 = np.full(S, 0.5)
    (root / "scar" / "x.csv").write_text(
        "scar_fraction\n" + "\n".join(str(v) for v in scar2) + "\n"
    )
    (root / "scar" / "bad.csv").write_text("1,2\n3,4,5\n")
    return root, scar1, scar2


def test_manifest_overrides_and_scar(tmp_path):
    root, scar1, scar2 = _cohort(tmp_path)
    (root / "manifest.csv").write_text(
        "file,subject_id,slice_id,scar_csv,frame_period_ms,slice_location\n"
        "pA/s1.mat,SUBJ-A,base,scar/s1.csv,16.5,10\n"
        "pB/x.npz,SUBJ-B,mid,scar/x.csv,,\n"
        "pC/missing.mat,SUBJ-C,apex,,,\n"
        "pB/x.npz,SUBJ-D,bad_scar,scar/bad.csv,,\n"
        "pB/x.npz,SUBJ-E,no_scar_file,scar/none.csv,,\n"
        "\n"
        "pB/x.npz,,,,,\n"
    )
    items = _read(root / "manifest.csv")
    good, bad = _slices(items), _rejects(items)
    assert [(s.subject_id, s.slice_id) for s in good] == [
        ("SUBJ-A", "base"),
        ("SUBJ-B", "mid"),
        ("inner", "x"),  # no overrides: the file's own ids
    ]
    a, b, c = good
    np.testing.assert_allclose(a.strain_matrix, _strain(30, 1))
    np.testing.assert_allclose(a.scar_fraction, scar1, atol=1e-6)
    assert a.frame_period_ms == 16.5 and a.slice_location == 10.0
    assert a.source == os.path.normpath(root / "pA" / "s1.mat")
    np.testing.assert_allclose(b.scar_fraction, scar2)
    assert b.frame_period_ms == 17.0 and b.source == os.path.normpath(
        root / "pB" / "x.npz"
    )
    assert c.scar_fraction is None
    assert [(r.file, r.slice_id) for r in bad] == [
        (os.path.normpath(root / "pC" / "missing.mat"), "apex"),
        (os.path.normpath(root / "pB" / "x.npz"), "bad_scar"),
        (os.path.normpath(root / "pB" / "x.npz"), "no_scar_file"),
    ]
    assert "file not found" in bad[0].reason and "line 4" in bad[0].reason
    assert "scar CSV" in bad[1].reason and "scar CSV" in bad[2].reason
    for s in good:
        validate_slice(s)


def test_manifest_mat_without_subject_uses_folder(tmp_path):
    root, _, _ = _cohort(tmp_path)
    manifest = tmp_path / "sheet.csv"
    manifest.write_text(f"File\n{root / 'pA' / 's1.mat'}\n")  # absolute, header case
    (s,) = _read(manifest)
    assert (s.subject_id, s.slice_id) == ("pA", "s1")


def test_manifest_without_file_column(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text("path,subject_id\na.npz,P\n")
    r = _one_reject(path)
    assert r.file == str(path) and "'file' column" in r.reason


def test_manifest_selects_slice_of_npy(tmp_path):
    _save_npy(
        tmp_path / "all.npy",
        [
            {"strain_matrix": _strain(30, 1), "subject_id": "P", "slice_name": "base"},
            {"strain_matrix": _strain(30, 2), "subject_id": "P", "slice_name": "apex"},
        ],
    )
    path = tmp_path / "m.csv"
    path.write_text("file,subject_id,slice_id\nall.npy,Q,apex\nall.npy,Q,nope\n")
    items = _read(path, allow_pickle=True)
    (s,), (r,) = _slices(items), _rejects(items)
    assert (s.subject_id, s.slice_id) == ("Q", "apex")
    np.testing.assert_allclose(s.strain_matrix, _strain(30, 2))
    assert r.slice_id == "nope" and "none is named" in r.reason
    # Without allow_pickle the row's file is refused, naming the row's slice.
    refused = _rejects(_read(path))
    assert len(refused) == 2 and all("allow_pickle" in r.reason for r in refused)
    assert [r.slice_id for r in refused] == ["apex", "nope"]


def test_scar_csv_formats(tmp_path):
    values = np.linspace(0, 1, S)
    cases = {
        "line.csv": ",".join(map(str, values)) + ",\n",
        "named_line.csv": ",".join(f"s{i}" for i in range(S))
        + "\n"
        + ",".join(map(str, values)),
        "column.csv": "\n".join(map(str, values)),
        "pandas_percent.csv": ",scar_percentage\n"
        + "\n".join(f"{i},{100 * v}" for i, v in enumerate(values)),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        np.testing.assert_allclose(
            record_sheet.read_scar_csv(str(tmp_path / name)), values, err_msg=name
        )


# ----------------------------------------------------------------------------
# Dispatch and discovery


def test_unsupported_extension(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hi")
    assert "unsupported file type" in _one_reject(path).reason


def test_discover_rules(tmp_path):
    root = tmp_path / "data"
    (root / "p1" / "deep").mkdir(parents=True)
    (root / "p2").mkdir()
    (root / ".hidden").mkdir()
    for rel in ["p1/a.npz", "p1/deep/b.MAT", "p2/c.npy", ".hidden/h.npz", "p1/._a.npz"]:
        (root / rel).write_bytes(b"")
    (root / "p1" / "scar.csv").write_text("0.1")
    (root / "README.md").write_text("x")
    managed = root / "managed"
    (managed / "sub").mkdir(parents=True)
    (managed / "manifest.csv").write_text("file\nsub/z.npz\n")
    (managed / "z.npz").write_bytes(b"")
    (managed / "sub" / "z.npz").write_bytes(b"")
    extra = tmp_path / "extra.txt"
    extra.write_text("x")

    found = sources.discover([str(root), str(root / "p1" / "a.npz"), str(extra)])
    expect = [
        root / "managed" / "manifest.csv",
        root / "p1" / "a.npz",
        root / "p1" / "deep" / "b.MAT",
        root / "p2" / "c.npy",
        extra,
    ]
    assert found == sorted(os.path.normpath(p) for p in expect)
    assert sources.discover([str(managed)]) == [str(managed / "manifest.csv")]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        sources.discover([str(root), str(tmp_path / "nowhere")])


def test_read_sources_keeps_good_slices(tmp_path):
    (tmp_path / "p").mkdir()
    np.savez(tmp_path / "p" / "good.npz", strain_matrix=_strain())
    (tmp_path / "p" / "broken.npz").write_bytes(b"nope")
    _savemat(tmp_path / "p" / "good.mat", {"StrainInfo": {"CCmid": _strain()}})
    _save_npy(tmp_path / "p" / "pickled.npy", [{"strain_matrix": _strain()}])
    items = list(sources.read_sources([str(tmp_path)]))
    good, bad = _slices(items), _rejects(items)
    assert sorted(s.slice_id for s in good) == ["good", "good"]
    assert sorted(os.path.basename(r.file) for r in bad) == [
        "broken.npz",
        "pickled.npy",
    ]
    with pytest.raises(FileNotFoundError):
        sources.read_sources([str(tmp_path / "missing")])
