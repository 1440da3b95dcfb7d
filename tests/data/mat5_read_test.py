"""The numpy MATLAB v5 reader gives what scipy.io.loadmat gives, or declines.

Every value is compared with `scipy.io.loadmat(squeeze_me=True,
struct_as_record=False)` of the same file (a struct compared field by field),
and `mat.read` reads the same slices either way.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io

from lma_tf import testing
from lma_tf.data.formats import mat, mat5_read


def _same(ours, theirs, where="") -> None:
    """Recursive equality of our value and scipy's (mat_struct == dict)."""
    if hasattr(theirs, "_fieldnames"):
        assert isinstance(ours, dict), where
        assert list(ours) == list(theirs._fieldnames), where
        for k in ours:
            _same(ours[k], getattr(theirs, k), f"{where}.{k}")
        return
    if isinstance(theirs, np.ndarray) and theirs.dtype == object:
        assert isinstance(ours, np.ndarray) and ours.dtype == object, where
        assert ours.shape == theirs.shape, where
        for i, (a, b) in enumerate(zip(ours.flat, theirs.flat)):
            _same(a, b, f"{where}[{i}]")
        return
    assert type(ours) is type(theirs), f"{where}: {type(ours)} vs {type(theirs)}"
    if isinstance(theirs, np.ndarray):
        assert ours.dtype == theirs.dtype, f"{where}: {ours.dtype} vs {theirs.dtype}"
        assert ours.shape == theirs.shape, where
        np.testing.assert_array_equal(ours, theirs, err_msg=where)
    else:
        assert ours == theirs, where


def _both(variables: dict, **savemat_kwargs):
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, **savemat_kwargs)
    return buf.getvalue()


def _check(tmp_path, variables, names=None, **kwargs) -> dict:
    path = tmp_path / "x.mat"
    path.write_bytes(_both(variables, **kwargs))
    names = names or list(variables)
    ours = mat5_read.load(str(path), names)
    assert ours is not None, "declined a file it should read"
    theirs = scipy.io.loadmat(
        str(path), squeeze_me=True, struct_as_record=False, variable_names=names
    )
    theirs = {k: v for k, v in theirs.items() if not k.startswith("__")}
    assert sorted(ours) == sorted(theirs)
    for k in ours:
        _same(ours[k], theirs[k], k)
    return ours


RNG = np.random.default_rng(0)
STRUCT_ARRAY = np.empty((1, 2), dtype=[("SliceLocation", object), ("Name", object)])
STRUCT_ARRAY[0, 0] = (np.array([[3.5]]), "first")
STRUCT_ARRAY[0, 1] = (np.array([[-1.0]]), "second")
CELL = np.empty((2, 2), dtype=object)
CELL[0, 0], CELL[0, 1] = np.arange(3.0), "text"
CELL[1, 0], CELL[1, 1] = {"a": np.eye(2)}, np.zeros((0, 0))


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize(
    "variables",
    [
        {"StrainInfo": {"CCmid": RNG.normal(size=(126, 30)), "CCmidSVD": np.ones(3)}},
        {"TOS126": RNG.uniform(17, 200, 126), "frame_period_ms": 17.0},
        {"x": np.arange(24, dtype=np.int16).reshape(2, 3, 4)},
        {"a": np.array([[True, False, True]]), "b": np.uint8(7), "c": np.int64(-3)},
        {"f": np.float32([1.5, 2.5]), "e": np.zeros((0, 3)), "s": "hello"},
        {"ec": "", "ei": np.zeros((0, 2), np.int32), "ecell": np.empty((0, 0), object)},
        {"chars": np.array(["ab", "cd"]), "uni": "DENSE \u00e9\u00e8"},
        {"SequenceInfo": STRUCT_ARRAY, "C": CELL},
        {"nest": {"inner": {"deeper": {"v": np.arange(5.0)}}}, "empty": {}},
        {"z": RNG.normal(size=(3, 2)) + 1j},
    ],
    ids=[
        "struct",
        "vectors",
        "nd-int",
        "logical",
        "single",
        "empty",
        "chars",
        "arrays",
        "nested",
        "complex",
    ],
)
def test_same_values_as_scipy(tmp_path, variables, compress):
    _check(tmp_path, variables, do_compression=compress)


def test_only_the_names_asked_for(tmp_path):
    got = _check(
        tmp_path, {"keep": np.ones(2), "skip": np.zeros(3)}, names=["keep", "absent"]
    )
    assert list(got) == ["keep"]


@pytest.mark.parametrize(
    "content",
    [
        b"not a mat file at all" * 10,
        _both({"x": np.ones(3)}, format="4"),  # MATLAB v4
        _both({"x": np.ones(3)})[:-20],  # truncated
    ],
    ids=["garbage", "v4", "truncated"],
)
def test_declines_what_it_does_not_read(tmp_path, content):
    path = tmp_path / "x.mat"
    path.write_bytes(content)
    assert mat5_read.load(str(path), ["x"]) is None


def test_declines_sparse_and_scipy_reads_it(tmp_path):
    import scipy.sparse

    path = tmp_path / "p" / "s.mat"
    path.parent.mkdir()
    strain = scipy.sparse.csc_matrix(RNG.normal(0, 0.05, (126, 30)))
    scipy.io.savemat(path, {"StrainInfo": {"CCmid": strain}})
    assert mat5_read.load(str(path), ["StrainInfo"]) is None
    (item,) = mat.read(str(path))  # scipy reads it, the contract refuses it
    assert item.reason == "StrainInfo.CCmid is not a numeric array"


def test_written_exports_read_back_the_same(tmp_path):
    rng = np.random.default_rng(1)
    slices = [testing.random_slice(rng, "P", f"s{i}", 30 + i) for i in range(3)]
    for version in mat.VERSIONS:
        paths = mat.write(slices, str(tmp_path / version), version)
        for s, path in zip(slices, paths):
            (got,) = mat.read(path)
            np.testing.assert_allclose(got.strain_matrix, s.strain_matrix)
            np.testing.assert_allclose(got.tos_ms, s.tos_ms)
            assert got.slice_location == pytest.approx(s.slice_location)
            assert got.orientation == s.orientation
