"""`lma-tf train` from a checkout: train one experiment (see lma_tf/cli/train.py)."""

from lma_tf import cli
from lma_tf.cli.train import main

if __name__ == "__main__":
    cli.run("train", main)
