"""Two savings on top of the default's pooled ring: half the channels and
separable convolutions."""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "multitask_lean"
    c.model.kind = "multitask"
    c.model.trunk_channels = (8, 16, 32)
    c.model.head_channels = (32,)
    c.model.separable = True
    return c
