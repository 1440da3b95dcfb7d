"""Shim for `lma-tf convert` (lma_tf/cli/convert.py): DENSE inputs -> TFRecords."""

from lma_tf import cli
from lma_tf.cli.convert import main

if __name__ == "__main__":
    cli.run("convert", main)
