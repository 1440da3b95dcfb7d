"""Figures and explanations, one module per job (conventions: docs/figures.md).

- `figures`: Agg backend, shared colours, `save_figure` (atomic PNGs) and
  `output_path` (safe file names from ids).
- `strain`: a slice's strain matrix with its TOS curves and scar.
- `charts`: training curves and the comparison of experiments.
- `gradcam_overlay`: Grad-CAM maps over the strain matrix.
- `rings`, `aha`, `bullseye`, `activation_map`: per-subject AHA bullseyes and
  3-D activation maps from a prediction CSV.
- `gradcam`: Grad-CAM maps of a network (tf-keras-vis); `explain`: the run
  over trained model directories.

Nothing is imported here, so `import lma_tf.viz.strain` needs no TensorFlow.
"""
