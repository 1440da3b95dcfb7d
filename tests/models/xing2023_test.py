"""The authors' networks: structure, shapes, learning; their data handling."""

import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from lma_tf import config as lma_config
from lma_tf import constants, testing
from lma_tf.data import expansion, pipeline, sector_padding
from lma_tf.models import losses, registry


def _config(kind: str):
    c = lma_config.load_experiment(kind)
    c.model.strain_std = 0.05
    c.model.tos_mean_ms = 30.0
    return c


def _convs(model):
    return [(x.name, x.filters) for x in model.layers if isinstance(x, layers.Conv2D)]


def _trainable(model, name: str) -> int:
    return sum(int(np.prod(w.shape)) for w in model.get_layer(name).trainable_weights)


def test_multitask_network_matches_the_authors_layers():
    model = registry.get("xing2023").build(_config("xing2023"))
    convs = dict(_convs(model))
    assert [convs[f"trunk{i}_conv"] for i in range(4)] == [4, 8, 16, 16]
    assert sorted(n for n in convs if n.startswith("tos_head")) == [
        f"tos_head{i}_conv" for i in range(4)
    ]
    assert sorted(n for n in convs if n.startswith("lma_head")) == [
        f"lma_head{i}_conv" for i in range(3)
    ]
    pools = [x.name for x in model.layers if isinstance(x, layers.MaxPooling2D)]
    assert sorted(pools) == sorted(
        [f"trunk{i}_pool" for i in range(4)] + ["tos_head0_pool", "lma_head0_pool"]
    )
    assert model.get_layer("tos_mlp_flatten").output.shape[-1] == 128
    assert model.get_layer("tos_mlp_dense0").units == 128
    assert model.get_layer("lma_mlp_dense0").units == 192
    assert model.get_layer("lma_linear").units == 256
    # PyTorch's parameter count of NetStrainMat2ClsReg in this configuration
    # (BatchNorm running statistics are buffers there, not parameters).
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 128_216
    assert _trainable(model, "trunk0_conv") == 3 * 3 * 1 * 4 + 4  # with bias
    assert _trainable(model, "lma_mlp_dense0_bn") == 2 * 192


def test_regression_only_network_has_batchnorm_after_the_first_conv_only():
    model = registry.get("xing2023_regression_only").build(
        _config("xing2023_regression_only")
    )
    bns = [x.name for x in model.layers if isinstance(x, layers.BatchNormalization)]
    assert bns == ["trunk0_bn"]
    assert len(_convs(model)) == 8
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 46_136
    assert set(model.output) == {"tos"}


def test_output_shapes_and_log_probabilities():
    model = registry.get("xing2023").build(_config("xing2023"))
    x = np.random.default_rng(0).normal(0, 0.05, (3, 128, 64)).astype("float32")
    out = model(x, training=False)
    assert out["tos"].shape == (3, 128) and out["lma"].shape == (3, 128, 2)
    # log-softmax over the classes: probabilities sum to one per sector.
    np.testing.assert_allclose(
        tf.reduce_logsumexp(out["lma"], axis=-1).numpy(), 0.0, atol=1e-5
    )
    # The TOS bias starts at the train-split mean, above the 17 ms floor.
    assert float(tf.reduce_mean(out["tos"])) > constants.TOS_FLOOR_MS + 5


def test_shapes_that_cannot_be_pooled_five_times_are_refused():
    c = _config("xing2023")
    c.data.num_frames = 48
    with pytest.raises(ValueError, match="divisible by 32"):
        registry.get("xing2023").build(c)


