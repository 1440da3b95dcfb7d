"""Throughput benchmarks behind `tools/benchmark.py` (figures and ratios of one run)."""

from __future__ import annotations

import os
import tempfile
import time

import ml_collections
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf import pipeline, records, synthetic, synthetic_io


def _examples_per_second(ds: tf.data.Dataset, epochs: int) -> float:
    """Iterates `ds` `epochs` times (after one warm-up pass) and times it."""
    for _ in ds:  # warm-up: fills the cache, traces the maps
        pass
    n = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for feats, _, _ in ds:
            n += int(feats["strain"].shape[0])
    return n / (time.perf_counter() - start)


def bench_records(
    num_subjects: int = 400, batch_size: int = 128, epochs: int = 5, seed: int = 0
) -> dict:
    """Conversion slices/s, and pipeline examples/s from shards vs in memory.

    The in-memory source holds the very tensors the shards parse to and goes
    through the same shuffle/batch/augment stage, so the ratio isolates the
    cost of reading and parsing the records.
    """
    with tempfile.TemporaryDirectory() as tmp:
        cohort = synthetic.generate_cohort(num_subjects, seed)
        synthetic_io.write_cohort(cohort, os.path.join(tmp, "in"), "npz")
        out = os.path.join(tmp, "rec")
        opts = records.RecordsOptions(
            output_dir=out, split=(1.0, 0.0, 0.0), num_shards=8, progress=False
        )
        start = time.perf_counter()
        manifest = records.make_records([os.path.join(tmp, "in")], opts)
        convert_s = time.perf_counter() - start
        n_slices = manifest["num_slices"]

        cfg = lma_config.base_config()
        cfg.data.records_dir = out
        cfg.train.batch_size = batch_size

        def from_shards(cache: bool) -> tf.data.Dataset:
            c = ml_collections.ConfigDict(cfg.to_dict())
            c.data.cache = cache
            return pipeline.make_dataset(c, "train")

        uncached = _examples_per_second(from_shards(False), epochs)
        cached = _examples_per_second(from_shards(True), epochs)

        files, comp = pipeline.shard_files(out, "train")
        parsed = tf.data.TFRecordDataset(files, compression_type=comp).map(
            lambda x: pipeline.parse_and_fit(x, cfg.data)
        )
        tensors = next(iter(parsed.batch(n_slices)))
        memory_ds = pipeline.batch_examples(
            tf.data.Dataset.from_tensor_slices(tensors), cfg, batch_size, training=True
        )
        in_memory = _examples_per_second(memory_ds, epochs)

    return {
        "num_slices": n_slices,
        "conversion_slices_per_s": n_slices / convert_s,
        "pipeline_from_shards_examples_per_s": cached,
        "pipeline_from_shards_uncached_examples_per_s": uncached,
        "pipeline_in_memory_examples_per_s": in_memory,
        "ratio_shards_to_memory": cached / in_memory,
        "ratio_uncached_to_memory": uncached / in_memory,
        "batch_size": batch_size,
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
    }
