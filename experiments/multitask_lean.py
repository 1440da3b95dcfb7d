"""The three savings together: half the channels, separable convolutions and
the sector ring pooled once in the trunk (restored in the heads)."""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "multitask_lean"
    c.model.kind = "multitask"
    c.model.trunk_channels = (8, 16, 32)
    c.model.head_channels = (32,)
    c.model.separable = True
    c.model.sector_pools = 1
    return c
