"""Throughput benchmarks behind `tools/benchmark.py` (figures and ratios of one run)."""

from __future__ import annotations

import os
import tempfile
import time

import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from lma_tf import config as lma_config
from lma_tf.data import pipeline, records, synthetic, synthetic_io


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


def _timed_calls(fn, calls: int, warmup: int) -> list[float]:
    """Wall seconds of each of `calls` calls of `fn`, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _serving_figures(run, prefix: str, x1, p1, xb, pb, calls: int, batches: int):
    lat = np.asarray(_timed_calls(lambda: run(x1, p1), calls, 10)) * 1e3
    per_batch = _timed_calls(lambda: run(xb, pb), batches, 1)
    return {
        f"{prefix}_latency_p50_ms": float(np.percentile(lat, 50)),
        f"{prefix}_latency_p99_ms": float(np.percentile(lat, 99)),
        f"{prefix}_batch_slices_per_s": len(xb) * batches / float(np.sum(per_batch)),
    }


def bench_serve(
    num_frames: int = 40,
    batch_size: int = 256,
    latency_calls: int = 200,
    batch_calls: int = 5,
    seed: int = 0,
) -> dict:
    """Serving speed: SavedModel `serving_default` vs ONNX Runtime, one run.

    Exports the multitask network of the default config (untrained: speed
    does not depend on the weights) in both formats, loads each with
    `runtime.load_model` (the loader predict uses), then times single-slice
    calls (latency p50/p99, numpy in, numpy out, input checks and
    preprocessing included) and `batch_size`-slice calls (throughput). ONNX
    Runtime figures are left out, with the reason, when the `onnx` extra is
    not installed.
    """
    from lma_tf.models import networks as lma_model
    from lma_tf.serving import export, runtime

    cfg = lma_config.base_config()
    rng = np.random.default_rng(seed)
    xb = rng.normal(0.0, 0.05, (batch_size, 126, num_frames)).astype(np.float32)
    pb = np.full([batch_size], cfg.data.frame_period_ms, np.float32)
    x1, p1 = xb[:1], pb[:1]
    result: dict = {
        "num_frames": num_frames,
        "batch_size": batch_size,
        "latency_calls": latency_calls,
        "batch_calls": batch_calls,
    }
    with tempfile.TemporaryDirectory() as tmp:
        keras_model = lma_model.build_model(cfg)
        path = export.export_model(keras_model, cfg, tmp, version=1)
        tf_model = runtime.load_model(path, "tensorflow")
        result.update(
            _serving_figures(
                tf_model, "saved_model", x1, p1, xb, pb, latency_calls, batch_calls
            )
        )
        try:
            onnx_model = runtime.load_model(path, "onnx")
        except (runtime.ModelLoadError, runtime.ModelNotFoundError) as e:
            result["onnxruntime"] = f"not measured: {e}"
        else:
            import onnxruntime as ort

            figures = _serving_figures(
                onnx_model, "onnxruntime", x1, p1, xb, pb, latency_calls, batch_calls
            )
            result.update(figures)
            result["onnxruntime"] = ort.__version__
            result["ratio_onnx_to_saved_model_batch"] = (
                result["onnxruntime_batch_slices_per_s"]
                / result["saved_model_batch_slices_per_s"]
            )
    result["cpu_count"] = os.cpu_count()
    result["tensorflow"] = tf.__version__
    return result


def _one_patient(root: str, num_slices: int, seed: int) -> str:
    """`num_slices` synthetic slices as one patient's DENSEanalysis .mat v5 folder."""
    import dataclasses

    from lma_tf.data.formats import mat

    pool = synthetic.generate_cohort(max(2, num_slices), seed)[:num_slices]
    patient = [
        dataclasses.replace(s, subject_id="PATIENT01", slice_id=f"slice{i + 1}")
        for i, s in enumerate(pool)
    ]
    mat.write(patient, root, "5")
    return os.path.join(root, "PATIENT01")


def _cold_predict_seconds(args: list[str], runs: int) -> tuple[list[float], float]:
    """Wall seconds of `runs` fresh `python -m lma_tf.cli.predict ARGS` processes,
    and their median CPU seconds (user + system: less sensitive to a busy CPU).

    One untimed run first writes the package's bytecode (`__pycache__`), as
    an installed copy has it (pip compiles it), even where
    PYTHONDONTWRITEBYTECODE would recompile the package in every process.
    """
    import resource
    import subprocess
    import sys

    import lma_tf

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(lma_tf.__file__)))
    paths = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [sys.executable, "-m", "lma_tf.cli.predict", *args]
    times, cpu = [], []

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    for i in range(runs + 1):
        start, start_cpu = time.perf_counter(), children_cpu()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if i:  # run 0 writes the bytecode
            times.append(time.perf_counter() - start)
            cpu.append(children_cpu() - start_cpu)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return times, float(np.median(cpu))


