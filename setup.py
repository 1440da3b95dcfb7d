"""Package lma_tf: a light base, TensorFlow only through the `cpu`/`gpu` extras.

The base install runs what needs no TensorFlow: `lma-tf predict` on an ONNX
export (with the `serve` extra's onnxruntime), `report` and `maps`, reading
every input format (tests/serving/serve_without_tf_test.py installs
`[serve]` alone and runs them). Training, evaluation, export and Grad-CAM
need TensorFlow and Keras: `pip install '.[cpu]'` (or `gpu`).
"""

from setuptools import find_packages, setup

# tf2onnx 1.17: the version checked with TF 2.21 / Keras 3 / protobuf 7.
ONNX = ["tf2onnx>=1.17", "onnxruntime>=1.17", "onnx>=1.15"]
# The training stack, beside TensorFlow itself (which differs per extra).
TRAIN = ["keras>=3.3", "tf-keras-vis>=0.8.7", "tensorboard>=2.16"]

setup(
    name="lma_tf",
    version="0.1.0",
    description="Late mechanical activation detection from cine DENSE MRI strain",
    # experiments/ (the named configs) ships inside the wheel as
    # lma_tf.experiments, so an installed copy finds `--config=multitask` too.
    packages=[*find_packages(include=["lma_tf", "lma_tf.*"]), "lma_tf.experiments"],
    package_dir={"lma_tf.experiments": "experiments"},
    entry_points={"console_scripts": ["lma-tf = lma_tf.cli:dispatch"]},
    python_requires=">=3.10",
    # numpy-level: reading inputs, the prediction CSV, reports and figures.
    install_requires=[
        "absl-py>=2.0",
        "ml-collections>=0.1.1",
        "numpy>=1.26",
        "scipy>=1.11",
        "h5py>=3.9",
        "matplotlib>=3.8",
        "tqdm>=4.66",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.16,<2.22", *TRAIN],
        "gpu": ["tensorflow[and-cuda]>=2.16,<2.22", *TRAIN],
        "bench": ["torch==2.13.0"],  # the PyTorch mirror of `benchmark train`
        # The ONNX packages are in `test` too, so the ONNX test runs in CI;
        # setuptools and wheel build the wheel of tests/packaging_test.py
        # without build isolation (so without downloading anything).
        "test": [
            "pytest>=8",
            "ruff>=0.6",
            "hypothesis>=6.100",
            "setuptools>=61",
            "wheel>=0.40",
            *ONNX,
        ],
        "onnx": ONNX,
        # predict on an ONNX export, without TensorFlow or Keras
        # (docs/serving.md; tests/serving/serve_without_tf_test.py).
        "serve": ["onnxruntime>=1.17"],
    },
)
