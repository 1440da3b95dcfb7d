"""`lma-tf frontier` from a checkout: accuracy per cost of candidate networks."""

from lma_tf import cli
from lma_tf.cli.frontier import main

if __name__ == "__main__":
    cli.run("frontier", main)
