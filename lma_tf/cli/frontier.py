"""`lma-tf frontier`: accuracy per cost of candidate networks; picks the default.

lma-tf frontier --records_dir=D [--experiments=multitask,multitask_narrow,...]
    [--runs_dir=R] [--output_dir=O] [--epochs=N]

Trains each experiment on D's train split (selected on val; a finished run
in R/<experiment> is reused), evaluates it on the val split, measures its
parameters, FLOPs per example, serving latency and training examples/s, and
writes O/frontier.md, O/frontier.json and O/frontier.png. The pick is the
cheapest network within 0.1 ms combined TOS MAE and 0.005 LMA accuracy of the
best ones. The test split is never used.
"""

from __future__ import annotations

import sys

from absl import flags

from lma_tf import cli

DEFAULT_EXPERIMENTS = (
    "multitask",
    "multitask_narrow",
    "multitask_separable",
    "multitask_full_ring",
    "multitask_lean",
)
_RECORDS_DIR = flags.DEFINE_string("records_dir", "", "Records folder (required).")
_EXPERIMENTS = flags.DEFINE_list(
    "experiments", list(DEFAULT_EXPERIMENTS), "Experiments (names or files) to compare."
)
_RUNS_DIR = flags.DEFINE_string(
    "runs_dir", "trained_networks/frontier", "Where each experiment's run goes."
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "results/frontier", "Output folder.")
_EPOCHS = flags.DEFINE_integer(
    "epochs", 0, "Epochs for every experiment (0: each experiment's own)."
)
_MAE_TOL = flags.DEFINE_float("mae_tol_ms", 0.1, "Combined TOS MAE tolerance (ms).")
_ACC_TOL = flags.DEFINE_float("acc_tol", 0.005, "LMA accuracy tolerance.")


def main(argv: list[str]) -> None:
    """Flags -> `frontier_run.run_frontier`; prints the table and the pick."""
    from lma_tf.errors import UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    if not _RECORDS_DIR.value:
        raise UsageError("give --records_dir=D (a folder written by lma-tf convert)")
    if _EPOCHS.value < 0:
        raise UsageError("--epochs must be >= 0")
    from lma_tf import config as lma_config

    for name in _EXPERIMENTS.value:
        lma_config.experiment_path(name)  # UsageError naming the known ones
    from lma_tf.evaluation import frontier, frontier_run

    out = frontier_run.run_frontier(
        _EXPERIMENTS.value,
        _RECORDS_DIR.value,
        _OUTPUT_DIR.value,
        _RUNS_DIR.value,
        epochs=_EPOCHS.value or None,
        mae_tol_ms=_MAE_TOL.value,
        acc_tol=_ACC_TOL.value,
        log=lambda line: print(line, file=sys.stderr),
    )
    print(frontier.markdown(out["rows"], out["choice"]), end="")


if __name__ == "__main__":
    cli.run("frontier", main)
