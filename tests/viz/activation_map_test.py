"""3-D activation maps from a prediction CSV: the data is in the picture.

numpy + matplotlib only (no TensorFlow): figures are checked through their
artists (colours per polygon, in the known order); the command is run as
`python -m lma_tf.cli.maps` and `python tools/maps.py`.
"""

from __future__ import annotations

import ast
import csv
import os
import subprocess
import sys

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import pytest
from viz_samples import N, ring, subject

from lma_tf.errors import UsageError
from lma_tf.serving import prediction_csv
from lma_tf.viz import activation_map, figures
from lma_tf.viz import rings as rings_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ENV = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}


def _assert_png(path) -> None:
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    assert os.path.getsize(path) > 1000


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_scene_places_sectors_rings_boundaries_and_scar():
    rings = subject()
    tos_range = (17.0, 100.0)
    scene = activation_map.activation_map_scene(
        rings, [r.tos_ms for r in rings], tos_range
    )
    assert scene.levels == ["basal", "mid", "apical"]
    kinds = np.asarray(scene.kinds)
    cmap = plt.get_cmap(figures.TOS_CMAP)
    for i, r in enumerate(rings):
        sel = (kinds == "sector") & (scene.ring == i)
        assert sel.sum() == N
        np.testing.assert_array_equal(scene.sector[sel], np.arange(N))
        quads = scene.quads[sel]
        centre = quads.mean(axis=1)
        # Sector k is centred at angle 2 pi (k + 0.5) / 126 ...
        angle = np.mod(np.arctan2(centre[:, 1], centre[:, 0]), 2 * np.pi)
        np.testing.assert_allclose(angle, 2 * np.pi * (np.arange(N) + 0.5) / N)
        # ... inside its ring's band, at its slice's height.
        assert np.all(quads[..., 2] >= scene.band[i, 0] - 1e-9)
        assert np.all(quads[..., 2] <= scene.band[i, 1] + 1e-9)
        assert np.mean(scene.band[i]) == pytest.approx(r.location)
        want = cmap(np.clip((r.tos_ms - 17.0) / 83.0, 0, 1))
        np.testing.assert_allclose(scene.colours[sel], want, atol=1e-6)
    assert scene.band[0, 0] > scene.band[1, 1] > scene.band[2, 1]  # base on top
    # AHA boundaries: 6 on basal and mid rings, 4 on the apical one.
    bounds = kinds == "aha_boundary"
    assert [int((bounds & (scene.ring == i)).sum()) for i in range(3)] == [6, 6, 4]
    angles = [
        np.mod(np.arctan2(q[:, 1].mean(), q[:, 0].mean()), 2 * np.pi)
        for q in scene.quads[bounds & (scene.ring == 2)]
    ]
    # Default orientation (the report's): apical edges at sector 5.25 + 31.5 k.
    want_deg = [15, 105, 195, 285]
    np.testing.assert_allclose(sorted(angles), np.deg2rad(want_deg), atol=1e-9)
    # The scar (mid ring, sectors 0-9) is outlined there and only there.
    scar = kinds == "scar_outline"
    assert set(scene.ring[scar]) == {1}
    corners = scene.quads[scar].reshape(-1, 3)
    scar_angles = np.mod(np.arctan2(corners[:, 1], corners[:, 0]), 2 * np.pi)
    hi = 2 * np.pi * 10 / N
    w = np.deg2rad(1.0)
    assert np.all((scar_angles <= hi + w) | (scar_angles >= 2 * np.pi - w))
    outline = np.asarray(matplotlib.colors.to_rgba(figures.SCAR_OUTLINE_COLOUR))
    assert np.all(scene.colours[scar] == outline)
    # The shell comes first, then each ring's sectors, boundaries and scar.
    assert kinds[0] == "shell" and set(scene.ring[kinds == "shell"]) == {-1}


def test_scar_run_through_sector_zero_is_one_outline():
    r = ring("wrap", 0.0, scar=list(range(120, 126)) + [0, 1, 2])
    scene = activation_map.activation_map_scene([r], [r.tos_ms], (17.0, 100.0))
    kinds = np.asarray(scene.kinds)
    # top + bottom edges (9 sectors each) + 2 end strips: one outline.
    assert int((kinds == "scar_outline").sum()) == 9 + 9 + 2


