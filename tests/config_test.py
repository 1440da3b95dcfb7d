"""Experiments: found by name or path, validated through the model registry."""

from __future__ import annotations

import os

import pytest

from lma_tf import config as lma_config
from lma_tf.errors import UsageError
from lma_tf.models import registry


def test_every_named_experiment_loads_and_validates():
    names = lma_config.experiment_names()
    # Every model kind has at least one experiment of its own kind.
    kinds = {lma_config.load_experiment(n).model.kind for n in names}
    assert set(registry.names()) <= kinds
    for name in names:
        cfg = lma_config.load_experiment(name)
        assert cfg.name == name, "an experiment's name is its file's stem"
        assert set(cfg.loss.weights.keys()) <= set(registry.get(cfg.model.kind).heads)


def test_name_and_path_give_the_same_config():
    path = os.path.join(lma_config.experiments_dir(), "isbi2021.py")
    assert lma_config.load_experiment(path) == lma_config.load_experiment("isbi2021")


def test_unknown_experiment_names_the_known_ones_and_the_close_match():
    with pytest.raises(UsageError, match="did you mean 'multitask'") as e:
        lma_config.experiment_path("multitsk")
    assert "regression_only" in str(e.value)
    with pytest.raises(UsageError, match="not found"):
        lma_config.experiment_path("/nowhere/x.py")


def test_a_variant_of_an_existing_kind_is_one_file(tmp_path):
    variant = tmp_path / "multitask_wide.py"
    variant.write_text(
        "from lma_tf import config as lma_config\n"
        "def get_config():\n"
        "    c = lma_config.load_experiment('multitask')\n"
        "    c.name = 'multitask_wide'\n"
        "    c.model.trunk_channels = (32, 64, 128)\n"
        "    return c\n"
    )
    cfg = lma_config.load_experiment(str(variant))
    assert cfg.model.kind == "multitask" and cfg.model.trunk_channels == (32, 64, 128)


def test_registry_drives_validation():
    bad = lma_config.base_config()
    bad.model.kind = "nope"
    with pytest.raises(ValueError, match="known kinds: multitask"):
        lma_config.validate_config(bad)
    c = lma_config.load_experiment("regression_only")
    c.train.selection_metric = "val_lma_accuracy"
    with pytest.raises(ValueError, match="no LMA head"):
        lma_config.validate_config(c)
    c = lma_config.load_experiment("multitask")
    c.data.num_frames = 60  # not divisible by 2**3 frame pools
    with pytest.raises(ValueError, match="divisible"):
        lma_config.validate_config(c)
    c.model.kind = "isbi2021"  # no frame pooling: any frame count
    lma_config.validate_config(c)


def test_registry_entries_are_consistent():
    for name in registry.names():
        kind = registry.get(name)
        assert kind.exportable == (kind.is_network and "tos" in kind.heads)
        assert set(kind.explain_layers) <= set(kind.heads)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("multitask"))
