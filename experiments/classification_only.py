"""Baseline: the same CNN with the LMA head only (no TOS)."""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "classification_only"
    c.model.kind = "classification_only"
    c.loss.weights = {"lma": 1.0}
    c.train.selection_metric = "val_loss"
    return c