def test_a_few_steps_reduce_the_loss():
    c = _config("xing2023")
    model = registry.get("xing2023").build(c)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.05, (8, 128, 64)).astype("float32")
    tos = rng.uniform(17, 80, (8, 128)).astype("float32")
    labels = {"tos": tos, "lma": (tos > 18).astype("float32")}
    mask = np.ones((8, 128), "float32")
    mask[:, 126:] = 0
    weights = {"tos": mask, "lma": mask}
    opt = tf.keras.optimizers.Adam(1e-2)

    def loss():
        out = model(x, training=True)
        total, _ = losses.per_example_loss(out, labels, weights, c)
        return tf.reduce_mean(total)

    first = float(loss())
    for _ in range(15):
        with tf.GradientTape() as tape:
            value = loss()
        grads = tape.gradient(value, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
    assert float(loss()) < 0.8 * first


def test_edge_padding_copies_the_last_sector_of_strain_and_labels_alike():
    c = _config("xing2023")
    x = tf.reshape(tf.range(126 * 2, dtype=tf.float32), (1, 126, 2))
    padded = sector_padding.pad(x, c.data, axis=1).numpy()
    assert padded.shape == (1, 128, 2)
    np.testing.assert_array_equal(padded[0, 126:], [x.numpy()[0, 125]] * 2)
    circular = sector_padding.pad(x, lma_config.base_config().data, axis=1).numpy()
    np.testing.assert_array_equal(circular[0, 126:], x.numpy()[0, :2])


def _arrays(num: int, scar: list[bool]):
    rng = np.random.default_rng(0)
    n = constants.NUM_SECTORS
    tos = np.full((num, n), 17.0, np.float32)
    for i in range(num):  # a late band of 10 sectors, 5 further on per slice
        tos[i, 10 + 5 * i : 20 + 5 * i] = 50.0
    scar_frac = np.zeros((num, n), np.float32)
    scar_frac[np.array(scar), 60:70] = 0.9
    return {
        "strain": rng.normal(size=(num, n, 4)).astype(np.float32),
        "tos": tos,
        "lma": (tos > 18).astype(np.float32),
        "scar": scar_frac,
        "has_tos": np.ones(num, np.float32),
        "has_scar": np.ones(num, np.float32),
        "num_frames": np.full(num, 4, np.int32),
        "subject_id": np.array([f"s{i}".encode() for i in range(num)]),
        "slice_id": np.array([f"s{i}_0".encode() for i in range(num)]),
        "slice_location": np.zeros(num, np.float32),
        "has_slice_location": np.zeros(num, np.float32),
    }


def test_expansion_plan_counts_and_mixes():
    data = _config("xing2023").data
    arrays = _arrays(5, [True, True, False, False, False])
    examples, items = expansion.plan(arrays, data, seed=0)
    shifts_scar = len(data.expand_shifts_scar)  # 19: -50..45 step 5, not 0
    shifts_free = len(data.expand_shifts_scar_free)  # 7: -32..28 step 10
    assert (shifts_scar, shifts_free) == (19, 7)
    expected = 5 + 2 * 19 + 3 * 7 + 400 + 100
    assert len(items) == expected and len(examples["tos"]) == 5 + 500
    assert sorted(items[items[:, 0] == 0, 1]) == sorted([0, *data.expand_shifts_scar])
    assert (items[5:, 1][items[5:, 0] >= 5] == 0).all()  # mixes are not rolled
    mixes = {k: v[5:] for k, v in examples.items()}
    # Scar mixes come from scar slices only: their scar band survives.
    assert (mixes["scar"][:400, 60:70] > 0.5).all()
    assert not mixes["scar"][400:].any()
    # A mix is the average of two slices; its label is LMA where both are.
    pair_means = {
        (a, b): 0.5 * (arrays["tos"][a] + arrays["tos"][b])
        for a in range(5)
        for b in range(5)
    }
    for tos in mixes["tos"][:20]:
        assert any(np.allclose(tos, m) for m in pair_means.values())
    np.testing.assert_array_equal(mixes["lma"], (mixes["tos"] == 50.0))
    again, items2 = expansion.plan(arrays, data, seed=0)
    np.testing.assert_array_equal(again["strain"], examples["strain"])
    np.testing.assert_array_equal(items, items2)


def test_expanded_training_pipeline_rolls_strain_and_labels_together(tmp_path):
    records_dir = testing.synthetic_records(str(tmp_path), 6, 3)
    c = _config("xing2023")
    c.data.records_dir = records_dir
    c.data.expand_mixup_scar = c.data.expand_mixup_scar_free = 0
    c.train.batch_size = 4
    n_train = pipeline._manifest_count(c, "train")
    count = pipeline.count_examples(c, "train")
    examples, items = expansion.expanded(c)
    scar = expansion.scar_slices(examples)
    assert count == n_train + 19 * scar.sum() + 7 * (~scar).sum()
    ds = pipeline.make_dataset(c, "train", include_metadata=True)
    feats, labels, weights = next(iter(ds))
    assert feats["strain"].shape == (4, 128, 64)
    for i in range(4):
        slice_id = feats["slice_id"][i].numpy()
        j = int(np.flatnonzero(examples["slice_id"] == slice_id)[0])
        tos = labels["tos"][i, :126].numpy()
        # Find the roll that maps the original onto this example: the strain
        # must need the same one.
        shift = [
            s for s in range(126) if np.array_equal(np.roll(examples["tos"][j], s), tos)
        ]
        strain = feats["strain"][i, :126].numpy()
        assert any(
            np.allclose(np.roll(examples["strain"][j], s, axis=0), strain)
            for s in shift
        )
        # Edge padding: the two extra sectors repeat sector 125.
        np.testing.assert_array_equal(labels["tos"][i, 126:], [tos[125]] * 2)
        assert weights["tos"][i, 126:].numpy().sum() == 0
