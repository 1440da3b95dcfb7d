"""The paper's multitask network: TOS regression + LMA classification heads."""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "multitask"
    c.model.kind = "multitask"
    return c
