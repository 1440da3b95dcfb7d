"""Sector orientation in the data: validation, every format, the sheet, records."""

import dataclasses
import glob
import os

import h5py
import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from lma_tf import testing
from lma_tf.data import collect, features, records, synthetic
from lma_tf.data.formats import mat, npy, npz
from lma_tf.data.slices import (
    ORIENTATION_FIELDS,
    DenseSlice,
    SliceError,
    orientation_fields,
    orientation_values,
    validate_slice,
)
from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision.orientation import Orientation

SEGMENT1_CW = Orientation("segment1", 10.5, "cw")


def _slice(subject="P001", slice_id="mid", o: Orientation | None = SEGMENT1_CW):
    s = testing.random_slice(np.random.default_rng(3), subject, slice_id)
    return dataclasses.replace(s, **orientation_fields(o))


def _collect(path, **kw):
    slices, rejects, _ = collect.collect_slices([str(path)], progress=False, **kw)
    return slices, rejects


def _only(path, **kw) -> DenseSlice:
    slices, rejects = _collect(path, **kw)
    assert rejects == [] and len(slices) == 1
    return slices[0]


# ----------------------------------------------------------------------------
# Validation


def test_validation_normalises_a_full_orientation():
    s = _slice(o=None)
    s = dataclasses.replace(
        s,
        orientation_sector0=" RV_Insertion",
        orientation_offset=np.array([[3.1]]),
        orientation_direction="CW",
    )
    v = validate_slice(s)
    assert orientation_values(v) == ("rv_insertion", float(np.float32(3.1)), "cw")
    assert v.orientation == Orientation("rv_insertion", np.float32(3.1), "cw")


def test_validation_without_orientation_keeps_none():
    v = validate_slice(_slice(o=None))
    assert orientation_values(v) == (None, None, None) and v.orientation is None


def test_offset_126_is_the_start_of_the_ring():
    s = dataclasses.replace(_slice(), orientation_offset=126.0)
    assert validate_slice(s).orientation_offset == 0.0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"orientation_direction": None}, "orientation_direction missing"),
        (
            {"orientation_sector0": None, "orientation_offset": None},
            "orientation_sector0, orientation_offset missing",
        ),
        ({"orientation_sector0": "septum"}, "orientation_sector0 is not one of"),
        ({"orientation_sector0": b"segment1"}, "orientation_sector0 must be text"),
        ({"orientation_direction": "clockwise"}, "orientation_direction is not one"),
        ({"orientation_offset": -0.5}, "orientation_offset is -0.5 sectors"),
        ({"orientation_offset": 130.0}, "orientation_offset is 130 sectors"),
        ({"orientation_offset": float("nan")}, "orientation_offset contains NaN"),
        ({"orientation_offset": "ten"}, "orientation_offset has non-numeric"),
    ],
)
def test_invalid_orientation_is_refused(change, message):
    with pytest.raises(SliceError, match=message):
        validate_slice(dataclasses.replace(_slice(), **change))


def test_invalid_orientation_in_a_file_is_one_reject(tmp_path):
    good = _slice("P001", "a")
    bad = dataclasses.replace(_slice("P001", "b"), orientation_direction="up")
    npz.write([good, bad], str(tmp_path))
    slices, rejects = _collect(tmp_path)
    assert [s.slice_id for s in slices] == ["a"]
    assert len(rejects) == 1
    assert rejects[0].slice_id == "b"
    assert rejects[0].file.endswith("b.npz")
    assert "orientation_direction is not one of ccw, cw" in rejects[0].reason


# ----------------------------------------------------------------------------
# Formats: write with an orientation, read back the same fields


@pytest.mark.parametrize("o", [SEGMENT1_CW, orientation_lib.DEFAULT, None])
def test_npz_round_trip(tmp_path, o):
    (path,) = npz.write([_slice(o=o)], str(tmp_path))
    with np.load(path) as z:
        assert (ORIENTATION_FIELDS[0] in z.files) == (o is not None)
    got = _only(tmp_path)
    assert got.orientation == o
    want = validate_slice(_slice(o=o))
    assert orientation_values(got) == orientation_values(want)


def test_npy_round_trip(tmp_path):
    slices = [_slice("P001", "a"), _slice("P001", "b", o=None)]
    npy.write(slices, str(tmp_path))
    got = {s.slice_id: s for s in _collect(tmp_path, allow_pickle=True)[0]}
    assert orientation_values(got["a"]) == ("segment1", 10.5, "cw")
    assert got["b"].orientation is None


