"""Shim for `lma-tf synthesize` (lma_tf/cli/synthesize.py): a synthetic cohort."""

from lma_tf import cli
from lma_tf.cli.synthesize import main

if __name__ == "__main__":
    cli.run("synthesize", main)
