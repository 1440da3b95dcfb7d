"""The multitask network at half the channels: trunk 8, 16, 32; heads 32."""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "multitask_narrow"
    c.model.kind = "multitask"
    c.model.trunk_channels = (8, 16, 32)
    c.model.head_channels = (32,)
    return c