@pytest.mark.parametrize("version", mat.VERSIONS)
@pytest.mark.parametrize("direction", orientation_lib.DIRECTIONS)
def test_mat_round_trip(tmp_path, version, direction):
    o = Orientation("rv_insertion", 0.0, direction)
    (path,) = mat.write([_slice(o=o)], str(tmp_path), version)
    got = _only(path)
    assert orientation_values(got) == ("rv_insertion", 0.0, direction)


def test_mat_v73_writes_a_logical_clockwise(tmp_path):
    o = Orientation("rv_insertion", 0.0, "cw")
    (path,) = mat.write([_slice(o=o)], str(tmp_path), "7.3")
    with h5py.File(path, "r") as f:
        ds = f["AnalysisInfo/Clockwise"]
        assert ds.attrs["MATLAB_class"] == b"logical"
        assert ds[()].reshape(-1).tolist() == [1]
        assert f["AnalysisInfo/PositionA"][()].reshape(-1).tolist() == [64.0, 64.0]


def test_mat_without_orientation_has_no_analysis_info(tmp_path):
    (path,) = mat.write([_slice(o=None)], str(tmp_path), "5")
    assert "AnalysisInfo" not in scipy.io.loadmat(path)
    assert _only(path).orientation is None


def test_mat_writer_refuses_an_orientation_an_export_cannot_hold(tmp_path):
    slices = [_slice("P001", "a", orientation_lib.DEFAULT), _slice("P001", "b")]
    with pytest.raises(ValueError, match="cannot hold the orientation segment1"):
        mat.write(slices, str(tmp_path))
    assert glob.glob(str(tmp_path / "**" / "*.mat"), recursive=True) == []


def _export(path, analysis_info: dict | None) -> str:
    """A minimal DENSEanalysis-like v5 export with the given AnalysisInfo."""
    strain = _slice().strain_matrix.astype(np.float64)
    variables = {"StrainInfo": {"CCmid": strain}}
    if analysis_info is not None:
        variables["AnalysisInfo"] = analysis_info
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, variables, oned_as="row")
    return path


def test_mat_analysis_info_gives_the_orientation(tmp_path):
    info = {
        "PositionA": np.array([[40.5, 52.0]]),
        "PositionB": np.array([[30.0, 41.0]]),
        "Clockwise": np.array([[True]]),
        "Nseg": 126.0,  # other AnalysisInfo fields are ignored
    }
    path = _export(str(tmp_path / "P009" / "SA2.mat"), info)
    got = _only(path)
    assert orientation_values(got) == ("rv_insertion", 0.0, "cw")
    expected = orientation_lib.from_dense_analysis((40.5, 52.0), (30.0, 41.0), True)
    assert got.orientation == expected
    info["Clockwise"] = np.array([[False]])
    _export(path, info)
    assert _only(path).orientation_direction == "ccw"


@pytest.mark.parametrize(
    "info, message",
    [
        (
            {"PositionA": np.array([[40.0, 52.0]])},
            "AnalysisInfo.PositionB, AnalysisInfo.Clockwise missing",
        ),
        (
            {
                "PositionA": np.array([[40.0, 52.0]]),
                "PositionB": np.array([[40.0, 52.0]]),
                "Clockwise": 1.0,
            },
            "coincide",
        ),
        (
            {
                "PositionA": np.array([[40.0, 52.0, 1.0]]),
                "PositionB": np.array([[30.0, 41.0]]),
                "Clockwise": 1.0,
            },
            "AnalysisInfo.PositionA must be a finite",
        ),
        (
            {
                "PositionA": np.array([[40.0, 52.0]]),
                "PositionB": np.array([[30.0, 41.0]]),
                "Clockwise": 2.0,
            },
            "AnalysisInfo.Clockwise must be true or false",
        ),
    ],
)
def test_bad_analysis_info_is_one_reject(tmp_path, info, message):
    path = _export(str(tmp_path / "P009" / "SA2.mat"), info)
    slices, rejects = _collect(path)
    assert slices == [] and len(rejects) == 1
    assert rejects[0].slice_id == "SA2" and message in rejects[0].reason


# ----------------------------------------------------------------------------
# Record sheet


