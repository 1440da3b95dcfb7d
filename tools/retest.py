"""`lma-tf retest` from a checkout: the decision on repeat scans (see lma_tf/cli)."""

from lma_tf import cli
from lma_tf.cli.retest import main

if __name__ == "__main__":
    cli.run("retest", main)
