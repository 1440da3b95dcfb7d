"""tf.data pipeline: element spec, preprocessing, augmentation, sharding."""

import numpy as np
import pytest
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf import testing
from lma_tf.data import pipeline, preprocess, records
from lma_tf.rules import lma_labels


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    originals = testing.write_cohort_npz(str(root / "in"), 16, 3, seed=7)
    records.make_records(
        [str(root / "in")],
        records.RecordsOptions(
            output_dir=str(root / "rec"), num_shards=4, progress=False
        ),
    )
    return str(root / "rec"), {s.key: s for s in originals}


def _config(rec_dir, **data):
    c = lma_config.base_config()
    c.data.records_dir = rec_dir
    c.train.batch_size = 8
    for k, v in data.items():
        c.data[k] = v
    return c


def test_element_spec(records_dir):
    ds = pipeline.make_dataset(_config(records_dir[0]), "train")
    feats, labels, weights = ds.element_spec
    assert feats["strain"].shape.as_list() == [8, 128, 64]
    assert feats["sector_mask"].shape.as_list() == [8, 128]
    for d in (labels, weights):
        assert set(d) == {"tos", "lma"}
        assert d["tos"].shape.as_list() == [8, 128] and d["tos"].dtype == tf.float32
    val = pipeline.make_dataset(_config(records_dir[0]), "val")
    assert val.element_spec[0]["strain"].shape.as_list() == [None, 128, 64]


def test_eval_elements_match_the_source_slices(records_dir):
    rec_dir, originals = records_dir
    c = _config(rec_dir, num_frames=48, drop_last_frames=5)
    seen = 0
    for split in ("train", "val", "test"):
        ds = pipeline.make_dataset(c, split, training=False, include_metadata=True)
        for feats, labels, weights in ds:
            for i in range(feats["strain"].shape[0]):
                key = (
                    feats["subject_id"][i].numpy().decode(),
                    feats["slice_id"][i].numpy().decode(),
                )
                o = originals[key]
                keep = max(o.num_frames - 5, 16)
                want = np.zeros((126, 48), np.float32)
                n = min(keep, 48)
                want[:, :n] = o.strain_matrix[:, :n]
                got = feats["strain"][i].numpy()
                np.testing.assert_array_equal(got[:126], want)
                # Circular sector padding: sectors 126, 127 repeat 0, 1.
                np.testing.assert_array_equal(got[126:], want[:2])
                np.testing.assert_array_equal(labels["tos"][i, :126], o.tos_ms)
                np.testing.assert_array_equal(
                    labels["lma"][i, :126], lma_labels(o.tos_ms, o.scar_fraction)
                )
                w = weights["tos"][i].numpy()
                assert w[:126].min() == 1.0 and w[126:].max() == 0.0
                seen += 1
    assert seen == len(originals)


def test_circular_shift_keeps_strain_and_labels_aligned():
    # Encode each sector's identity in strain, TOS, LMA and scar alike.
    rng = np.random.default_rng(0)
    for trial in range(5):
        b, n, t = 6, 126, 10
        code = rng.permutation(n).astype(np.float32)
        strain = np.tile(code[None, :, None], (b, 1, t)) + rng.normal(size=(b, 1, t))
        batch = {
            "strain": tf.constant(strain, tf.float32),
            "tos": tf.constant(np.tile(code, (b, 1)) * 2.0, tf.float32),
            "lma": tf.constant(np.tile(code % 2, (b, 1)), tf.float32),
            "scar": tf.constant(np.tile(code / n, (b, 1)), tf.float32),
        }
        out = pipeline.circular_shift(batch, seed=tf.constant([trial, 1]))
        s = out["strain"].numpy() - (strain - np.tile(code[None, :, None], (b, 1, t)))
        s0 = np.round(s[:, :, 0])
        np.testing.assert_allclose(out["tos"].numpy(), 2.0 * s0, atol=1e-4)
        np.testing.assert_allclose(out["lma"].numpy(), s0 % 2, atol=1e-4)
        np.testing.assert_allclose(out["scar"].numpy(), s0 / n, atol=1e-4)
        # It really is a roll of the ring, by a different amount per example.
        shifts = [int(np.argmax(s0[i] == code[0])) for i in range(b)]
        for i, k in enumerate(shifts):
            np.testing.assert_allclose(s0[i], np.roll(code, k), atol=1e-4)
        assert len(set(shifts)) > 1