def bench_patient(num_slices: int = 5, runs: int = 5, seed: int = 0) -> dict:
    """One patient, raw .mat v5 files to the predictions CSV, in a fresh process.

    What a clinician's script pays per patient: interpreter start, imports,
    reading and validating the files, loading the export, inference and the
    CSV, timed as the wall time of `lma-tf predict` (median of `runs` runs,
    each a fresh process, after one untimed run that caches the bytecode)
    on the ONNX path (no TensorFlow) and on the SavedModel path. The model
    is the multitask network of the default config, untrained.
    """
    from lma_tf.models import networks as lma_model
    from lma_tf.serving import export

    result: dict = {"patient_slices": num_slices, "runs": runs}
    with tempfile.TemporaryDirectory() as tmp:
        patient = _one_patient(os.path.join(tmp, "in"), num_slices, seed)
        cfg = lma_config.base_config()
        path = export.export_model(
            lma_model.build_model(cfg), cfg, os.path.join(tmp, "export"), version=1
        )
        for name in ("onnx", "tensorflow"):
            out = os.path.join(tmp, f"{name}.csv")
            args = [f"--saved_model={path}", f"--input={patient}", f"--output={out}"]
            seconds, cpu = _cold_predict_seconds([*args, f"--runtime={name}"], runs)
            result[f"{name}_patient_cold_s"] = float(np.median(seconds))
            result[f"{name}_patient_cold_s_min"] = float(np.min(seconds))
            result[f"{name}_patient_cpu_s"] = cpu
    result["ratio_tensorflow_to_onnx"] = (
        result["tensorflow_patient_cold_s"] / result["onnx_patient_cold_s"]
    )
    result["cpu_count"] = os.cpu_count()
    result["load_average_1min"] = os.getloadavg()[0]  # other work on the CPU
    return result


def _synthetic_train_records(root: str, num_subjects: int) -> str:
    """A synthetic cohort's records, all in the train split; their folder."""
    cohort = synthetic.generate_cohort(num_subjects, 0)
    synthetic_io.write_cohort(cohort, os.path.join(root, "in"), "npz")
    out = os.path.join(root, "rec")
    records.make_records(
        [os.path.join(root, "in")],
        records.RecordsOptions(output_dir=out, split=(1.0, 0.0, 0.0), progress=False),
    )
    return out


