"""3-D activation maps, AHA bullseyes and Grad-CAM overlays: the data is in the picture.

numpy + matplotlib only (no TensorFlow): figures are checked through their
artists (colours per polygon / wedge, in the known order) and, for the
bullseye, by sampling pixels of the written PNG.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import matplotlib.colors
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from lma_tf import constants
from lma_tf.viz import plots

N = constants.NUM_SECTORS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path) -> None:
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    assert os.path.getsize(path) > 1000


def _ring(slice_id, location, late=(), scar=(), tos_late=100.0, **kw):
    tos = np.full(N, 17.0)
    tos[list(late)] = tos_late
    scar_fraction = np.zeros(N)
    scar_fraction[list(scar)] = 0.8
    return plots.RingData(slice_id, location, tos, scar_fraction, **kw)


def _subject():
    """Basal ring late in AHA segment 4 (sectors 63-83), mid with scar, apical."""
    return [
        _ring("base", 30.0, late=range(63, 84)),
        _ring("mid", 20.0, scar=range(0, 10)),
        _ring("apex", 10.0, late=range(0, 32), tos_late=60.0),
    ]


def test_aha_segments_of_sectors():
    basal = plots.aha_segments("basal")
    assert basal[0] == basal[20] == 1 and basal[21] == 2 and basal[125] == 6
    assert np.all(np.bincount(basal)[1:] == 21)
    mid = plots.aha_segments("mid")
    assert mid[0] == 7 and mid[125] == 12
    apical = plots.aha_segments("apical")  # 31.5 sectors per segment
    assert apical[31] == 13 and apical[32] == 14 and apical[125] == 16
    assert list(np.bincount(apical)[13:]) == [32, 31, 32, 31]
    with pytest.raises(ValueError):
        plots.aha_segments("apex")


@pytest.mark.parametrize(
    "locations, levels",
    [
        ([30, 20, 10], ["basal", "mid", "apical"]),
        ([30, 20, 10, 0], ["basal", "mid", "mid", "apical"]),
        ([5, 4, 3, 2, 1, 0], ["basal", "basal", "mid", "mid", "apical", "apical"]),
        ([10, 0], ["basal", "apical"]),
        ([7.5], ["mid"]),
        ([0, 20, 10], ["apical", "basal", "mid"]),  # order does not matter
    ],
)
def test_slice_levels_by_thirds_of_the_long_axis(locations, levels):
    assert plots.slice_levels(np.asarray(locations, float)) == levels


def test_ring_heights_conventions():
    rings = _subject()
    np.testing.assert_array_equal(plots.ring_heights(rings), [30, 20, 10])
    np.testing.assert_array_equal(plots.ring_heights(rings, False), [-30, -20, -10])
    rings[1].location = None  # without every location: file order, base first
    np.testing.assert_array_equal(plots.ring_heights(rings), [0, -1, -2])


def test_segment_values_average_and_leave_missing_segments_nan():
    rings = _subject()[:2]  # no apical slice: segments 13-16 missing
    # (Two slices alone would be basal + apical by thirds: set the levels.)
    values = plots.aha_segment_values(
        rings, [r.tos_ms for r in rings], levels=["basal", "mid"]
    )
    assert values[3] == 100.0  # segment 4 = sectors 63-83 of the basal ring
    assert np.all(values[[0, 1, 2, 4, 5]] == 17.0)
    assert np.all(values[6:12] == 17.0)
    assert np.isnan(values[12:]).all()
    half = np.full(N, np.nan)
    half[:10] = 40.0
    half[10:21] = 20.0
    got = plots.aha_segment_values(rings[:1], [half], levels=["mid"])
    assert got[6] == pytest.approx((10 * 40 + 11 * 20) / 21)  # NaN not counted
    assert np.isnan(got[7])


def test_bullseye_colours_encode_segments(tmp_path):
    fig = plots.bullseye_figure(_subject(), tos_range=(17.0, 100.0))
    tos_ax, scar_ax = [ax for ax in fig.axes if ax.get_title()][:2]
    assert tos_ax.get_title() == "TOS (ms)" and scar_ax.get_title() == "scar fraction"
    (coll,) = [c for c in tos_ax.collections if c.get_gid() == "bullseye"]
    values = np.ma.filled(coll.get_array(), np.nan)
    assert values[3] == 100.0 and values[12] == 60.0 and values[13] == 17.0
    fig.canvas.draw()
    faces = coll.get_facecolor()
    cmap = plt.get_cmap(plots.TOS_CMAP)
    np.testing.assert_allclose(faces[3], cmap(1.0), atol=1e-6)  # latest: top colour
    np.testing.assert_allclose(faces[0], cmap(0.0), atol=1e-6)  # 17 ms: bottom
    (scar_coll,) = [c for c in scar_ax.collections if c.get_gid() == "bullseye"]
    scar_values = np.ma.filled(scar_coll.get_array(), np.nan)
    assert scar_values[6] == pytest.approx(10 * 0.8 / 21)  # mid anterior (7)
    assert scar_values[7] == 0.0

    # The pixels: sample inside wedge 4 (inferior, 240-300 deg, outer ring)
    # and wedge 1 (anterior, 60-120 deg) of the written PNG.
    path = plots.save_figure(fig, str(tmp_path / "bullseye.png"))
    _assert_png(path)
    img = matplotlib.image.imread(path)
    h = img.shape[0]

    def pixel(ax, angle_deg, radius):
        a = np.deg2rad(angle_deg)
        x, y = ax.transData.transform((radius * np.cos(a), radius * np.sin(a)))
        return img[int(round(h - y)), int(round(x)), :3]

    np.testing.assert_allclose(pixel(tos_ax, 255, 2.75), cmap(1.0)[:3], atol=0.02)
    np.testing.assert_allclose(pixel(tos_ax, 105, 2.75), cmap(0.0)[:3], atol=0.02)


def test_missing_segments_are_grey():
    rings = [_ring("only", 5.0, late=range(0, 21))]  # one slice: mid ring only
    fig = plots.bullseye_figure(rings, tos_range=(17.0, 100.0))
    coll = [c for c in fig.axes[0].collections if c.get_gid() == "bullseye"][0]
    fig.canvas.draw()
    faces = coll.get_facecolor()
    grey = matplotlib.colors.to_rgba(plots.MISSING_COLOUR)
    for seg in list(range(0, 6)) + list(range(12, 16)):  # basal and apical
        np.testing.assert_allclose(faces[seg], grey, atol=1e-6)
    np.testing.assert_allclose(faces[6], plt.get_cmap(plots.TOS_CMAP)(1.0), atol=1e-6)
    plt.close(fig)


def test_scene_places_sectors_rings_boundaries_and_scar():
    rings = _subject()
    tos_range = (17.0, 100.0)
    scene = plots.activation_map_scene(rings, [r.tos_ms for r in rings], tos_range)
    assert scene.levels == ["basal", "mid", "apical"]
    kinds = np.asarray(scene.kinds)
    cmap = plt.get_cmap(plots.TOS_CMAP)
    for i, ring in enumerate(rings):
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
        assert np.mean(scene.band[i]) == pytest.approx(ring.location)
        want = cmap(np.clip((ring.tos_ms - 17.0) / 83.0, 0, 1))
        np.testing.assert_allclose(scene.colours[sel], want, atol=1e-6)
    assert scene.band[0, 0] > scene.band[1, 1] > scene.band[2, 1]  # base on top
    # AHA boundaries: 6 on basal and mid rings, 4 on the apical one.
    bounds = kinds == "aha_boundary"
    assert [int((bounds & (scene.ring == i)).sum()) for i in range(3)] == [6, 6, 4]
    angles = [
        np.mod(np.arctan2(q[:, 1].mean(), q[:, 0].mean()), 2 * np.pi)
        for q in scene.quads[bounds & (scene.ring == 2)]
    ]
    np.testing.assert_allclose(sorted(angles), np.deg2rad([0, 90, 180, 270]), atol=1e-9)
    # The scar (mid ring, sectors 0-9) is outlined there and only there.
    scar = kinds == "scar_outline"
    assert set(scene.ring[scar]) == {1}
    corners = scene.quads[scar].reshape(-1, 3)
    scar_angles = np.mod(np.arctan2(corners[:, 1], corners[:, 0]), 2 * np.pi)
    hi = 2 * np.pi * 10 / N
    w = np.deg2rad(1.0)
    assert np.all((scar_angles <= hi + w) | (scar_angles >= 2 * np.pi - w))
    outline = np.asarray(matplotlib.colors.to_rgba(plots.SCAR_OUTLINE_COLOUR))
    assert np.all(scene.colours[scar] == outline)


def test_scar_run_through_sector_zero_is_one_outline():
    ring = _ring("wrap", 0.0, scar=list(range(120, 126)) + [0, 1, 2])
    scene = plots.activation_map_scene([ring], [ring.tos_ms], (17.0, 100.0))
    kinds = np.asarray(scene.kinds)
    # top + bottom edges (9 sectors each) + 2 end strips: one outline.
    assert int((kinds == "scar_outline").sum()) == 9 + 9 + 2


def test_activation_map_figure_and_png(tmp_path):
    rings = _subject()
    rings[0].true_tos_ms = rings[0].tos_ms.copy()
    fig = plots.activation_map_figure(rings, tos_range=(17.0, 100.0), title="p01")
    axes3d = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(axes3d) == 4  # (TOS, true TOS) x two views
    scene = plots.activation_map_scene(rings, [r.tos_ms for r in rings], (17, 100))
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
    path = plots.save_figure(fig, str(tmp_path / "map.png"))
    _assert_png(path)
    with pytest.raises(ValueError):
        plots.activation_map_figure([])


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
        for subject, rings in subjects.items():
            for r in rings:
                for k in range(N):
                    row = {
                        "subject_id": subject,
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


def test_read_predictions_csv(tmp_path):
    path = tmp_path / "p.csv"
    _write_predictions(path, {"p01": _subject(), "p02": _subject()[:1]})
    subjects = plots.read_predictions_csv(str(path))
    assert list(subjects) == ["p01", "p02"]
    base = subjects["p01"][0]
    assert base.slice_id == "base" and base.location == 30.0
    assert base.tos_ms[70] == 100.0 and base.tos_ms[0] == 17.0  # combined
    assert base.scar_fraction is not None and base.true_tos_ms[70] == 100.0
    regressed = plots.read_predictions_csv(str(path), tos_column="tos_ms")
    assert regressed["p01"][0].tos_ms[70] == 101.0
    plain = tmp_path / "plain.csv"
    _write_predictions(plain, {"p01": _subject()}, extra=False)
    ring = plots.read_predictions_csv(str(plain))["p01"][1]
    assert ring.scar_fraction is None and ring.true_tos_ms is None


def test_read_predictions_csv_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.csv"
    _write_predictions(bad, {"p01": _subject()[:1]}, drop=("combined_tos_ms",))
    with pytest.raises(ValueError, match="combined_tos_ms"):
        plots.read_predictions_csv(str(bad))
    dup = tmp_path / "dup.csv"
    _write_predictions(dup, {"p01": _subject()[:1]})
    with open(dup, "a") as f:
        f.write("p01,base,30,5,20,0,17,0,17\n")
    with pytest.raises(ValueError, match="repeated"):
        plots.read_predictions_csv(str(dup))
    with open(dup, "a") as f:
        f.write("p01,other,30,126,20,0,17,0,17\n")
    with pytest.raises(ValueError):
        plots.read_predictions_csv(str(dup))


def test_missing_sectors_and_locations_are_tolerated(tmp_path):
    path = tmp_path / "p.csv"
    rings = _subject()
    for r in rings:
        r.location = None
    _write_predictions(path, {"p 03/x": rings})
    lines = open(path).read().splitlines()
    with open(path, "w") as f:  # drop sector 10 of the first slice
        f.write("\n".join(line for i, line in enumerate(lines) if i != 11) + "\n")
    out = tmp_path / "maps"
    paths = plots.activation_maps_from_csv(str(path), str(out))
    assert sorted(os.path.basename(p) for p in paths) == [
        "p_03_x_activation_map.png",
        "p_03_x_bullseye.png",
    ]
    ring = plots.read_predictions_csv(str(path))["p 03/x"][0]
    assert np.isnan(ring.tos_ms[10]) and ring.location is None


def test_activation_map_command(tmp_path):
    path = tmp_path / "p.csv"
    _write_predictions(path, {"p01": _subject(), "p02": _subject()[1:]})
    out = tmp_path / "maps"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    proc = subprocess.run(
        [
            sys.executable, "-m", "lma_tf.viz.plots", "activation_map",
            f"--predictions={path}", f"--output_dir={out}",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(os.listdir(out))
    assert names == [
        "p01_activation_map.png",
        "p01_bullseye.png",
        "p02_activation_map.png",
        "p02_bullseye.png",
    ]
    for n in names:
        _assert_png(out / n)
    bad = subprocess.run(
        [sys.executable, "-m", "lma_tf.viz.plots", "draw", f"--predictions={path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode != 0 and "activation_map" in bad.stderr


def test_cohort_upper_range():
    assert plots.tos_upper_range([np.array([17.0, 83.0]), None]) == 90.0
    assert plots.tos_upper_range([np.full(3, 17.0)]) == 27.0
    assert plots.tos_upper_range([np.array([np.nan, 120.0])]) == 120.0


def test_gradcam_overlay_figure(tmp_path):
    strain = np.full((N, 30), -0.1)
    cam = np.zeros((N, 30))
    cam[60:70, 5:10] = 1.0
    panel = plots.CamPanel(
        "multitask: TOS head",
        cam,
        pred_tos=np.full(N, 40.0),
        target_sector=65,
        run=list(range(120, 126)) + [0, 1],
    )
    fig = plots.gradcam_figure(strain, [panel], true_tos=np.full(N, 30.0))
    strain_ax, cam_ax = [ax for ax in fig.axes if ax.get_title()]
    (image,) = [im for im in cam_ax.images if im.get_gid() == "cam"]
    np.testing.assert_array_equal(image.get_array(), cam)
    assert image.get_extent() == [8.5, 30.5 * 17, -0.5, N - 0.5]
    target = [ln for ln in cam_ax.lines if ln.get_gid() == "target_sector"]
    assert target[0].get_ydata()[0] == 65
    runs = sorted(
        (p.get_y() + 0.5, p.get_height())
        for p in cam_ax.patches
        if p.get_gid() == "lma_run"
    )
    assert runs == [(0, 2), (120, 6)]  # the wrapped run, split at the ring end
    path = plots.save_figure(fig, str(tmp_path / "cam.png"))
    _assert_png(path)
    with pytest.raises(ValueError, match="crop"):
        plots.gradcam_figure(strain, [plots.CamPanel("x", np.zeros((128, 64)))])