def test_mirror_reverses_the_ring_with_its_labels():
    rng = np.random.default_rng(3)
    b, n, t = 16, 126, 6
    code = rng.permutation(n).astype(np.float32)
    strain = np.tile(code[None, :, None], (b, 1, t))
    batch = {
        "strain": tf.constant(strain, tf.float32),
        "tos": tf.constant(np.tile(code, (b, 1)) * 2.0, tf.float32),
        "lma": tf.constant(np.tile(code % 2, (b, 1)), tf.float32),
        "scar": tf.constant(np.tile(code / n, (b, 1)), tf.float32),
    }
    out = pipeline.mirror(batch, seed=tf.constant([4, 2]))
    s0 = out["strain"].numpy()[:, :, 0]
    flipped = [bool(np.array_equal(row, code[::-1])) for row in s0]
    for i, row in enumerate(s0):
        # Each example is either untouched or exactly reversed, never mixed.
        assert flipped[i] or np.array_equal(row, code)
    np.testing.assert_allclose(out["tos"].numpy(), 2.0 * s0)
    np.testing.assert_allclose(out["lma"].numpy(), s0 % 2)
    np.testing.assert_allclose(out["scar"].numpy(), s0 / n, rtol=1e-6)
    assert 0 < sum(flipped) < b


def test_mirroring_is_in_the_training_stream_only_when_asked(records_dir):
    def first(mirror):
        c = _config(records_dir[0], augment_shift=False, augment_mirror=mirror)
        ds = pipeline.make_dataset(c, "train", include_metadata=True)
        feats, labels, _ = next(iter(ds))
        return feats["strain"].numpy()[:, :126], feats["slice_id"].numpy()

    plain, ids = first(False)
    mirrored, ids_m = first(True)
    np.testing.assert_array_equal(ids, ids_m)
    same = [np.array_equal(a, b) for a, b in zip(plain, mirrored)]
    rev = [np.array_equal(a[::-1], b) for a, b in zip(plain, mirrored)]
    assert all(s or r for s, r in zip(same, rev))
    assert any(rev) and not all(rev)


def test_training_pipeline_is_deterministic_for_a_seed(records_dir):
    c = _config(records_dir[0], mixup_alpha=0.4, noise_std=0.01)

    def first_batches(seed, epoch=0, skip=0):
        c.seed = seed
        ds = pipeline.make_dataset(c, "train", epoch=epoch, skip_batches=skip)
        return [x[0]["strain"].numpy() for x in ds.take(3)]

    a, b = first_batches(0), first_batches(0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first_batches(1)[0], a[0])
    assert not np.array_equal(first_batches(0, epoch=1)[0], a[0])
    # Skipping resumes the very same stream (a resumed epoch).
    np.testing.assert_array_equal(first_batches(0, skip=1)[0], a[1])


def test_noise_leaves_the_zero_padding_alone(records_dir):
    def batches(noise_std):
        c = _config(records_dir[0], noise_std=noise_std, augment_shift=False)
        ds = pipeline.make_dataset(c, "train", include_metadata=True)
        return [f for f, _, _ in ds.take(2)]

    checked = 0
    for clean, noisy in zip(batches(0.0), batches(0.05)):
        # Same seed, same order: only the noise differs.
        np.testing.assert_array_equal(noisy["slice_id"], clean["slice_id"])
        frames = noisy["num_frames"].numpy()
        for i, (x, x0) in enumerate(zip(noisy["strain"].numpy(), clean["strain"])):
            x0 = x0.numpy()
            real = int(frames[i])
            assert real < x.shape[-1]  # the fixture's slices are shorter than 64
            assert not x[:, real:].any()  # the padding stays exactly zero
            assert not x0[:, real:].any()
            noise = x[:, :real] - x0[:, :real]
            assert np.count_nonzero(noise) > 0.99 * noise.size  # real frames noisy
            assert 0.03 < noise.std() < 0.07
            checked += 1
    assert checked == 16


def _mixup_batch(b: int = 8, t: int = 3) -> dict:
    """Strain row i is the i-th unit vector on every frame, so an output's
    strain holds its mixing weights: lam on itself, 1 - lam on its partner."""
    rng = np.random.default_rng(0)
    strain = np.repeat(np.eye(b, dtype=np.float32)[:, :, None], t, axis=2)
    return {
        "strain": tf.constant(strain),
        "tos": tf.constant(rng.uniform(17.0, 140.0, (b, b)), tf.float32),
        "lma": tf.constant(rng.random((b, b)) < 0.5, tf.float32),
        "scar": tf.constant(rng.random((b, b)), tf.float32),
        "has_tos": tf.constant([1, 1, 1, 1, 1, 1, 1, 0], tf.float32),
    }


