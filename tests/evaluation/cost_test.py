"""What a network costs: counts checked by hand, timings sane, no network no cost."""

from __future__ import annotations

import keras
import pytest
from keras import layers

from lma_tf import config as lma_config
from lma_tf import testing
from lma_tf.evaluation import cost


def _tiny_model() -> keras.Model:
    """Every counted layer type once, with shapes small enough to count by hand."""
    x_in = keras.Input((4, 5, 1))
    x = layers.Conv2D(2, 3, padding="same", use_bias=False)(x_in)  # -> (4, 5, 2)
    x = layers.SeparableConv2D(3, 3, padding="valid", use_bias=False)(x)  # (2, 3, 3)
    x = layers.Reshape((2, 9))(x)
    x = layers.Dense(4)(x)  # per row: (2, 9) -> (2, 4)
    x = layers.Flatten()(x)
    x = layers.BatchNormalization()(x)  # not counted
    out = layers.Dense(1)(x)  # 8 -> 1
    return keras.Model(x_in, out)


def test_flops_and_params_match_a_hand_count():
    model = _tiny_model()
    conv = 4 * 5 * 2 * (3 * 3 * 1)  # positions x out channels x kernel x in
    depthwise = 2 * 3 * (3 * 3) * 2  # positions x kernel x in channels
    pointwise = 2 * 3 * 2 * 3  # positions x in x out
    dense_rows = 2 * 9 * 4  # once per row
    dense_out = 8 * 1
    macs = conv + depthwise + pointwise + dense_rows + dense_out
    assert cost.count_flops(model) == 2 * macs == 2 * 584
    params = 9 * 2 + (9 * 2 + 2 * 3) + (9 * 4 + 4) + 2 * 8 + (8 + 1)
    assert cost.count_params(model) == params  # BN's moving stats not trainable


def test_nested_models_are_counted_once_each():
    inner = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
    x_in = keras.Input((3,))
    outer = keras.Model(x_in, layers.Dense(5)(inner(x_in)))
    assert cost.count_flops(outer) == 2 * (3 * 2 + 2 * 5)


def test_the_default_network_is_counted_layer_by_layer():
    """Every conv and dense layer of the multitask network, counted from the
    config: trunk (frames and ring pooled), ring blocks, two heads, the
    per-sector MLPs over the restored ring."""
    c = lma_config.base_config()
    m, sectors, frames = c.model, c.data.num_sectors, c.data.num_frames
    k = m.kernel_size**2
    macs, cin, s, f = 0, 1, sectors, frames
    for i, ch in enumerate(m.trunk_channels):
        macs += s * f * ch * k * cin  # conv before the pools
        f //= 2 if i < m.frame_pools else 1
        s //= 2 if i < m.sector_pools else 1
        cin = ch
    macs += len(m.ring_dilations) * s * f * cin * cin * 3  # 3x1 ring convs
    macs += cin * 16  # the slice summary
    (head_ch,), (units,) = m.head_channels, m.head_units
    per_sector_in = f * head_ch + frames + 16  # features, own strain, summary
    for outputs in (1, 2):  # TOS head, LMA head
        macs += s * f * head_ch * k * cin
        macs += sectors * (per_sector_in * units + units * outputs)
    assert cost.static_cost(c)["flops_per_example"] == 2 * macs


def test_a_kind_without_network_costs_nothing():
    c = lma_config.load_experiment("classical")
    out = cost.network_cost(c)
    assert out["params"] == 0
    assert out["flops_per_example"] is None
    assert out["latency_p50_ms"] is None and out["latency_runtime"] == "no network"
    assert out["train_examples_per_s"] is None


def _tiny_config():
    return testing.tiny_config(lma_config.base_config(), "", batch_size=4)


def test_training_speed_runs_the_project_train_step(monkeypatch):
    from lma_tf.training import steps

    calls = []
    build = steps.build_train_step

    def spy(*args, **kwargs):
        calls.append(args[-1])  # the global batch
        return build(*args, **kwargs)

    monkeypatch.setattr(steps, "build_train_step", spy)
    speed = cost.train_speed(_tiny_config(), steps=2, warmup=1)
    assert calls == [4]
    assert speed > 0


@pytest.mark.parametrize("onnx", [True, False])
def test_serving_latency_times_the_best_runtime(monkeypatch, onnx):
    from lma_tf.serving import runtime

    if not onnx:  # as without onnxruntime: the SavedModel is timed instead

        def missing(self, version_dir):
            raise runtime.ModelLoadError("the ONNX export needs onnxruntime")

        monkeypatch.setattr(runtime.OnnxModel, "__init__", missing)
    out = cost.serving_latency(_tiny_config(), calls=3)
    assert out["latency_p50_ms"] > 0
    expected = "onnxruntime" if onnx else "tensorflow"
    assert out["latency_runtime"].startswith(expected)