def _sheet(folder, text: str) -> str:
    path = os.path.join(folder, "manifest.csv")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def test_sheet_columns_set_and_override_the_orientation(tmp_path):
    npz.write([_slice("P001", "a", o=None)], str(tmp_path))
    mat.write([_slice("P002", "b", orientation_lib.DEFAULT)], str(tmp_path))
    sheet = _sheet(
        tmp_path,
        "file,orientation_sector0,orientation_offset,orientation_direction\n"
        "P001/a.npz,segment1,12.25,cw\n"
        "P002/b.mat,,,cw\n",  # only the direction replaces the export's
    )
    got = {s.slice_id: s for s in _collect(sheet)[0]}
    assert orientation_values(got["a"]) == ("segment1", 12.25, "cw")
    assert orientation_values(got["b"]) == ("rv_insertion", 0.0, "cw")


def test_sheet_with_part_of_an_orientation_is_one_reject(tmp_path):
    npz.write([_slice("P001", "a", o=None)], str(tmp_path))
    sheet = _sheet(tmp_path, "file,orientation_offset\nP001/a.npz,4\n")
    slices, rejects = _collect(sheet)
    assert slices == [] and len(rejects) == 1
    assert "incomplete orientation" in rejects[0].reason


def test_sheet_bad_offset_names_the_line(tmp_path):
    npz.write([_slice("P001", "a")], str(tmp_path))
    sheet = _sheet(tmp_path, "file,orientation_offset\nP001/a.npz,north\n")
    (reject,) = _collect(sheet)[1]
    assert "orientation_offset is not a number" in reject.reason
    assert "line 2" in reject.reason and "north" not in reject.reason


# ----------------------------------------------------------------------------
# Records


def test_records_keep_the_orientation(tmp_path):
    slices = [
        _slice("P001", "a"),
        _slice("P002", "b", orientation_lib.DEFAULT),
        _slice("P003", "c", o=None),
    ]
    npz.write(slices, str(tmp_path / "in"))
    options = records.RecordsOptions(
        output_dir=str(tmp_path / "out"), split=(1.0, 0.0, 0.0), progress=False
    )
    manifest = records.make_records([str(tmp_path / "in")], options)
    assert features.HAS_ORIENTATION in manifest["feature_keys"]
    got = {}
    for shard in manifest["splits"]["train"]["shards"]:
        for raw in tf.data.TFRecordDataset(str(tmp_path / "out" / shard)):
            parsed = {k: v.numpy() for k, v in features.parse_example(raw).items()}
            s = features.example_to_slice(parsed)
            got[s.slice_id] = s
    assert orientation_values(got["a"]) == ("segment1", 10.5, "cw")
    assert orientation_values(got["b"]) == ("rv_insertion", 0.0, "ccw")
    assert orientation_values(got["c"]) == (None, None, None)


def test_records_without_orientation_features_still_parse():
    example = features.slice_to_example(validate_slice(_slice()))
    for key in (
        features.ORIENTATION_SECTOR0,
        features.ORIENTATION_OFFSET,
        features.ORIENTATION_DIRECTION,
        features.HAS_ORIENTATION,
    ):
        del example.features.feature[key]  # as written before the features
    parsed = features.parse_example(tf.constant(example.SerializeToString()))
    parsed = {k: v.numpy() for k, v in parsed.items()}
    assert features.example_to_slice(parsed).orientation is None


@pytest.mark.parametrize(
    "key, value",
    [
        (features.ORIENTATION_DIRECTION, b"up"),
        (features.ORIENTATION_SECTOR0, b""),
        (features.ORIENTATION_OFFSET, 200.0),
        (features.HAS_ORIENTATION, 2),
    ],
)
def test_parser_refuses_a_bad_orientation(key, value):
    example = features.slice_to_example(validate_slice(_slice()))
    feature = example.features.feature[key]
    if isinstance(value, bytes):
        feature.bytes_list.value[:] = [value]
    elif isinstance(value, float):
        feature.float_list.value[:] = [value]
    else:
        feature.int64_list.value[:] = [value]
    with pytest.raises(tf.errors.InvalidArgumentError):
        features.parse_example(tf.constant(example.SerializeToString()))


# ----------------------------------------------------------------------------
# The synthetic cohort states its convention


def test_synthetic_cohort_puts_its_septum_in_the_septal_segments():
    subject = synthetic.generate_subject(synthetic.subject_rng(0, 0), "SYN0000", "lbbb")
    for s in subject.slices:
        assert s.orientation == orientation_lib.DEFAULT
    o = subject.slices[0].orientation
    septal = synthetic.SEPTAL_SECTORS
    assert set(o.sector_segments("basal")[septal]) == {2, 3}
    assert set(o.sector_segments("mid")[septal]) == {8, 9}
    lateral = synthetic.LATERAL_SECTORS
    assert set(o.sector_segments("basal")[lateral]) == {5, 6}
