"""`lma-tf train`: train one experiment under a tf.distribute strategy.

lma-tf train --config=multitask --records_dir=D [--model_dir=M] [--overwrite]
    [--strategy=default|mirrored|multi_worker|tpu] [--config.train.epochs=N ...]

`--config` is an experiment name (a file of experiments/) or a config file
path; `--config.FIELD=VALUE` overrides a field. Rerunning the same command
resumes from the run's backup; a model dir holding a run of another config
is refused unless `--overwrite` (docs/model.md, "Training").
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags
from ml_collections import config_flags

from lma_tf import cli
from lma_tf import config as lma_config
from lma_tf.training.strategy import STRATEGIES

DEFAULT_EXPERIMENT = "multitask"
DEFAULT_RUNS_DIR = "trained_networks"  # as in the authors' code

# `--help` prints this docstring: list the `--config.*` fields absl cannot.
__doc__ = f"{__doc__}\n{lma_config.fields_help()}"


class ExperimentParser(flags.ArgumentParser):
    """Parses `--config=NAME` (experiments/NAME.py) or `--config=PATH`.

    Resolves the name, then hands the file to ml_collections' own config
    file parser. absl turns an error raised while parsing flags into a
    "FATAL Flags parsing error" block, so an unknown name is kept in `error`
    instead: the default experiment is parsed in its place (its `--config.*`
    overrides still apply) and `main` reports the error as one line (exit 2).
    """

    def __init__(self, file_parser: flags.ArgumentParser, default_path: str) -> None:
        self.file_parser = file_parser
        self.default_path = default_path
        self.error: Exception | None = None

    def parse(self, argument: str):
        from lma_tf.errors import UsageError

        try:
            path = lma_config.experiment_path(argument)
            self.error = None
        except UsageError as e:
            path, self.error = self.default_path, e
        return self.file_parser.parse(path)

    def flag_type(self) -> str:
        return self.file_parser.flag_type()


def _define_config_flag() -> tuple[flags.FlagHolder, ExperimentParser]:
    """ml_collections' `--config` file flag, taking experiment names as well."""
    default_path = lma_config.experiment_path(DEFAULT_EXPERIMENT)
    holder = config_flags.DEFINE_config_file(
        "config",
        default_path,
        "Experiment: a name (one of "
        f"{', '.join(lma_config.experiment_names())}) or a config file path. "
        "Override fields with --config.FIELD=VALUE.",
        lock_config=False,
    )
    flag = flags.FLAGS[holder.name]
    flag.parser = ExperimentParser(flag.parser, default_path)
    return holder, flag.parser


try:
    _CONFIG, _CONFIG_PARSER = _define_config_flag()
except (AttributeError, KeyError) as _e:
    # ml_collections reads `--config.FIELD=...` overrides while the flag is
    # defined: a FIELD that does not exist fails here, at import.
    cli.fail("train", cli.override_error(_e), 2)
_RECORDS_DIR = flags.DEFINE_string(
    "records_dir", "", "Records directory (overrides config.data.records_dir)."
)
_MODEL_DIR = flags.DEFINE_string(
    "model_dir",
    "",
    f"Where checkpoints and logs go (default: {DEFAULT_RUNS_DIR}/<experiment>).",
)
_STRATEGY = flags.DEFINE_enum(
    "strategy", "default", list(STRATEGIES), "tf.distribute strategy."
)
_NUM_CPU_REPLICAS = flags.DEFINE_integer(
    "num_cpu_replicas",
    0,
    "--strategy=mirrored without GPUs: split the CPU into N devices.",
)
_TPU = flags.DEFINE_string("tpu", "", "TPU name or address for --strategy=tpu.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite",
    False,
    "Remove the run already in --model_dir and start over (without it, only "
    "a run of the same config is resumed).",
)


def _check_flags(argv: list[str]) -> None:
    """Raises UsageError on flags that cannot work together."""
    from lma_tf.errors import UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    if _CONFIG_PARSER.error is not None:
        raise _CONFIG_PARSER.error
    if _NUM_CPU_REPLICAS.value < 0:
        raise UsageError("--num_cpu_replicas must be >= 0")
    if _NUM_CPU_REPLICAS.value and _STRATEGY.value != "mirrored":
        raise UsageError("--num_cpu_replicas needs --strategy=mirrored")
    if _TPU.value and _STRATEGY.value != "tpu":
        raise UsageError("--tpu needs --strategy=tpu")


def main(argv: list[str]) -> None:
    """Flags -> config -> strategy -> `train_lib.train`; prints the outcome."""
    from lma_tf.errors import LmaError, UsageError

    _check_flags(argv)
    config = _CONFIG.value
    if _RECORDS_DIR.value:
        config.data.records_dir = _RECORDS_DIR.value
    try:
        lma_config.validate_config(config)
    except ValueError as e:
        raise UsageError(f"--config: {e}") from None
    model_dir = _MODEL_DIR.value or os.path.join(DEFAULT_RUNS_DIR, config.name)

    from lma_tf.training import strategy as lma_strategy
    from lma_tf.training import train_lib

    if _NUM_CPU_REPLICAS.value:
        lma_strategy.split_cpu(_NUM_CPU_REPLICAS.value)
    strategy = lma_strategy.get_strategy(
        _STRATEGY.value, _NUM_CPU_REPLICAS.value, _TPU.value
    )
    print(
        f"[train] {config.name}: strategy={_STRATEGY.value} replicas="
        f"{strategy.num_replicas_in_sync} model_dir={model_dir}",
        file=sys.stderr,
    )
    try:
        result = train_lib.train(
            config,
            model_dir,
            strategy,
            overwrite=_OVERWRITE.value,
            log=lambda line: print(line, file=sys.stderr),
        )
    except ValueError as e:  # e.g. records of another schema: one line, no trace
        if isinstance(e, LmaError):
            raise
        raise LmaError(str(e)) from e
    if "history" in result:
        last = result["history"][-1] if result["history"] else {}
        print(f"[train] {result['stopped']}; last epoch: {json.dumps(last)}")
        print(f"[train] weights checksum: {result['weights_checksum']!r}")
    else:
        print(f"[train] classical parameters: {json.dumps(result['classical_params'])}")


if __name__ == "__main__":
    cli.run("train", main)
