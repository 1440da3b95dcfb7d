"""`lma-tf synthesize`: a deterministic synthetic cine-DENSE cohort, written as files.

Writes the cohort in one of the input formats (docs/data.md), laid out like
real data, so that `lma-tf convert` can be run on it:

  lma-tf synthesize --output_dir=/tmp/syn --num_subjects=100 --seed=0
      --format=npz [--first_subject=0] [--scar_model=passive|tethered]
"""

from __future__ import annotations

from absl import flags

from lma_tf import cli

# The choices are spelled here so that --help needs no numpy; a test checks
# them against synthetic_io.FORMATS and synthetic.SCAR_MODELS.
FORMATS = ["npz", "npy", "mat", "mat73"]
SCAR_MODELS = ["passive", "tethered"]

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the files go.")
_NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", 100, "Subjects to generate.")
_SEED = flags.DEFINE_integer("seed", 0, "Cohort seed (subject i depends on it and i).")
_FIRST_SUBJECT = flags.DEFINE_integer(
    "first_subject",
    0,
    "Index of the first subject: 150 with --num_subjects=300 writes subjects "
    "150-449 of the seed, new hearts for a 150-subject cohort's extra training "
    "records (lma-tf crossval --extra_train_records).",
)
_FORMAT = flags.DEFINE_enum("format", "npz", FORMATS, "Input format to write.")
_SCAR_MODEL = flags.DEFINE_enum(
    "scar_model",
    "passive",
    SCAR_MODELS,
    "passive: scar barely moves; tethered: scar shortens weakly when its "
    "surroundings do, so late-region scar looks late.",
)
flags.mark_flag_as_required("output_dir")


def main(argv: list[str]) -> None:
    """Validates the flags, then `synthetic_io.synthesize_cohort`; prints a summary."""
    from lma_tf.errors import UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    if _NUM_SUBJECTS.value < 1:
        raise UsageError(f"--num_subjects must be >= 1, got {_NUM_SUBJECTS.value}")
    if _SEED.value < 0:
        raise UsageError(f"--seed must be >= 0, got {_SEED.value}")
    if _FIRST_SUBJECT.value < 0:
        raise UsageError(f"--first_subject must be >= 0, got {_FIRST_SUBJECT.value}")
    if not _OUTPUT_DIR.value:
        raise UsageError("--output_dir must not be empty")
    from lma_tf.data import synthetic_io

    summary = synthetic_io.synthesize_cohort(
        _OUTPUT_DIR.value,
        _NUM_SUBJECTS.value,
        _SEED.value,
        _FORMAT.value,
        _SCAR_MODEL.value,
        progress=True,
        first_subject=_FIRST_SUBJECT.value,
    )
    print(
        f"wrote {summary.num_subjects} subjects, {summary.num_slices} slices "
        f"({summary.num_with_scar} subjects with scar) as {_FORMAT.value} "
        f"to {_OUTPUT_DIR.value}"
    )


if __name__ == "__main__":
    cli.run("synthesize", main)
