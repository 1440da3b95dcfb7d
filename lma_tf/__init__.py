"""lma_tf: late mechanical activation detection from cine DENSE MRI strain."""

__version__ = "0.1.0"