def _check_mixup(batch: dict, out: dict) -> int:
    """Asserts out[i] = lam_i x[i] + (1 - lam_i) x[p(i)]; returns how many mix.

    lam_i and the partner p(i) are read from the strain (see `_mixup_batch`).
    """
    x = {k: v.numpy() for k, v in batch.items()}
    y = {k: v.numpy() for k, v in out.items()}
    b = x["strain"].shape[0]
    weights = y["strain"][:, :, 0]  # (b, b): weight of input j in output i
    np.testing.assert_allclose(y["strain"], np.repeat(weights[:, :, None], 3, 2))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    assert weights.min() >= 0.0
    partners, mixed = [], 0
    for i in range(b):
        others = [j for j in range(b) if j != i]
        j = others[int(np.argmax(weights[i, others]))]
        if weights[i, j] < 1e-6:
            j = i  # mixed with itself: unchanged
        partners.append(j)
        lam = weights[i, i] if j != i else 1.0
        assert np.count_nonzero(weights[i] > 1e-6) <= 2
        for key in ("tos", "lma", "scar"):
            want = lam * x[key][i] + (1.0 - lam) * x[key][j]
            np.testing.assert_allclose(y[key][i], want, rtol=1e-5, atol=1e-4)
        assert y["has_tos"][i] == x["has_tos"][i] * x["has_tos"][j]
        if j != i and 1e-3 < lam < 1.0 - 1e-3:
            mixed += 1
            for key in ("tos", "scar"):  # differs from both of its inputs
                assert not np.allclose(y[key][i], x[key][i], atol=1e-3)
                assert not np.allclose(y[key][i], x[key][j], atol=1e-3)
    assert sorted(partners) == list(range(b))  # partners are a permutation
    return mixed


def test_mixup_mixes_inputs_and_targets_convexly():
    batch = _mixup_batch()
    out = pipeline.mixup(batch, alpha=0.4, seed=tf.constant([3, 4], tf.int64))
    assert _check_mixup(batch, out) >= 4
    lams = np.diag(out["strain"].numpy()[:, :, 0])
    assert len(np.unique(np.round(lams, 4))) > 2  # one lambda per example
    # The unlabelled example zeroes the label weight of every mix it is in.
    assert out["has_tos"].numpy().sum() < 7
    # Without a seed: a fresh draw, the same rule.
    tf.random.set_seed(3)
    assert _check_mixup(batch, pipeline.mixup(batch, alpha=0.4)) >= 1


def test_input_context_shards_are_disjoint_and_complete(records_dir):
    c = _config(records_dir[0])
    ids = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pid, num_replicas_in_sync=2
        )
        ds = pipeline.make_dataset(
            c, "train", ctx, training=False, include_metadata=True
        )
        assert ds.element_spec[0]["strain"].shape.as_list()[0] is None
        ids.append([s.decode() for f, _, _ in ds for s in f["slice_id"].numpy()])
        assert max(len(f["slice_id"]) for f, _, _ in ds) <= 4  # per-replica batch
    assert not set(ids[0]) & set(ids[1])
    assert len(ids[0]) + len(ids[1]) == pipeline.count_examples(c, "train")


def test_resample_frames_to_the_17ms_grid():
    strain = tf.constant(
        np.linspace(0, 1, 20, dtype=np.float32)[None, :].repeat(126, 0)
    )
    same = preprocess.resample_frames(strain, 17.0, 17.0)
    np.testing.assert_array_equal(same.numpy(), strain.numpy())
    doubled = preprocess.resample_frames(strain, 34.0, 17.0).numpy()
    assert doubled.shape == (126, 40)
    np.testing.assert_allclose(
        doubled[:, ::2][:, :19], strain.numpy()[:, :19], atol=1e-6
    )
    np.testing.assert_allclose(
        doubled[0, 1], (strain[0, 0] + strain[0, 1]) / 2, atol=1e-6
    )


def test_fit_frames_and_pad_sectors():
    x = tf.reshape(tf.range(126 * 70, dtype=tf.float32), [126, 70])
    assert preprocess.fit_frames(x, 64).shape == (126, 64)
    y = preprocess.fit_frames(x[:, :20], 64).numpy()
    assert y.shape == (126, 64) and not y[:, 20:].any()
    z = preprocess.pad_sectors(x, 130, axis=0).numpy()
    np.testing.assert_array_equal(z[126:], x.numpy()[:4])
    with pytest.raises(ValueError):
        preprocess.pad_sectors(x, 100, axis=0)


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        pipeline.make_dataset(_config(str(tmp_path)), "train")
