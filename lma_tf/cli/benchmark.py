"""`lma-tf benchmark WHICH`: figures and ratios measured in one run.

lma-tf benchmark records   # conversion + input pipeline
lma-tf benchmark train     # training examples/s: XLA, fused steps, vs PyTorch
lma-tf benchmark serve     # SavedModel vs ONNX Runtime latency/throughput
lma-tf benchmark patient   # one patient's .mat files -> CSV, cold process
"""

from __future__ import annotations

from absl import flags

from lma_tf import cli

WHICH = ("records", "train", "serve", "patient")
_SUBJECTS = flags.DEFINE_integer("num_subjects", 400, "Synthetic subjects to use.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Global batch size.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Timed passes over the data.")
_FRAMES = flags.DEFINE_integer("num_frames", 40, "serve: frames per slice.")
_SERVE_BATCH = flags.DEFINE_integer("serve_batch", 256, "serve: slices per batch.")
_CALLS = flags.DEFINE_integer("latency_calls", 200, "serve: timed single-slice calls.")
_BATCH_CALLS = flags.DEFINE_integer("batch_calls", 5, "serve: timed batch calls.")
_STEPS = flags.DEFINE_integer("steps", 32, "train: timed steps per figure.")
_RUNS = flags.DEFINE_integer("runs", 5, "patient: timed fresh processes per path.")
_OUTPUT = flags.DEFINE_string("output", "", "Optional JSON file for the figures.")


def main(argv: list[str]) -> None:
    """Runs one benchmark and prints each figure beside its target."""
    from lma_tf.errors import UsageError

    if len(argv) != 2 or argv[1] not in WHICH:
        raise UsageError(f"say which benchmark: one of {', '.join(WHICH)}")
    from lma_tf import atomic, bench

    which = argv[1]
    if which == "records":
        result = bench.bench_records(_SUBJECTS.value, _BATCH.value, _EPOCHS.value)
    elif which == "train":
        result = bench.bench_train(min(_SUBJECTS.value, 40), steps=_STEPS.value)
    elif which == "patient":
        result = bench.bench_patient(runs=_RUNS.value)
    else:
        result = bench.bench_serve(
            _FRAMES.value, _SERVE_BATCH.value, _CALLS.value, _BATCH_CALLS.value
        )
    print(bench.format_report(which, result))
    if _OUTPUT.value:
        atomic.write_json(_OUTPUT.value, result)


if __name__ == "__main__":
    cli.run("benchmark", main)
