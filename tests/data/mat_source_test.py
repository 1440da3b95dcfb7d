"""Reading DENSEanalysis .mat exports (MATLAB v5 and v7.3) via sources.read_source."""

from __future__ import annotations

import h5py
import numpy as np
import scipy.io

from lma_tf.data import sources
from lma_tf.data.slices import DenseSlice, Reject, validate_slice

S = 126


def _strain(frames: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.2, 0.2, (S, frames))


def _tos(peak: float = 100.0) -> np.ndarray:
    return np.linspace(17.0, peak, S)


def _one(path) -> DenseSlice | Reject:
    items = list(sources.read_source(str(path)))
    assert len(items) == 1, items
    return items[0]


def _one_slice(path) -> DenseSlice:
    item = _one(path)
    assert isinstance(item, DenseSlice), item
    return item


def _one_reject(path) -> Reject:
    item = _one(path)
    assert isinstance(item, Reject), item
    return item


# ----------------------------------------------------------------------------
# .mat, MATLAB v5


def _savemat(path, variables) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables)


def test_mat_v5_basic(tmp_path):
    strain, tos = _strain(35), _tos()
    path = tmp_path / "patient9" / "slice_mid.mat"
    _savemat(
        path,
        {
            "StrainInfo": {"CCmid": strain},
            "TOSAnalysis": {"TOSfullRes_Jerry": tos[None]},
            "SequenceInfo": np.array(
                [{"SliceLocation": 12.5}, {"SliceLocation": 0.0}], dtype=object
            ),
            "Unrelated": {"x": np.ones(3)},
        },
    )
    s = _one_slice(path)
    assert (s.subject_id, s.slice_id) == ("patient9", "slice_mid")
    np.testing.assert_allclose(s.strain_matrix, strain)
    np.testing.assert_allclose(s.tos_ms, tos)
    assert s.slice_location == 12.5 and s.frame_period_ms == 17.0
    assert s.source == str(path)
    validate_slice(s)


def test_mat_v5_prefers_svd_strain(tmp_path):
    svd, raw = _strain(30, 1), _strain(30, 2)
    path = tmp_path / "p" / "a.mat"
    _savemat(path, {"StrainInfo": {"CCmid": raw, "CCmidSVD": svd}})
    np.testing.assert_allclose(_one_slice(path).strain_matrix, svd)


def test_mat_v5_empty_svd_falls_back(tmp_path):
    raw = _strain()
    path = tmp_path / "p" / "a.mat"
    _savemat(path, {"StrainInfo": {"CCmidSVD": np.zeros((0, 0)), "CCmid": raw}})
    np.testing.assert_allclose(_one_slice(path).strain_matrix, raw)


def test_mat_v5_transmural_ecc_is_transposed(tmp_path):
    strain = _strain(28)
    path = tmp_path / "p" / "a.mat"
    _savemat(
        path,
        {
            "TransmuralStrainInfo": {"Ecc": {"mid": strain.T}},  # frames x segments
            "TOS126": _tos()[:, None],  # top-level, 126 x 1
            # A structured array as a single struct:
            "SequenceInfo": np.array([(7.25,)], dtype=[("SliceLocation", "f8")]),
        },
    )
    s = _one_slice(path)
    assert s.strain_matrix.shape == (S, 28)
    np.testing.assert_allclose(s.strain_matrix, strain)
    np.testing.assert_allclose(s.tos_ms, _tos())
    assert s.slice_location == 7.25


def test_mat_v5_tos_priority(tmp_path):
    path = tmp_path / "p" / "a.mat"
    _savemat(
        path,
        {
            "StrainInfo": {"CCmid": _strain()},
            "TOS126": _tos(50.0),
            "TOSAnalysis": {"TOS": _tos(70.0), "TOSfullRes_Jerry": _tos(90.0)},
        },
    )
    np.testing.assert_allclose(_one_slice(path).tos_ms, _tos(90.0))
    _savemat(
        path,
        {
            "StrainInfo": {"CCmid": _strain()},
            "TOSAnalysis": {"TOS": np.full(18, 30.0)},  # 18 segments only
            "TOS126": _tos(50.0),
        },
    )
    np.testing.assert_allclose(_one_slice(path).tos_ms, _tos(50.0))
    _savemat(path, {"StrainInfo": {"CCmid": _strain()}, "TOSAnalysis": {"TOS": _tos()}})
    np.testing.assert_allclose(_one_slice(path).tos_ms, _tos())


