"""The multitask network pooling sectors in its trunk (128 -> 32), restored in heads.

The first two trunk blocks halve the sector axis as well as the frame axis;
each head interpolates its features back around the ring to all 128 sectors
and reads each sector's own strain beside them (model.sector_pools).
"""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "multitask_sector_pool"
    c.model.kind = "multitask"
    c.model.sector_pools = 2
    return c
