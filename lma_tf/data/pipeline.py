"""The tf.data input pipeline: TFRecord shards -> batches for the model.

Order as in tensorflow/models' input reader: list and shuffle files -> shard
by input pipeline -> interleave -> parse -> cache -> shuffle -> batch ->
augment -> prefetch. Augmentation runs on whole batches (one gather for the
circular shifts) because per-example maps dominate the cost on small CPUs.

Elements are `(features, labels, sample_weights)`:
  features: {"strain": (B, S, T) float32, "sector_mask": (B, S)}
  labels:   {"tos": (B, S) float32 ms, "lma": (B, S) float32 in [0, 1]}
  weights:  {"tos": (B, S), "lma": (B, S)}: 0 on padded sectors and on
            slices without labels, so neither ever counts in a loss/metric.
S = config.data.num_sectors (126 padded circularly), T = config.data.num_frames.
"""

from __future__ import annotations

import os

import ml_collections
import tensorflow as tf

from lma_tf import constants
from lma_tf.data import expansion, features, preprocess, sector_padding
from lma_tf.data import manifest as manifest_lib

AUTOTUNE = tf.data.AUTOTUNE


def shard_files(records_dir: str, split: str) -> tuple[list[str], str]:
    """The shard paths of a split from the manifest, and their compression."""
    manifest = manifest_lib.load_manifest(records_dir)
    if split not in manifest["splits"]:
        raise ValueError(f"{records_dir}: no split {split!r} in the manifest")
    names = manifest["splits"][split]["shards"]
    if not names:
        raise ValueError(f"{records_dir}: split {split!r} has no slices")
    paths = [os.path.join(records_dir, n) for n in names]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"shards listed in the manifest are missing: {missing}")
    return paths, manifest.get("compression", "")


def parse_and_fit(serialized: tf.Tensor, data: ml_collections.ConfigDict) -> dict:
    """One serialized example -> fixed-size tensors (126 sectors, T frames).

    The strain is fitted by `preprocess.fit_to_model`, the op the SavedModel
    signatures call too (no train/serve skew).
    """
    p = features.parse_example(serialized)
    strain = preprocess.fit_to_model(p["strain"], p[features.FRAME_PERIOD], data)
    has_tos = tf.cast(p[features.HAS_TOS], tf.float32)
    return {
        "strain": strain,
        "tos": p[features.TOS],
        "lma": tf.cast(p[features.LMA], tf.float32),
        "has_tos": has_tos,
        "scar": p[features.SCAR],
        "has_scar": tf.cast(p[features.HAS_SCAR], tf.float32),
        "num_frames": tf.cast(p[features.NUM_FRAMES], tf.int32),
        "subject_id": p[features.SUBJECT_ID],
        "slice_id": p[features.SLICE_ID],
        "slice_location": p[features.SLICE_LOCATION],
        "has_slice_location": tf.cast(p[features.HAS_SLICE_LOCATION], tf.float32),
    }


def circular_shift(batch: dict, seed: tf.Tensor | None = None) -> dict:
    """Rolls each example's sector ring by its own random offset.

    Strain, TOS, LMA label and scar move together, so labels stay aligned with
    the strain they describe (the whole point; see the property test).
    """
    b = tf.shape(batch["strain"])[0]
    n = constants.NUM_SECTORS
    if seed is None:
        shift = tf.random.uniform([b], 0, n, dtype=tf.int32)
    else:
        shift = tf.random.stateless_uniform([b], seed, 0, n, dtype=tf.int32)
    # Output sector i takes input sector (i - shift) mod n, like np.roll.
    idx = (tf.range(n)[None, :] - shift[:, None]) % n
    out = dict(batch)
    for key in ("strain", "tos", "lma", "scar"):
        out[key] = tf.gather(batch[key], idx, axis=1, batch_dims=1)
    return out


def mirror(batch: dict, seed: tf.Tensor | None = None) -> dict:
    """Reverses the sector order of a random half of the examples.

    A mirrored ring is the same heart analysed in the other direction (the
    `Clockwise` flag of a DENSE export), so it is as physiological as the
    original; labels move with the strain as in `circular_shift`.
    """
    b = tf.shape(batch["strain"])[0]
    n = constants.NUM_SECTORS
    if seed is None:
        flip = tf.random.uniform([b]) < 0.5
    else:
        flip = tf.random.stateless_uniform([b], seed) < 0.5
    forward = tf.range(n)[None, :]
    idx = tf.where(flip[:, None], n - 1 - forward, forward)
    out = dict(batch)
    for key in ("strain", "tos", "lma", "scar"):
        out[key] = tf.gather(batch[key], idx, axis=1, batch_dims=1)
    return out


