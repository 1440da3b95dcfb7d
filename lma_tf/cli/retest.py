"""`lma-tf retest`: the pacing decision on repeat measurements of synthetic hearts.

  lma-tf retest --experiment_dir=O/multitask --seed=0 --scar_model=tethered
      [--draws=4] [--output_dir=O/multitask/retest]

Every held-out subject of a cross-validated experiment (`lma-tf crossval`)
is measured again `--draws` times: the synthetic generator redraws only the
measurement noise, the heart (TOS, scar, labels) stays the same. Each
measurement is predicted by the fold's own model and its first pacing
target scored. Writes retest.json (top-1 / top-2 / within 5 ms of each
measurement, how often the first target stays), retest_subjects.csv and
retest.png. `--seed` and `--scar_model` must be those the cohort was
synthesized with (checked against the saved labels). Also `python -m
lma_tf.cli.retest` and `python tools/retest.py`. The work is
`lma_tf.evaluation.retest.retest`; see docs/decision.md.
"""

from __future__ import annotations

import os

from absl import flags

from lma_tf import cli

_EXPERIMENT_DIR = flags.DEFINE_string(
    "experiment_dir", "", "A cross-validated experiment, O/<experiment> (required)."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed the synthetic cohort was made with.")
_SCAR_MODEL = flags.DEFINE_enum(
    "scar_model", "passive", ["passive", "tethered"], "The cohort's scar model."
)
_DRAWS = flags.DEFINE_integer("draws", 4, "Repeat measurements of every subject.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "", "Output folder (default: EXPERIMENT_DIR/retest)."
)


def main(argv: list[str]) -> None:
    """Flags -> `retest.retest`; prints the headline figures."""
    from lma_tf.errors import UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    if not _EXPERIMENT_DIR.value:
        raise UsageError("give --experiment_dir=O/<experiment> (lma-tf crossval's)")
    if _DRAWS.value < 1:
        raise UsageError(f"--draws must be >= 1, got {_DRAWS.value}")
    from lma_tf.evaluation import retest

    out_dir = _OUTPUT_DIR.value or os.path.join(_EXPERIMENT_DIR.value, "retest")
    doc = retest.retest(
        _EXPERIMENT_DIR.value, _SEED.value, _SCAR_MODEL.value, _DRAWS.value, out_dir
    )
    t = doc["top1"]
    print(
        f"{doc['num_subjects']} subjects, {doc['num_draws']} measurements each "
        f"(draw 0 = the original)"
    )
    for p in doc["per_draw"]:
        print(
            f"  draw {p['draw']}: top-1 {p['top1']:.3f}  top-2 {p['top2']:.3f}  "
            f"within 5 ms {p['within_5ms']:.3f}"
        )
    print(
        f"top-1 {t['mean']:.3f} +- {t['sd']:.3f} "
        f"(min {t['min']:.3f}, max {t['max']:.3f})"
    )
    a = doc["averaged"]
    print(
        f"on the mean prediction of all {doc['num_draws']} measurements: top-1 "
        f"{a['top1']:.3f}  top-2 {a['top2']:.3f}  within 5 ms {a['within_5ms']:.3f}"
    )
    same = doc["first_target_same_as_draw0"]
    print(f"first target same as the original's: {same:.3f} of repeats")
    print(
        f"same first target in every measurement: {doc['num_stable']} of "
        f"{doc['num_subjects']} subjects"
    )
    for path in doc["paths"]:
        print(f"wrote {path}")


if __name__ == "__main__":
    cli.run("retest", main)
