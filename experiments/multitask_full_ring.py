"""The multitask network at full ring resolution (the earlier default).

No sector pooling and no ring blocks: every trunk block keeps all 128
sectors, so each sector sees about 4 neighbours either side plus the
slice-wide summary. Kept to show what the wider sector view buys
(docs/model.md, "The sector view").
"""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.base_config()
    c.name = "multitask_full_ring"
    c.model.kind = "multitask"
    c.model.sector_pools = 0
    c.model.ring_dilations = ()
    return c
