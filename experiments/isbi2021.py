"""Baseline: the ISBI 2021 network (3 convs of 8 channels, flatten, dense)."""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "isbi2021"
    c.model.kind = "isbi2021"
    c.loss.weights = {"tos": 1.0}
    c.data.mixup_alpha = 0.0
    # Its dense layer maps the whole ring at once: not a rotation-equivariant
    # network, so rotated views would not average like-with-like.
    c.model.test_time_shifts = 1
    c.model.test_time_mirror = False
    return c