def mixup(batch: dict, alpha: float, seed: tf.Tensor | None = None) -> dict:
    """Mixup within the batch: convex mixes of strain and of both targets.

    The LMA target becomes a soft probability, which the cross-entropy
    accepts; unlabelled partners zero the weight of the mix.
    """
    b = tf.shape(batch["strain"])[0]
    if seed is None:
        seed = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    g1 = tf.random.stateless_gamma([b], seeds[0], alpha)
    g2 = tf.random.stateless_gamma([b], seeds[1], alpha)
    lam = g1 / (g1 + g2 + 1e-12)
    perm = tf.random.experimental.stateless_shuffle(tf.range(b), seeds[2])
    out = dict(batch)
    for key, extra in (("strain", 2), ("tos", 1), ("lma", 1), ("scar", 1)):
        lam_k = tf.reshape(lam, [-1] + [1] * extra)
        out[key] = lam_k * batch[key] + (1.0 - lam_k) * tf.gather(batch[key], perm)
    out["has_tos"] = batch["has_tos"] * tf.gather(batch["has_tos"], perm)
    return out


def to_model_inputs(batch: dict, data: ml_collections.ConfigDict, metadata: bool):
    """Pads sectors (`data.sector_padding`) and builds (features, labels, weights)."""
    s = data.num_sectors
    mask = preprocess.sector_mask(s)[None, :]
    strain = sector_padding.pad(batch["strain"], data, axis=1)
    tos = sector_padding.pad(batch["tos"], data, axis=1)
    lma = sector_padding.pad(batch["lma"], data, axis=1)
    weight = mask * batch["has_tos"][:, None]
    feats = {"strain": strain, "sector_mask": tf.broadcast_to(mask, tf.shape(tos))}
    if metadata:
        for key in (
            "has_tos",
            "has_scar",
            "num_frames",
            "subject_id",
            "slice_id",
            "slice_location",
            "has_slice_location",
        ):
            feats[key] = batch[key]
        feats["scar"] = sector_padding.pad(batch["scar"], data, axis=1)
    return feats, {"tos": tos, "lma": lma}, {"tos": weight, "lma": weight}


def read_examples(
    files: list[str],
    compression: str,
    data: ml_collections.ConfigDict,
    training: bool,
    seed: int,
    num_pipelines: int,
    pipeline_id: int,
) -> tf.data.Dataset:
    """Parsed, model-fitted examples of this input pipeline's share of `files`.

    File shuffle (training) -> shard by file when there are enough files ->
    interleave -> otherwise shard by record -> parse and fit.
    """
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    shard_by_file = num_pipelines > 1 and len(files) >= num_pipelines
    if shard_by_file:
        ds = ds.shard(num_pipelines, pipeline_id)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
        cycle_length=max(1, min(int(data.cycle_length), len(files))),
        num_parallel_calls=AUTOTUNE,
        # Sharding by record needs the same order in every pipeline, or the
        # pipelines' shards would overlap and miss records.
        deterministic=bool(data.deterministic) or num_pipelines > 1,
    )
    if num_pipelines > 1 and not shard_by_file:
        ds = ds.shard(num_pipelines, pipeline_id)
    return ds.map(lambda x: parse_and_fit(x, data), num_parallel_calls=AUTOTUNE)


def make_dataset(
    config: ml_collections.ConfigDict,
    split: str,
    input_context: tf.distribute.InputContext | None = None,
    *,
    training: bool | None = None,
    repeat: bool = False,
    include_metadata: bool = False,
    batch_size: int | None = None,
    epoch: int = 0,
    skip_batches: int = 0,
) -> tf.data.Dataset:
    """Builds the dataset of one split.

    Args:
      config: the experiment config (uses `data`, `train.batch_size`, `seed`).
      split: "train", "val" or "test".
      input_context: from `strategy.distribute_datasets_from_function`; sets
        the per-replica batch size and which shards this pipeline reads.
      training: shuffle + augment + drop the last partial batch; defaults to
        `split == "train"`.
      repeat: repeat forever (the trainer counts steps).
      include_metadata: add ids, scar and frame counts to the features (for
        evaluation; strings stay on the host).
      batch_size: global batch size; defaults to `config.train.batch_size`.
      epoch: mixed into every seed (file order, shuffle, augmentation), so
        each epoch differs yet is reproducible on its own.
      skip_batches: batches of this pipeline to drop first (resuming an
        epoch at the step of its backup).
    """
    data = config.data
    training = split == "train" if training is None else training
    global_batch = batch_size or config.train.batch_size
    seed = epoch_seed(config, epoch)
    files, compression = shard_files(data.records_dir, split)
    manifest_lib.verify_split(data.records_dir, split)  # truncated shards fail here

    batch = global_batch
    num_pipelines, pipeline_id = 1, 0
    if input_context is not None:
        batch = input_context.get_per_replica_batch_size(global_batch)
        num_pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id

    options = tf.data.Options()
    options.deterministic = bool(data.deterministic)
    # We shard explicitly below; stop tf.distribute from sharding again.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF
    )
    if training and split == "train" and expansion.enabled(data):
        # The authors' fixed expansion of the train split (data/expansion.py).
        ds = expansion.dataset(config, seed, num_pipelines, pipeline_id)
    else:
        ds = read_examples(
            files, compression, data, training, seed, num_pipelines, pipeline_id
        )
        if data.cache and cache_fits(config, split):
            ds = ds.cache()
    ds = batch_examples(
        ds,
        config,
        batch,
        training,
        repeat,
        include_metadata,
        seed=seed * 1009 + pipeline_id,
        skip_batches=skip_batches,
    )
    return ds.with_options(options)