def _train_figures(
    name: str, batch: int, rec: str, steps: int, fused: int
) -> dict[str, float]:
    """One experiment's training examples/s, per input source and step setting.

    The same network, optimizer and train step (`steps.build_train_step`)
    are fed from the TFRecord pipeline (the experiment's own, expansion
    included) and from parsed tensors in memory (same shuffle/batch stage);
    with `fused` steps per call or one, and with XLA (in memory only: its
    compile time is long, and the source does not change what it compiles).
    """
    import keras

    from lma_tf.models import registry
    from lma_tf.training import steps as steps_lib
    from lma_tf.training import train_lib

    base = lma_config.load_experiment(name)
    base.data.records_dir = rec
    base.train.batch_size = batch
    base = train_lib.resolve_config(base)
    files, comp = pipeline.shard_files(rec, "train")
    tensors = next(
        iter(
            tf.data.TFRecordDataset(files, compression_type=comp)
            .map(lambda x: pipeline.parse_and_fit(x, base.data))
            .batch(100_000)
        )
    )
    strategy = tf.distribute.get_strategy()
    sources = {
        "from_shards": lambda c: pipeline.make_dataset(c, "train", repeat=True),
        "in_memory": lambda c: pipeline.batch_examples(
            tf.data.Dataset.from_tensor_slices(tensors).cache(),
            c,
            batch,
            training=True,
            repeat=True,
        ),
    }
    out: dict[str, float] = {}
    for k, jit in ((1, False), (fused, False), (1, True)):
        cfg = ml_collections.ConfigDict(base.to_dict())
        cfg.train.steps_per_execution = k
        cfg.train.jit_compile = jit
        keras.utils.set_random_seed(0)
        net = registry.get(cfg.model.kind).build(cfg)
        opt = steps_lib.make_optimizer(cfg, steps)
        step = steps_lib.build_train_step(strategy, net, opt, cfg, batch)
        calls = max(1, steps // k)
        for source, make_ds in sources.items():
            if jit and source != "in_memory":
                continue
            it = iter(strategy.experimental_distribute_dataset(make_ds(cfg)))
            for _ in range(2):  # warm-up: tracing (compiling), cache fill
                step(it, k)
            start = time.perf_counter()
            for _ in range(calls):
                float(step(it, k)["loss"])
            rate = calls * k * batch / (time.perf_counter() - start)
            setting = f"xla_k{k}" if jit else f"k{k}"
            out[f"{name}_b{batch}_{source}_{setting}_examples_per_s"] = rate
            logging.info(
                "benchmark train: %s %s %s %.1f ex/s", name, source, setting, rate
            )
    return out


def bench_train(
    num_subjects: int = 40, steps: int = 32, fused_steps: int = 8, seed: int = 0
) -> dict:
    """Training examples/s of `xing2023` (batch 64) and `multitask` (batch 32).

    For each: from the TFRecord pipeline and from in-memory tensors, with
    `train.steps_per_execution` 1 and `fused_steps`, and with XLA
    (`train.jit_compile`); then the PyTorch mirror of `xing2023`
    (`lma_tf.bench_torch`, same layers, optimizer and loss, in-memory
    batches of 64) in the same process, and the ratio of lma_tf's best
    `xing2023` figure to it. Without PyTorch the mirror is reported as not
    measured. Other jobs on the CPU shift every figure: compare the ratios
    of one run, and see `load_average_1min`.
    """
    from lma_tf import bench_torch

    out: dict = {
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "load_average_1min": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        rec = _synthetic_train_records(tmp, num_subjects)
        # multitask is ~20x more compute a step: fewer timed steps keep the
        # run to a few minutes.
        for name, batch, timed in (
            ("xing2023", 64, steps),
            ("multitask", 32, max(fused_steps, steps // 4)),
        ):
            out.update(_train_figures(name, batch, rec, timed, fused_steps))
    mirror = bench_torch.train_examples_per_s(64, steps=max(steps, 20), seed=seed)
    out.update(mirror)
    ours = max(
        v for k, v in out.items() if k.startswith("xing2023_") and k.endswith("_per_s")
    )
    out["xing2023_lma_tf_best_examples_per_s"] = ours
    if "torch_examples_per_s" in mirror:
        one = bench_torch.train_examples_per_s(64, max(steps, 20), seed=seed, threads=1)
        out["torch_1_thread_examples_per_s"] = one["torch_examples_per_s"]
        # Against PyTorch's better setting: one thread per core can lose to
        # one thread when other jobs share the CPU.
        best = max(mirror["torch_examples_per_s"], one["torch_examples_per_s"])
        out["torch_best_examples_per_s"] = best
        out["xing2023_ratio_lma_tf_best_to_torch"] = ours / best
    out["load_average_1min_after"] = os.getloadavg()[0]
    return out


# Goals each figure is judged against (a figure without one is informative):
# TARGETS are floors (more is better), CEILINGS ceilings (less is better).
TARGETS = {
    "records": {
        "conversion_slices_per_s": 1000.0,
        "pipeline_from_shards_examples_per_s": 20000.0,
    },
    "train": {"xing2023_ratio_lma_tf_best_to_torch": 1.0},
    "serve": {},
}
CEILINGS = {"patient": {"onnx_patient_cold_s": 1.0}}


def format_report(which: str, result: dict) -> str:
    """One line per figure, with its goal and OK/MISSED where it has one."""
    lines = []
    for key, value in result.items():
        floor = TARGETS.get(which, {}).get(key)
        ceiling = CEILINGS.get(which, {}).get(key)
        mark = ""
        if floor is not None:
            mark = f"  (goal >= {floor:g}: {'OK' if value >= floor else 'MISSED'})"
        elif ceiling is not None:
            ok = "OK" if value <= ceiling else "MISSED"
            mark = f"  (goal <= {ceiling:g}: {ok})"
        shown = f"{value:,.2f}" if isinstance(value, float) else value
        lines.append(f"{key:48s} {shown}{mark}")
    return "\n".join(lines)
