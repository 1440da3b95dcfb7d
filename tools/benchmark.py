"""Benchmarks (`python tools/benchmark.py records|train|serve`): one-run ratios."""

from lma_tf import cli
from lma_tf.cli.benchmark import main

if __name__ == "__main__":
    cli.run("benchmark", main)
