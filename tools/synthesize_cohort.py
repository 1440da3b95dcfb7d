"""Writes a deterministic synthetic cine-DENSE cohort in one of the input formats.

  python tools/synthesize_cohort.py --output_dir=/tmp/syn --num_subjects=100 \
      --seed=0 --format=npz
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from tqdm import tqdm  # noqa: E402

from lma_tf.data import synthetic_io  # noqa: E402
from lma_tf.data import synthetic  # noqa: E402

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the files go.")
_NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", 100, "Subjects to generate.")
_SEED = flags.DEFINE_integer("seed", 0, "Cohort seed (subject i depends on it and i).")
_FORMAT = flags.DEFINE_enum(
    "format", "npz", list(synthetic_io.FORMATS), "Input format to write."
)
_SCAR_MODEL = flags.DEFINE_enum(
    "scar_model",
    "passive",
    list(synthetic.SCAR_MODELS),
    "passive: scar barely moves; tethered: scar shortens weakly when its "
    "surroundings do, so late-region scar looks late.",
)
flags.mark_flag_as_required("output_dir")


def main(argv):
    del argv
    subjects = [
        synthetic.generate_subject(
            synthetic.subject_rng(_SEED.value, i),
            synthetic.subject_id_for(i),
            scar_model=_SCAR_MODEL.value,
        )
        for i in tqdm(range(_NUM_SUBJECTS.value), desc="generate", unit="subject")
    ]
    slices = [s for subject in subjects for s in subject.slices]
    with tqdm(total=len(slices), desc="write", unit="slice") as bar:
        synthetic_io.write_cohort(slices, _OUTPUT_DIR.value, _FORMAT.value, bar.update)
    num_scar = sum(subject.has_scar for subject in subjects)
    print(
        f"wrote {len(subjects)} subjects, {len(slices)} slices "
        f"({num_scar} subjects with scar) as {_FORMAT.value} to {_OUTPUT_DIR.value}"
    )


if __name__ == "__main__":
    app.run(main)
