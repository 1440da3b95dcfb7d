"""`lma-tf maps`: 3-D activation maps and AHA bullseyes from a prediction CSV.

  lma-tf maps --predictions=P.csv --output_dir=A [--tos_column=tos_ms]
      [--tos_max_ms=150] [--base_at=low] [--sector0=rv_insertion|segment1]
      [--sector_offset=0] [--direction=ccw|cw]

One `{subject}_activation_map.png` and `{subject}_bullseye.png` per subject
of the CSV (written by `lma-tf predict`). Sectors go to AHA segments as in
`lma-tf report`: by the CSV's orientation columns where present, else by
the orientation flags (same flags, same default). Also `python -m lma_tf.cli.maps`
and `python tools/maps.py`. The work is
`lma_tf.viz.activation_map.activation_maps_from_csv`; the figures are
described in docs/figures.md.
"""

from __future__ import annotations

from absl import flags

from lma_tf.cli import orientation_flags

# `lma_tf.serving.prediction_csv.TOS_COLUMNS`, spelled out so that `--help`
# needs no numpy (tests/viz/activation_map_test.py checks they agree).
TOS_COLUMNS = ("combined_tos_ms", "tos_ms")

_PREDICTIONS = flags.DEFINE_string(
    "predictions", None, "Prediction CSV (`lma-tf predict`)."
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "activation_maps", "Where the PNGs go.")
_TOS_COLUMN = flags.DEFINE_enum(
    "tos_column", "combined_tos_ms", TOS_COLUMNS, "TOS to colour."
)
_TOS_MAX_MS = flags.DEFINE_float(
    "tos_max_ms", 0.0, "Top of the TOS colour scale (0: the cohort's maximum)."
)
_BASE_AT = flags.DEFINE_enum(
    "base_at", "high", ["high", "low"], "Which slice_location end is the base."
)
_SECTOR0, _SECTOR_OFFSET, _DIRECTION = orientation_flags.define()
flags.adopt_module_key_flags(orientation_flags)


def main(argv: list[str]) -> None:
    """Validates the flags and draws every subject's map and bullseye."""
    from lma_tf.errors import UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]} (flags only)")
    if not _PREDICTIONS.value:
        raise UsageError("--predictions is required")
    if _TOS_MAX_MS.value < 0:
        raise UsageError(f"--tos_max_ms must be >= 0, got {_TOS_MAX_MS.value}")

    orientation = orientation_flags.orientation(
        _SECTOR0.value, _SECTOR_OFFSET.value, _DIRECTION.value
    )
    from lma_tf.serving import prediction_csv
    from lma_tf.viz import activation_map

    try:
        paths = activation_map.activation_maps_from_csv(
            _PREDICTIONS.value,
            _OUTPUT_DIR.value,
            _TOS_COLUMN.value,
            _TOS_MAX_MS.value,
            _BASE_AT.value == "high",
            orientation,
        )
    except prediction_csv.PredictionCsvError as e:
        raise UsageError(str(e)) from None
    print(
        f"[maps] orientation (slices without orientation columns): "
        f"{orientation.describe()}"
    )
    print(f"[maps] wrote {len(paths)} figures to {_OUTPUT_DIR.value}")


if __name__ == "__main__":
    from lma_tf import cli

    cli.run("maps", main)
