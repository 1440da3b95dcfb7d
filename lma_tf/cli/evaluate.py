"""`lma-tf evaluate`: the paper's metrics on a split, or a comparison of runs.

lma-tf evaluate --model_dir=M [--records_dir=D] --split=test --output_dir=R
lma-tf evaluate --compare=M1,M2,M3 [--records_dir=D] --output_dir=R
lma-tf evaluate --compare=CV/NAME1,CV/NAME2 --output_dir=R

With cross-validated experiments (`lma-tf crossval` output directories),
--compare reports each metric's paired difference with a 95% bootstrap
interval over subjects, as `lma-tf crossval --compare` does.
"""

from __future__ import annotations

import json

from absl import flags

from lma_tf import cli

_MODEL_DIR = flags.DEFINE_string("model_dir", "", "A trained model directory.")
_COMPARE = flags.DEFINE_list("compare", [], "Several model directories to compare.")
_RECORDS_DIR = flags.DEFINE_string(
    "records_dir", "", "Records (default: the ones the run was trained on)."
)
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split to score.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "", "Where results go (default: results/<experiment>)."
)
_NUM_FIGURES = flags.DEFINE_integer("num_figures", 6, "Strain/TOS figures to draw.")
_COST = flags.DEFINE_bool(
    "cost",
    True,
    "--compare: also measure each network's cost (parameters, FLOPs, latency, "
    "training examples/s); --nocost skips it.",
)
_MC_SAMPLES = flags.DEFINE_integer(
    "mc_samples",
    20,
    "MC-dropout passes behind the 90% TOS intervals (0: a constant-width "
    "interval from the validation residuals).",
)


def _crossval_dirs(dirs: list[str]) -> bool:
    """True when every dir is a cross-validated experiment, False when none is.

    Raises:
      UsageError: a mix of both.
    """
    from lma_tf.errors import UsageError
    from lma_tf.training import crossval

    kinds = [crossval.is_crossval_dir(d) for d in dirs]
    if any(kinds) and not all(kinds):
        cv = [d for d, k in zip(dirs, kinds) if k]
        raise UsageError(
            f"--compare mixes cross-validation outputs ({', '.join(cv)}) with "
            "model directories: compare like with like"
        )
    return all(kinds)


def main(argv: list[str]) -> None:
    """Flags -> `evaluate.evaluate` or `evaluate.compare`; prints the result."""
    from lma_tf.errors import UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    if not _MODEL_DIR.value and not _COMPARE.value:
        raise UsageError("give --model_dir=M (one run) or --compare=M1,M2 (several)")
    from lma_tf.evaluation import evaluate, metrics
    from lma_tf.training import run_dir

    if _COMPARE.value and _crossval_dirs(_COMPARE.value):
        from lma_tf.training import crossval

        out = _OUTPUT_DIR.value or "results/comparison"
        print(crossval.compare_markdown(crossval.compare(_COMPARE.value, out)))
        return
    if _COMPARE.value:
        out = _OUTPUT_DIR.value or "results/comparison"
        results = evaluate.compare(
            _COMPARE.value, out, _RECORDS_DIR.value, _SPLIT.value, cost=_COST.value
        )
        print(metrics.comparison_table(results))
        return
    out = _OUTPUT_DIR.value
    if not out:
        out = f"results/{run_dir.load_config(_MODEL_DIR.value).name}"
    if _MC_SAMPLES.value < 0:
        raise UsageError("--mc_samples must be >= 0")
    result = evaluate.evaluate(
        _MODEL_DIR.value,
        out,
        _RECORDS_DIR.value,
        _SPLIT.value,
        _NUM_FIGURES.value,
        mc_samples=_MC_SAMPLES.value,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    cli.run("evaluate", main)
