"""`lma-tf evaluate` from a checkout: the paper's metrics on a split."""

from lma_tf import cli
from lma_tf.cli.evaluate import main

if __name__ == "__main__":
    cli.run("evaluate", main)