def test_activation_map_figure_and_png(tmp_path):
    rings = subject()
    rings[0].true_tos_ms = rings[0].tos_ms.copy()
    fig = activation_map.activation_map_figure(
        rings, tos_range=(17.0, 100.0), title="p01"
    )
    axes3d = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(axes3d) == 4  # (TOS, true TOS) x two views
    scene = activation_map.activation_map_scene(
        rings, [r.tos_ms for r in rings], (17, 100)
    )
    (coll,) = [c for c in axes3d[0].collections if c.get_gid() == "activation_map"]

    # Matplotlib keeps the faces depth-sorted: compare them as a multiset.
    def rows(a):
        a = np.round(np.asarray(a, np.float64), 6)
        return a[np.lexsort(a.T[::-1])]

    np.testing.assert_array_equal(rows(coll.get_facecolor()), rows(scene.colours))
    assert [ax.get_title() for ax in axes3d][2].startswith("true TOS")
    colorbar = [ax for ax in fig.axes if ax.name != "3d"][0]
    assert colorbar.get_ylabel() == "TOS (ms)"
    assert colorbar.get_ylim() == (17.0, 100.0)
    path = figures.save_figure(fig, str(tmp_path / "map.png"))
    _assert_png(path)
    with pytest.raises(ValueError):
        activation_map.activation_map_figure([])


def _write_predictions(path, subjects, extra=True, drop=()):
    cols = [
        "subject_id", "slice_id", "slice_location", "sector", "tos_ms",
        "lma_probability", "combined_tos_ms",
    ]  # fmt: skip
    if extra:
        cols += ["scar_fraction", "true_tos_ms"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([c for c in cols if c not in drop])
        for subject_id, rings in subjects.items():
            for r in rings:
                for k in range(N):
                    row = {
                        "subject_id": subject_id,
                        "slice_id": r.slice_id,
                        "slice_location": "" if r.location is None else r.location,
                        "sector": k,
                        "tos_ms": r.tos_ms[k] + 1.0,
                        "lma_probability": float(r.tos_ms[k] > 18),
                        "combined_tos_ms": r.tos_ms[k],
                        "scar_fraction": r.scar_fraction[k],
                        "true_tos_ms": r.tos_ms[k],
                    }
                    w.writerow([row[c] for c in cols if c not in drop])


def test_read_rings(tmp_path):
    path = tmp_path / "p.csv"
    _write_predictions(path, {"p01": subject(), "p02": subject()[:1]})
    subjects = rings_lib.read_rings(str(path))
    assert list(subjects) == ["p01", "p02"]
    base = subjects["p01"][0]
    assert base.slice_id == "base" and base.location == 30.0
    assert base.tos_ms[70] == 100.0 and base.tos_ms[0] == 17.0  # combined
    assert base.scar_fraction is not None and base.true_tos_ms[70] == 100.0
    assert base.lma_probability[70] == 1.0
    regressed = rings_lib.read_rings(str(path), tos_column="tos_ms")
    assert regressed["p01"][0].tos_ms[70] == 101.0
    plain = tmp_path / "plain.csv"
    _write_predictions(plain, {"p01": subject()}, extra=False)
    r = rings_lib.read_rings(str(plain))["p01"][1]
    assert r.scar_fraction is None and r.true_tos_ms is None
    with pytest.raises(ValueError, match="tos_column"):
        rings_lib.read_rings(str(path), tos_column="true_tos_ms")


def test_read_rings_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.csv"
    _write_predictions(bad, {"p01": subject()[:1]}, drop=("combined_tos_ms",))
    with pytest.raises(prediction_csv.PredictionCsvError, match="combined_tos_ms"):
        rings_lib.read_rings(str(bad))
    dup = tmp_path / "dup.csv"
    _write_predictions(dup, {"p01": subject()[:1]})
    with open(dup, "a") as f:
        f.write("p01,base,30,5,20,0,17,0,17\n")
    with pytest.raises(ValueError, match="repeated"):
        rings_lib.read_rings(str(dup))
    with open(dup, "a") as f:
        f.write("p01,other,30,126,20,0,17,0,17\n")
    with pytest.raises(ValueError):
        rings_lib.read_rings(str(dup))


def test_missing_sectors_and_locations_are_tolerated(tmp_path):
    path = tmp_path / "p.csv"
    rings = subject()
    for r in rings:
        r.location = None
    _write_predictions(path, {"p 03/x": rings})
    lines = open(path).read().splitlines()
    with open(path, "w") as f:  # drop sector 10 of the first slice
        f.write("\n".join(line for i, line in enumerate(lines) if i != 11) + "\n")
    out = tmp_path / "maps"
    paths = activation_map.activation_maps_from_csv(str(path), str(out))
    assert sorted(os.path.basename(p) for p in paths) == [
        "p_03_x_activation_map.png",
        "p_03_x_bullseye.png",
    ]
    r = rings_lib.read_rings(str(path))["p 03/x"][0]
    assert np.isnan(r.tos_ms[10]) and r.location is None


def test_subject_ids_cannot_write_outside_the_output_dir(tmp_path):
    path = tmp_path / "p.csv"
    _write_predictions(path, {"../x": subject()[:1], "a/../../b": subject()[1:2]})
    out = tmp_path / "deep" / "maps"
    paths = activation_map.activation_maps_from_csv(str(path), str(out))
    assert len(paths) == 4
    for p in paths:
        assert os.path.realpath(os.path.dirname(p)) == os.path.realpath(out)
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p) for p in paths)
    assert sorted(os.listdir(tmp_path)) == ["deep", "p.csv"]
    assert os.listdir(tmp_path / "deep") == ["maps"]
    # A planted link out of the folder is refused, not followed.
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(tmp_path / "elsewhere.png", linked / "_x_activation_map.png")
    with pytest.raises(UsageError, match="outside"):
        activation_map.activation_maps_from_csv(str(path), str(linked))
    assert not (tmp_path / "elsewhere.png").exists()


