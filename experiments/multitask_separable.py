"""The multitask network with depthwise-separable convolutions (model.separable)."""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "multitask_separable"
    c.model.kind = "multitask"
    c.model.separable = True
    return c
