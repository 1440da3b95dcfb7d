"""`python tools/maps.py`: activation maps and bullseyes (the `lma-tf maps` command)."""

from lma_tf import cli
from lma_tf.cli.maps import main

if __name__ == "__main__":
    cli.run("maps", main)