def test_an_empty_file_is_a_usage_error(tmp_path):
    path = tmp_path / "empty.csv"
    _write_predictions(path, {})
    with pytest.raises(UsageError, match="no prediction rows"):
        activation_map.activation_maps_from_csv(str(path), str(tmp_path / "o"))


def test_maps_command(tmp_path):
    path = tmp_path / "p.csv"
    _write_predictions(path, {"p01": subject(), "p02": subject()[1:]})
    out = tmp_path / "maps"
    proc = _run("-m", "lma_tf.cli.maps", f"--predictions={path}", f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote 4 figures" in proc.stdout
    names = sorted(os.listdir(out))
    assert names == [
        "p01_activation_map.png",
        "p01_bullseye.png",
        "p02_activation_map.png",
        "p02_bullseye.png",
    ]
    for n in names:
        _assert_png(out / n)
    bad = _run("tools/maps.py", "activation_map", f"--predictions={path}")
    assert bad.returncode == 2 and "unexpected arguments" in bad.stderr
    assert "Traceback" not in bad.stderr
    broken = tmp_path / "broken.csv"
    _write_predictions(broken, {"p01": subject()[:1]}, drop=("sector",))
    proc = _run("tools/maps.py", f"--predictions={broken}", f"--output_dir={out}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "lma-tf maps: error:" in proc.stderr and "sector" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_maps_flags_need_no_numpy_and_agree_with_the_library():
    code = (
        "import sys, lma_tf.cli.maps as m\n"
        "heavy = {'numpy', 'matplotlib', 'tensorflow'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print(repr(m.TOS_COLUMNS))\n"
    )
    proc = _run("-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ast.literal_eval(proc.stdout.strip()) == prediction_csv.TOS_COLUMNS


def test_cohort_upper_range():
    assert rings_lib.tos_upper_range([np.array([17.0, 83.0]), None]) == 90.0
    assert rings_lib.tos_upper_range([np.full(3, 17.0)]) == 27.0
    assert rings_lib.tos_upper_range([np.array([np.nan, 120.0])]) == 120.0
