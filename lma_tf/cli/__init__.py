"""The command layer: one thin absl binary per command, `lma_tf/cli/<name>.py`.

Each command module defines its flags at import time, with nothing heavier
than absl and ml_collections imported (so `--help` is fast and TensorFlow
stays out of it), and a `main(argv)` that validates the flags, builds the
library's arguments and calls one library function. The library never reads
FLAGS. `run` wraps every `main` so that a user mistake prints one line,
`lma-tf NAME: error: ...`, and exits non-zero without a traceback.

Commands are reached three ways, all the same `main`: `lma-tf NAME [flags]`
(console script), `python -m lma_tf.cli.NAME`, and `python tools/NAME.py`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

_HELP_FLAGS = {"--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml"}

# name -> one-line description (the order is the order of the workflow).
COMMANDS = {
    "synthesize": "write a synthetic DENSE cohort in one of the input formats",
    "convert": "validate DENSE inputs and write subject-split TFRecords",
    "train": "train one experiment under a tf.distribute strategy",
    "evaluate": "the paper's metrics on a split, or a comparison of runs",
    "crossval": "subject-level k-fold cross-validation and paired comparisons",
    "export": "export a trained run as a SavedModel (and/or ONNX)",
    "predict": "predict TOS and LMA for raw DENSE inputs with an export",
    "explain": "Grad-CAM explanations of the trained heads",
    "maps": "3-D activation maps and AHA bullseyes from a prediction CSV",
    "report": "per-subject pacing-target reports from prediction CSVs",
    "retest": "the pacing decision on repeat measurements of synthetic hearts",
    "demo": "the whole pipeline end to end on the synthetic cohort",
    "benchmark": "speed and memory benchmarks",
    "frontier": "accuracy per cost of candidate networks; picks the default",
}


def quiet_logs() -> None:
    """WARNING-level absl/TensorFlow logs unless --verbosity was given.

    TensorFlow's checkpoint and SavedModel code logs at INFO on every save,
    which buries the progress bars and results people came for.
    """
    from absl import flags, logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def fail(command: str, message: str, code: int = 2) -> None:
    """Prints `lma-tf COMMAND: error: MESSAGE` and exits with `code`."""
    from lma_tf import textsafe

    print(f"lma-tf {command}: error: {textsafe.clean(message)}", file=sys.stderr)
    sys.exit(code)


def _adopt_help(main: Callable) -> None:
    """Makes `--help` show the command's docstring and flags.

    absl's help lists the key flags of the module named by sys.argv[0] and
    prints `__main__`'s docstring; a command run through a shim or the
    console script defines its flags in `lma_tf.cli.NAME` instead.
    """
    from absl import flags

    module = sys.modules.get(main.__module__)
    main_module = sys.modules.get("__main__")
    if module is None or module is main_module:
        return
    if main_module is not None and module.__doc__:
        main_module.__doc__ = module.__doc__
    fv = flags.FLAGS
    for flag in fv.get_key_flags_for_module(module.__name__):
        fv.register_key_flag_for_module(sys.argv[0], flag)


def override_error(e: BaseException) -> str:
    """One line from ml_collections' error for a `--config.FIELD` naming no field."""
    text = str(e).replace("\\n", " ").replace("\\'", "").replace("\n", " ")
    words = text.strip("'\" ").split()
    if not words:
        return "bad config override"
    return f"bad config override: no field {words[0]!r}. " + " ".join(words[1:])


def not_found(e: FileNotFoundError) -> str:
    """`PATH: no such file or directory`, without Python's `[Errno 2]` prefix."""
    if e.filename:
        return f"{e.filename}: no such file or directory (check the path)"
    return str(e)


def run(command: str, main: Callable[[list[str]], None], argv=None) -> None:
    """absl's `app.run(main)`, with the library's errors turned into one line."""
    from absl import app

    from lma_tf.errors import LmaError

    # TensorFlow's C++ start-up banner buries the command's own output.
    if not os.environ.get("TF_CPP_MIN_LOG_LEVEL"):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    _adopt_help(main)

    def guarded(args: list[str]) -> None:
        quiet_logs()
        try:
            main(args)
        except LmaError as e:
            fail(command, str(e), e.exit_code)
        except FileNotFoundError as e:
            fail(command, not_found(e), 2)
        except KeyboardInterrupt:
            fail(command, "interrupted; rerun the same command to resume", 130)

    args = list(sys.argv if argv is None else argv)

    def parse(argv_: list[str]) -> list[str]:
        # A flag error is a usage mistake: one line, exit 2. A config
        # override naming no field fails inside ml_collections with an
        # AttributeError carrying its "did you mean" hint.
        from absl import flags

        try:
            return flags.FLAGS(argv_)
        except flags.Error as e:
            fail(command, f"{e} (see `lma-tf {command} --help`)", 2)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            fail(command, override_error(e), 2)
        return []

    try:
        app.run(guarded, argv=args, flags_parser=parse)
    except SystemExit as e:
        # absl's help flags exit 1; asking for help is not an error.
        if e.code == 1 and _HELP_FLAGS.intersection(args[1:]):
            sys.exit(0)
        raise


def dispatch(argv: list[str] | None = None) -> None:
    """Console script `lma-tf NAME [flags]`: runs the `main` of command NAME."""
    argv = list(sys.argv if argv is None else argv)
    usage = "usage: lma-tf COMMAND [--flags]  (lma-tf COMMAND --help)\n\ncommands:\n"
    usage += "".join(f"  {k:<11} {v}\n" for k, v in COMMANDS.items())
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage, end="")
        sys.exit(0 if len(argv) >= 2 else 2)
    name = argv[1]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"lma-tf: error: unknown command {name!r}{hint}\n\n{usage}", end="")
        sys.exit(2)
    module = importlib.import_module(f"lma_tf.cli.{name}")
    run(name, module.main, argv=[f"lma-tf {name}", *argv[2:]])
