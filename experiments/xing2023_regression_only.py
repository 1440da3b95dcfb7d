"""The authors' regression-only network, trained their way (docs/fidelity.md).

The same data handling, augmentation and optimisation as `xing2023`, with
the MSE loss only; LMA is then called where the regressed TOS is late.
"""

from lma_tf import config as lma_config


def get_config():
    c = lma_config.load_experiment("xing2023")
    c.name = "xing2023_regression_only"
    c.model.kind = "xing2023_regression_only"
    c.loss.weights = {"tos": 1.0}
    return c
