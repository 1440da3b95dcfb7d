"""The house plan holds: light imports, no reach-back into the trainer.

Each check runs in a fresh interpreter, since this test process has long
imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _imported_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "module, forbidden",
    [
        # Serving needs a SavedModel, never a run directory or the trainer.
        ("lma_tf.serving.predict", ("lma_tf.training",)),
        ("lma_tf.serving.export", ("lma_tf.training.train_lib",)),
        ("lma_tf.evaluation.evaluate", ("lma_tf.training.train_lib",)),
        ("lma_tf.inference", ("lma_tf.training.train_lib",)),
        ("lma_tf.viz.explain", ("lma_tf.training.train_lib",)),
        # Reading data never needs the shard writer or TensorFlow's trainer.
        ("lma_tf.data.pipeline", ("lma_tf.data.records", "lma_tf.training")),
        # Numpy-level modules stay free of TensorFlow.
        ("lma_tf.rules", ("tensorflow", "keras")),
        ("lma_tf.config", ("tensorflow", "keras")),
        ("lma_tf.models.registry", ("tensorflow", "keras")),
        ("lma_tf.serving.prediction_csv", ("tensorflow", "keras")),
    ],
)
def test_import_graph(module, forbidden):
    loaded = _imported_after(f"import {module}")
    bad = sorted(
        m for m in loaded for f in forbidden if m == f or m.startswith(f + ".")
    )
    assert not bad, f"import {module} pulls in {bad}"


def test_every_command_help_is_fast_and_tensorflow_free():
    """Every command module defines its flags without importing TensorFlow."""
    from lma_tf import cli

    for name in cli.COMMANDS:
        loaded = _imported_after(f"import lma_tf.cli.{name}")
        heavy = sorted(m for m in loaded if m.split(".")[0] in ("tensorflow", "keras"))
        assert not heavy, f"lma_tf.cli.{name} imports {heavy[:3]} at import time"


# Modules allowed to print: the commands, and the demo and benchmarks, whose
# printed results are their output.
PRINTERS = ("lma_tf/cli/", "lma_tf/demo.py", "lma_tf/bench.py")


def test_the_library_logs_and_never_prints():
    """Library code reports through absl logging (or tqdm.write beside a bar)."""
    import ast
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    offenders = []
    for dirpath, _, filenames in os.walk(os.path.join(root, "lma_tf")):
        for name in filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if not name.endswith(".py") or rel.startswith(PRINTERS):
                continue
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), rel)
            offenders += [
                f"{rel}:{node.lineno}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ]
    assert not offenders, f"print() in library code: {offenders}"
