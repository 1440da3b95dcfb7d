"""Benchmarks; each prints figures and ratios measured in one run.

python tools/benchmark.py records   # conversion + input pipeline
python tools/benchmark.py train     # training examples/s: shards vs in memory
python tools/benchmark.py serve     # SavedModel vs ONNX Runtime latency/throughput
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_SUBJECTS = flags.DEFINE_integer("num_subjects", 400, "Synthetic subjects to use.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Global batch size.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Timed passes over the data.")
_FRAMES = flags.DEFINE_integer("num_frames", 40, "serve: frames per slice.")
_SERVE_BATCH = flags.DEFINE_integer("serve_batch", 256, "serve: slices per batch.")
_CALLS = flags.DEFINE_integer("latency_calls", 200, "serve: timed single-slice calls.")
_BATCH_CALLS = flags.DEFINE_integer("batch_calls", 5, "serve: timed batch calls.")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed training steps (train).")
_OUTPUT = flags.DEFINE_string("output", "", "Optional JSON file for the figures.")

TARGETS = {
    "records": {
        "conversion_slices_per_s": 1000.0,
        "pipeline_from_shards_examples_per_s": 20000.0,
    },
    "train": {
        "batch32_ratio_shards_to_memory": 0.9,
        "batch128_ratio_shards_to_memory": 0.9,
    },
    "serve": {},
}


def main(argv):
    if len(argv) != 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: benchmark.py {{{'|'.join(TARGETS)}}} [--flags]")
    from lma_tf import bench

    which = argv[1]
    if which == "records":
        result = bench.bench_records(_SUBJECTS.value, _BATCH.value, _EPOCHS.value)
    elif which == "train":
        result = bench.bench_train(min(_SUBJECTS.value, 100), steps=_STEPS.value)
    elif which == "serve":
        result = bench.bench_serve(
            _FRAMES.value, _SERVE_BATCH.value, _CALLS.value, _BATCH_CALLS.value
        )
    for key, value in result.items():
        target = TARGETS[which].get(key)
        mark = ""
        if target is not None:
            mark = f"  (target >= {target:g}: {'OK' if value >= target else 'MISSED'})"
        shown = f"{value:,.2f}" if isinstance(value, float) else value
        print(f"{key:48s} {shown}{mark}")
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    app.run(main)
