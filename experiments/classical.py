"""Baseline: the non-learned onset-of-shortening detector (threshold fit on val)."""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "classical"
    c.model.kind = "classical"
    c.loss.weights = {"tos": 1.0}
    return c
