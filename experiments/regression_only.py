"""Baseline: the same CNN with the TOS head only (LMA = TOS > 17 ms + eps)."""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "regression_only"
    c.model.kind = "regression_only"
    c.loss.weights = {"tos": 1.0}
    return c
