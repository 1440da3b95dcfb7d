"""lma_tf: late mechanical activation detection from cine DENSE MRI strain."""

import os

# TensorFlow reads this once, when it is first imported: its oneDNN kernels
# (off by default on x86 CPUs other than recent Intel ones) run the small
# convolutions and pools of these networks several times faster on CPU
# (docs/model.md). TF_ENABLE_ONEDNN_OPTS=0 in the environment turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
