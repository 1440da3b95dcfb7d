"""`python tools/report.py`: pacing-target reports (the `lma-tf report` command)."""

from lma_tf import cli
from lma_tf.cli.report import main

if __name__ == "__main__":
    cli.run("report", main)
