"""`lma-tf export` from a checkout: a trained run as a SavedModel or ONNX."""

from lma_tf import cli
from lma_tf.cli.export import main

if __name__ == "__main__":
    cli.run("export", main)
