"""Package lma_tf. TensorFlow comes through extras: `cpu` or `gpu`."""

from setuptools import find_packages, setup

# tf2onnx 1.17: the version checked with TF 2.21 / Keras 3 / protobuf 7.
ONNX = ["tf2onnx>=1.17", "onnxruntime>=1.17", "onnx>=1.15"]

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
    install_requires=[
        "keras>=3.3",
        "absl-py>=2.0",
        "ml-collections>=0.1.1",
        "numpy>=1.26",
        "scipy>=1.11",
        "h5py>=3.9",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "tf-keras-vis>=0.8.7",
        "tensorboard>=2.16",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.16,<2.22"],
        "gpu": ["tensorflow[and-cuda]>=2.16,<2.22"],
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
        # predict on an ONNX export, without TensorFlow (docs/serving.md).
        "serve": [
            "numpy",
            "scipy",
            "h5py",
            "onnxruntime>=1.17",
            "absl-py",
            "ml-collections",
            "tqdm",
        ],
    },
)
