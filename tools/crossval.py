"""`lma-tf crossval` from a checkout: k-fold cross-validation (see lma_tf/cli)."""

from lma_tf import cli
from lma_tf.cli.crossval import main

if __name__ == "__main__":
    cli.run("crossval", main)
