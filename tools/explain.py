"""`python tools/explain.py`: Grad-CAM explanations (the `lma-tf explain` command)."""

from lma_tf import cli
from lma_tf.cli.explain import main

if __name__ == "__main__":
    cli.run("explain", main)
