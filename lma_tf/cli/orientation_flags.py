"""The sector-orientation flags of `lma-tf report` and `lma-tf maps`, defined once.

Both commands place the 126 sectors on the AHA segments the same way, from
`--sector0`, `--sector_offset` and `--direction`, with the same defaults
(`lma_tf.decision.orientation.DEFAULT`: the anterior RV insertion at the
start of sector 0, sectors counter-clockwise seen from the apex). A
prediction CSV's own `orientation_*` columns win over the flags, slice by
slice. absl only at import, so `--help` needs no numpy; tests check that
these names agree with the library.
"""

from __future__ import annotations

from absl import flags

# `lma_tf.decision.orientation.LANDMARK_DEG` and `DIRECTIONS`, spelled out.
SECTOR0 = ("rv_insertion", "segment1")
DIRECTIONS = ("ccw", "cw")
# `lma_tf.decision.orientation.DEFAULT`, spelled out.
DEFAULT_SECTOR0 = "rv_insertion"
DEFAULT_DIRECTION = "ccw"


def define() -> tuple[flags.FlagHolder, flags.FlagHolder, flags.FlagHolder]:
    """Defines --sector0, --sector_offset and --direction; returns their holders.

    The caller then adopts them (`flags.adopt_module_key_flags` of this
    module) so that its `--help` lists them.
    """
    sector0 = flags.DEFINE_enum(
        "sector0",
        DEFAULT_SECTOR0,
        list(SECTOR0),
        "The landmark at --sector_offset: the anterior RV insertion (DENSEanalysis' "
        "usual reference) or the start of AHA segment 1. A CSV's orientation_* "
        "columns win over it.",
    )
    offset = flags.DEFINE_float(
        "sector_offset",
        0.0,
        "Sector coordinate of that landmark (0: sector 0 starts it).",
    )
    direction = flags.DEFINE_enum(
        "direction",
        DEFAULT_DIRECTION,
        list(DIRECTIONS),
        "Sector numbers grow counter-clockwise (AHA order) or clockwise, seen from "
        "the apex.",
    )
    return sector0, offset, direction


def orientation(sector0: str, offset: float, direction: str):
    """The `Orientation` of the flags' values.

    Raises:
      UsageError: they do not make one (a non-finite offset).
    """
    from lma_tf.decision.orientation import Orientation
    from lma_tf.errors import UsageError

    try:
        return Orientation(sector0, offset, direction)
    except ValueError as e:
        raise UsageError(str(e)) from None
