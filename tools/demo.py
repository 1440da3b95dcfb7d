"""`make demo`: the main job end to end on the embedded synthetic cohort."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "demo_out", "Where everything goes.")
_NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", 120, "Synthetic subjects.")
_SEED = flags.DEFINE_integer("seed", 0, "Cohort and split seed.")
_EXPERIMENTS = flags.DEFINE_list(
    "experiments", ["multitask", "classical"], "experiments/NAME.py to train."
)
_SCAR_MODEL = flags.DEFINE_enum(
    "scar_model", "passive", ["passive", "tethered"], "Synthetic scar behaviour."
)
_EPOCHS = flags.DEFINE_integer("epochs", 40, "Training epochs of each experiment.")


def main(argv):
    del argv
    from lma_tf import demo
    from lma_tf.cli import quiet_logs

    quiet_logs()

    demo.run_demo(
        _OUTPUT_DIR.value,
        _NUM_SUBJECTS.value,
        _SEED.value,
        _EPOCHS.value,
        tuple(_EXPERIMENTS.value),
        _SCAR_MODEL.value,
    )


if __name__ == "__main__":
    app.run(main)
