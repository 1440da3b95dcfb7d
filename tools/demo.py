"""`make demo`: the main job end to end on the embedded synthetic cohort."""

from lma_tf import cli
from lma_tf.cli.demo import main

if __name__ == "__main__":
    cli.run("demo", main)
