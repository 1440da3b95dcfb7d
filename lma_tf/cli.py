"""Small helpers shared by the absl entry points."""

from __future__ import annotations


def quiet_logs() -> None:
    """WARNING-level absl/TensorFlow logs unless --verbosity was given.

    TensorFlow's checkpoint and SavedModel code logs at INFO on every save,
    which buries the progress bars and results people came for.
    """
    from absl import flags, logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
