"""`lma-tf crossval`: subject-level k-fold cross-validation, and paired comparisons.

lma-tf crossval --config=NAME[,NAME...] --records_dir=D --output_dir=O
    [--folds=5] [--fold=i] [--epochs=N] [--set=FIELD=VALUE ...] [--members=K]
    [--estimate_only] [--extra_train_records=E]
lma-tf crossval --compare=O/NAME1,O/NAME2 [--output_dir=R] [--resamples=2000]

Every subject of D (all splits) is dealt into folds by a hash of its id, the
same folds for every experiment; fold i's model trains on the others and is
scored on fold i. Prints the expected time first; a rerun skips finished
folds and resumes an interrupted one. `--compare` reports each metric's
difference between two cross-validated experiments with a 95% paired
bootstrap interval over subjects (docs/fidelity.md). `--members=K` also
trains K-1 more models per fold (other seeds) and scores their average as
the experiment NAME_xK, beside NAME itself (docs/decision.md).
`--extra_train_records=E` adds E's subjects to every fold's train split
(the folds, and so the scored subjects, stay those of D).
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags

from lma_tf import cli

_CONFIG = flags.DEFINE_list(
    "config", [], "Experiment names (experiments/NAME.py) or config file paths."
)
_RECORDS_DIR = flags.DEFINE_string(
    "records_dir", "", "Records to cross-validate (all splits are pooled)."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "", "Root of the folds and runs (or of a --compare report)."
)
_EXTRA_TRAIN = flags.DEFINE_string(
    "extra_train_records",
    "",
    "Records of other subjects added to every fold's train split (never val or "
    "test; the folds stay those of --records_dir), e.g. more synthetic hearts.",
)
_FOLDS = flags.DEFINE_integer("folds", 5, "Number of folds.")
_FOLD = flags.DEFINE_integer("fold", -1, "Run this fold only (default: all).")
_EPOCHS = flags.DEFINE_integer("epochs", 0, "Override train.epochs (0: keep).")
_VAL_FRACTION = flags.DEFINE_float(
    "val_fraction", 0.15, "Share of the training folds' subjects used for val."
)
_SET = flags.DEFINE_multi_string(
    "set", [], "FIELD=VALUE config override, e.g. train.batch_size=16 (repeatable)."
)
_ESTIMATE_ONLY = flags.DEFINE_bool(
    "estimate_only", False, "Print the expected time and stop."
)
_COMPARE = flags.DEFINE_list(
    "compare", [], "Cross-validated experiment dirs: the first against the others."
)
_MEMBERS = flags.DEFINE_integer(
    "members", 1, "Models per fold; > 1 also scores their average as NAME_xK."
)
_RESAMPLES = flags.DEFINE_integer("resamples", 2000, "Bootstrap resamples.")
_SEED = flags.DEFINE_integer("seed", 0, "Bootstrap seed.")


def _compare() -> None:
    from lma_tf.training import crossval

    dirs = _COMPARE.value
    out = _OUTPUT_DIR.value or os.path.join(
        os.path.dirname(os.path.normpath(dirs[0])), "comparison"
    )
    results = crossval.compare(dirs, out, _RESAMPLES.value, _SEED.value)
    print(crossval.compare_markdown(results))
    print(f"[crossval] written to {out}")


def _check_flags(argv: list[str]) -> None:
    from lma_tf.errors import UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    if _COMPARE.value:
        return
    if not _CONFIG.value:
        raise UsageError("give --config=NAME (or --compare=DIR1,DIR2)")
    if not _RECORDS_DIR.value or not _OUTPUT_DIR.value:
        raise UsageError("give --records_dir=D and --output_dir=O")
    if not -1 <= _FOLD.value < _FOLDS.value:
        raise UsageError(f"--fold={_FOLD.value} not in 0..{_FOLDS.value - 1}")
    if _EPOCHS.value < 0:
        raise UsageError("--epochs must be >= 0")
    if _MEMBERS.value < 1:
        raise UsageError("--members must be >= 1")


def main(argv: list[str]) -> None:
    """Folds -> expected time -> each experiment's folds -> summaries."""
    _check_flags(argv)
    if _COMPARE.value:
        _compare()
        return
    from lma_tf.training import crossval

    configs = [
        crossval.experiment_config(name, _EPOCHS.value, tuple(_SET.value))
        for name in _CONFIG.value
    ]
    if _MEMBERS.value > 1:
        from lma_tf.errors import UsageError
        from lma_tf.models import registry

        for c in configs:
            if not registry.get(c.model.kind).is_network:
                raise UsageError(
                    f"--members={_MEMBERS.value}: {c.name} has no network to "
                    "train with other seeds; run it with --members=1"
                )
    out, k = _OUTPUT_DIR.value, _FOLDS.value
    assignment = crossval.prepare_folds(
        _RECORDS_DIR.value, out, k, _VAL_FRACTION.value, _EXTRA_TRAIN.value
    )
    print(
        f"[crossval] {k} folds of {assignment['num_subjects']} subjects "
        f"({assignment['subjects_with_scar']} with scar, "
        f"{assignment['num_slices']} slices) under {out}/folds",
        file=sys.stderr,
    )
    if assignment.get("extra_train_subjects"):
        print(
            f"[crossval] every fold also trains on {assignment['extra_train_subjects']}"
            f" extra subjects ({assignment['extra_train_slices']} slices) of "
            f"{assignment['extra_train_source']}",
            file=sys.stderr,
        )
    folds = [_FOLD.value] if _FOLD.value >= 0 else list(range(k))
    members = _MEMBERS.value
    estimates = [crossval.estimate(c, out, folds, members) for c in configs]
    for c, e in zip(configs, estimates):
        print(f"[crossval] expected time, {e.line(c.name)}", file=sys.stderr)
    total = sum(e.seconds for e in estimates)
    print(
        f"[crossval] expected time in all: {crossval.format_seconds(total)}",
        file=sys.stderr,
    )
    if _ESTIMATE_ONLY.value:
        return
    for c in configs:
        target = crossval.ensemble_config(c, members) if members > 1 else c
        exp_dir = crossval.experiment_dir(out, target)
        for f in folds:
            if crossval.fold_done(exp_dir, f):
                print(
                    f"[crossval] {target.name} fold {f}: done, skipped", file=sys.stderr
                )
                continue
            print(f"[crossval] {target.name} fold {f}: training", file=sys.stderr)
            result = crossval.run_fold(c, out, f, members=members)
            shown = {
                k: result["metrics"].get(k)
                for k in ("tos_mae_ms", "combined_tos_mae_ms_scar", "lma_accuracy")
            }
            print(f"[crossval] {target.name} fold {f}: {json.dumps(shown)}")
        for done in (c, target) if members > 1 else (c,):
            summary = crossval.summarize(done, out, k)
            if summary is not None:
                print(crossval.summary_markdown(summary))


if __name__ == "__main__":
    cli.run("crossval", main)
