"""Domain constants shared by every stage (units and conventions: docs/data.md)."""

NUM_SECTORS = 126  # 18 AHA-like segments x 7 sectors, DENSEanalysis mid-wall ring.
MIN_FRAMES = 16
MAX_FRAMES = 128
DEFAULT_FRAME_PERIOD_MS = 17.0

TOS_FLOOR_MS = 17.0  # "not late": the first frame of the cine sequence.
LMA_TOS_EPS_MS = 1.0  # a sector is late when TOS > TOS_FLOOR_MS + this.
SCAR_THRESHOLD = 0.5  # LGE scar fraction at or above which a sector is scar.