def epoch_seed(config: ml_collections.ConfigDict, epoch: int) -> int:
    """The seed of one epoch's file order, shuffle and augmentation."""
    return int(config.seed) * 100_003 + int(epoch)


def cache_fits(config: ml_collections.ConfigDict, split: str) -> bool:
    """Whether the parsed split fits `data.cache_max_mb` (an estimate)."""
    data = config.data
    per_example = constants.NUM_SECTORS * (data.num_frames + 4) * 4 + 256
    size_mb = _manifest_count(config, split) * per_example / 2**20
    return size_mb <= float(data.cache_max_mb)


def batch_examples(
    ds: tf.data.Dataset,
    config: ml_collections.ConfigDict,
    batch_size: int,
    training: bool,
    repeat: bool = False,
    include_metadata: bool = False,
    seed: int | None = None,
    skip_batches: int = 0,
) -> tf.data.Dataset:
    """Parsed examples -> shuffled, batched, augmented model inputs.

    The stage after parsing, shared by the shard reader above and by
    in-memory sources (the benchmark compares the two on the same data).
    """
    data = config.data
    seed = int(config.seed) if seed is None else int(seed)
    if training:
        ds = ds.shuffle(
            int(data.shuffle_buffer), seed=seed, reshuffle_each_iteration=True
        )
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=AUTOTUNE)
    if training:
        # One seed per batch from a seeded stream (per epoch and pipeline):
        # augmentation is reproducible yet differs between replicas.
        seeds = tf.data.Dataset.random(
            seed=seed, rerandomize_each_iteration=True
        ).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds)
        if skip_batches:
            ds = ds.skip(skip_batches)
        ds = ds.map(lambda b, s: _augment(b, s, data), num_parallel_calls=AUTOTUNE)
    elif skip_batches:
        ds = ds.skip(skip_batches)
    ds = ds.map(
        lambda b: to_model_inputs(b, data, include_metadata),
        num_parallel_calls=AUTOTUNE,
    )
    return ds.prefetch(AUTOTUNE)


def _augment(batch: dict, seed: tf.Tensor, data: ml_collections.ConfigDict) -> dict:
    """Training augmentation of one batch, from stateless ops on `seed`."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    if data.get("augment_mirror", False):
        # Its own seed, so runs without mirroring draw exactly as before.
        batch = mirror(batch, tf.random.experimental.stateless_fold_in(seed, 3))
    if data.augment_shift:
        batch = circular_shift(batch, seeds[0])
    if data.mixup_alpha > 0:
        batch = mixup(batch, float(data.mixup_alpha), seeds[1])
    if data.noise_std > 0:
        batch = dict(batch)
        noise = tf.random.stateless_normal(
            tf.shape(batch["strain"]), seeds[2], stddev=data.noise_std
        )
        # Zero-padded frames stay exactly zero, as serving will see them.
        real = tf.reduce_any(tf.not_equal(batch["strain"], 0.0), axis=1, keepdims=True)
        batch["strain"] = batch["strain"] + noise * tf.cast(real, noise.dtype)
    return batch


def count_examples(config: ml_collections.ConfigDict, split: str) -> int:
    """Examples in one pass over a split, as training reads it.

    The manifest's slice count (no pass over the data), except for the train
    split under a fixed expansion (`data.expand_*`): then the expanded count.
    """
    if split == "train" and expansion.enabled(config.data):
        return expansion.count(config)
    return _manifest_count(config, split)


def _manifest_count(config: ml_collections.ConfigDict, split: str) -> int:
    """Slices in a split, from the manifest."""
    manifest = manifest_lib.load_manifest(config.data.records_dir)
    return int(manifest["splits"][split]["num_slices"])
