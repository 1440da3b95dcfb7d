"""`lma-tf predict` from a checkout: TOS and LMA for raw DENSE inputs."""

from lma_tf import cli
from lma_tf.cli.predict import main

if __name__ == "__main__":
    cli.run("predict", main)
