"""`lma-tf explain`: Grad-CAM explanations of the trained heads.

  lma-tf explain --model_dir=M [--records_dir=D] --split=test --output_dir=G
      [--method=gradcam|gradcam++|scorecam] [--num_slices=N] [--slice_ids=a,b]
  lma-tf explain --compare=M1,M2 ...   (the same slices, side by side)

Also `python -m lma_tf.cli.explain` and `python tools/explain.py`. The work
is `lma_tf.viz.explain.run_gradcam`; the figures are described in
docs/figures.md.
"""

from __future__ import annotations

from absl import flags

# The names of `lma_tf.viz.gradcam.METHODS`, spelled out so that `--help`
# needs no TensorFlow (tests/viz/explain_test.py checks they agree).
METHODS = ("gradcam", "gradcam++", "scorecam")

_MODEL_DIR = flags.DEFINE_string("model_dir", "", "A trained model directory.")
_COMPARE = flags.DEFINE_list("compare", [], "Several model directories, side by side.")
_RECORDS_DIR = flags.DEFINE_string(
    "records_dir", "", "Records (default: the one trained on)."
)
_SPLIT = flags.DEFINE_enum(
    "split", "test", ["train", "val", "test"], "Split to explain."
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "gradcam", "Where figures and maps go.")
_METHOD = flags.DEFINE_enum("method", "gradcam", METHODS, "tf-keras-vis method.")
_NUM_SLICES = flags.DEFINE_integer(
    "num_slices", 4, "Slices to explain (the split's first)."
)
_SLICE_IDS = flags.DEFINE_list("slice_ids", [], "Explain these slices instead.")


def main(argv: list[str]) -> None:
    """Validates the flags and runs `run_gradcam`; prints what it wrote."""
    from lma_tf.errors import UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]} (flags only)")
    if _MODEL_DIR.value and _COMPARE.value:
        raise UsageError("give --model_dir or --compare, not both")
    dirs = list(_COMPARE.value) or ([_MODEL_DIR.value] if _MODEL_DIR.value else [])
    if not dirs:
        raise UsageError("--model_dir or --compare is required")
    if not _SLICE_IDS.value and _NUM_SLICES.value < 1:
        raise UsageError(f"--num_slices must be at least 1, got {_NUM_SLICES.value}")

    from lma_tf.viz import explain

    result = explain.run_gradcam(
        dirs,
        _OUTPUT_DIR.value,
        _SPLIT.value,
        _METHOD.value,
        _NUM_SLICES.value,
        _RECORDS_DIR.value,
        _SLICE_IDS.value,
    )
    print(
        f"[explain] {_METHOD.value}: {len(result['figures'])} figures "
        f"({', '.join(result['experiments'])}) in {_OUTPUT_DIR.value}"
    )


if __name__ == "__main__":
    from lma_tf import cli

    cli.run("explain", main)
