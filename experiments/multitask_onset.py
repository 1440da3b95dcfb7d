"""The default multitask network with the onset TOS output: each sector's TOS
is the expected time over a full-resolution per-frame onset map instead of
one linear unit on time-pooled features (docs/model.md, "TOS output")."""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "multitask_onset"
    c.model.kind = "multitask"
    c.model.tos_output = "onset"
    return c
