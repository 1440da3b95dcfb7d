"""`lma-tf demo` (`make demo`): the whole pipeline on the embedded synthetic cohort.

lma-tf demo [--output_dir=demo_out] [--num_subjects=120] [--epochs=40]
    [--experiments=multitask,classical] [--scar_model=passive|tethered]
"""

from __future__ import annotations

from absl import flags

from lma_tf import cli

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "demo_out", "Where everything goes.")
_NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", 120, "Synthetic subjects.")
_SEED = flags.DEFINE_integer("seed", 0, "Cohort and split seed.")
_EXPERIMENTS = flags.DEFINE_list(
    "experiments", ["multitask", "classical"], "Experiments (names) to train."
)
_SCAR_MODEL = flags.DEFINE_enum(
    "scar_model", "passive", ["passive", "tethered"], "Synthetic scar behaviour."
)
_EPOCHS = flags.DEFINE_integer("epochs", 40, "Training epochs of each experiment.")


def main(argv: list[str]) -> None:
    """Checks every flag first (no cohort is built for a typo), then runs."""
    from lma_tf import config as lma_config
    from lma_tf.errors import UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    if _NUM_SUBJECTS.value < 8:
        raise UsageError("--num_subjects must be >= 8 (train, val and test subjects)")
    if _EPOCHS.value < 1:
        raise UsageError("--epochs must be >= 1")
    for name in _EXPERIMENTS.value:
        lma_config.experiment_path(name)  # UsageError naming the known ones
    from lma_tf import demo

    demo.run_demo(
        _OUTPUT_DIR.value,
        _NUM_SUBJECTS.value,
        _SEED.value,
        _EPOCHS.value,
        tuple(_EXPERIMENTS.value),
        _SCAR_MODEL.value,
    )


if __name__ == "__main__":
    cli.run("demo", main)