def test_mat_v5_no_strain(tmp_path):
    path = tmp_path / "p" / "a.mat"
    _savemat(path, {"TOSAnalysis": {"TOS": _tos()}})
    r = _one_reject(path)
    assert r.slice_id == "a"
    for field in (
        "StrainInfo.CCmidSVD",
        "StrainInfo.CCmid",
        "TransmuralStrainInfo.Ecc.mid",
    ):
        assert field in r.reason


# ----------------------------------------------------------------------------
# .mat, MATLAB v7.3 (HDF5), written the way MATLAB lays it out


def _h5_struct(parent: h5py.Group, name: str) -> h5py.Group:
    g = parent.create_group(name)
    g.attrs["MATLAB_class"] = np.bytes_("struct")
    return g


def _h5_double(parent: h5py.Group, name: str, matlab_value) -> h5py.Dataset:
    """Stores a MATLAB array (2-D at least) transposed, as MATLAB does."""
    value = np.atleast_2d(np.asarray(matlab_value, dtype=np.float64))
    ds = parent.create_dataset(name, data=value.T)
    ds.attrs["MATLAB_class"] = np.bytes_("double")
    return ds


def _h5_struct_array(f: h5py.File, parent: h5py.Group, name: str, field: str, values):
    """A 1xN struct array: the field holds references into #refs#."""
    g = _h5_struct(parent, name)
    refs_group = f.require_group("#refs#")
    refs = []
    for i, v in enumerate(values):
        ds = (
            _h5_double(refs_group, f"{name}_{field}_{i}", v)
            if not isinstance(v, str)
            else refs_group.create_dataset(
                f"{name}_{field}_{i}", data=np.array([[ord(c)] for c in v], np.uint16)
            )
        )
        if isinstance(v, str):
            ds.attrs["MATLAB_class"] = np.bytes_("char")
        refs.append(ds.ref)
    g.create_dataset(field, data=np.array(refs, dtype=h5py.ref_dtype)[:, None])
    return g


def test_mat_v73_struct_array_by_references(tmp_path):
    strain, tos = _strain(33), _tos()
    path = tmp_path / "patient3" / "apex.mat"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        si = _h5_struct(f, "StrainInfo")
        empty = si.create_dataset("CCmidSVD", data=np.array([0, 0], np.uint64))
        empty.attrs["MATLAB_class"] = np.bytes_("double")
        empty.attrs["MATLAB_empty"] = np.uint8(1)
        _h5_double(si, "CCmid", strain)
        assert si["CCmid"].shape == (33, S)  # transposed on disk
        _h5_double(_h5_struct(f, "TOSAnalysis"), "TOSfullRes_Jerry", tos[None])
        _h5_struct_array(f, f, "SequenceInfo", "SliceLocation", [12.5, -1.0])
    s = _one_slice(path)
    assert (s.subject_id, s.slice_id) == ("patient3", "apex")
    np.testing.assert_allclose(s.strain_matrix, strain)
    np.testing.assert_allclose(s.tos_ms, tos)
    assert s.slice_location == 12.5
    validate_slice(s)


def test_mat_v73_plain_groups_and_ecc(tmp_path):
    strain = _strain(26)
    path = tmp_path / "p" / "b.mat"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        tsi = _h5_struct(f, "TransmuralStrainInfo")
        _h5_double(_h5_struct(tsi, "Ecc"), "mid", strain.T)  # frames x segments
        _h5_double(_h5_struct(f, "SequenceInfo"), "SliceLocation", 3.0)
        _h5_double(f, "TOS126", _tos()[:, None])
    s = _one_slice(path)
    np.testing.assert_allclose(s.strain_matrix, strain)
    np.testing.assert_allclose(s.tos_ms, _tos())
    assert s.slice_location == 3.0


def test_mat_v73_char_where_number_expected(tmp_path):
    path = tmp_path / "p" / "c.mat"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        _h5_double(_h5_struct(f, "StrainInfo"), "CCmid", _strain())
        _h5_struct_array(f, f, "SequenceInfo", "SliceLocation", ["abc"])
    r = _one_reject(path)
    assert "SliceLocation" in r.reason and r.slice_id == "c"


def test_mat_v73_no_strain(tmp_path):
    path = tmp_path / "p" / "d.mat"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        _h5_double(f, "TOS126", _tos())
    assert "StrainInfo.CCmid" in _one_reject(path).reason
