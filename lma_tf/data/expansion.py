"""The authors' augmentation: a fixed, seeded expansion of the train split.

Rather than random shifts per batch, the authors add to the training set
(i) copies of every slice rolled around the sector ring by each of a list of
shifts (scar slices: -50..45 step 5; the others: -32..28 step 10) and (ii)
0.5/0.5 mixes of random pairs of slices (scar: 400 pairs, others: 100), each
group mixed within itself. Enabled by the `data.expand_*` fields; `make_dataset`
then reads the train split through `dataset` here.

The parsed train split is held in memory (it is what gets copied), the list
of (slice, shift) items is shuffled whole every epoch, and each item is
rolled on the fly, so the expansion costs no more memory than the split.
Mixes average strain, TOS and scar; their LMA label is 1 only where both
slices are LMA (the authors' averaged one-hot label, argmax ties -> class 0).
"""

from __future__ import annotations

import functools
import json
import os

import ml_collections
import numpy as np
import tensorflow as tf

from lma_tf import constants

_ROLLED = ("strain", "tos", "lma", "scar")  # sector axis first
_MIX_SALT = 2023  # the mix pairs' seed is (config.seed, this)


def enabled(data: ml_collections.ConfigDict) -> bool:
    """Whether `data` asks for a fixed expansion of the train split."""
    return bool(
        tuple(data.get("expand_shifts_scar", ()))
        or tuple(data.get("expand_shifts_scar_free", ()))
        or int(data.get("expand_mixup_scar", 0))
        or int(data.get("expand_mixup_scar_free", 0))
    )


def scar_slices(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) bool: slices with scar data and a sector at the scar threshold."""
    scar = arrays["scar"] >= constants.SCAR_THRESHOLD
    return (arrays["has_scar"] > 0) & scar.any(axis=1)


def mix_pairs(
    arrays: dict[str, np.ndarray], index: np.ndarray, count: int, rng
) -> dict[str, np.ndarray]:
    """`count` 0.5/0.5 mixes of random pairs (with replacement) from `index`."""
    pairs = index[rng.integers(0, len(index), size=(count, 2))]
    a, b = pairs[:, 0], pairs[:, 1]
    out = {}
    for key, value in arrays.items():
        if key in ("strain", "tos", "scar", "slice_location"):
            out[key] = (0.5 * value[a] + 0.5 * value[b]).astype(value.dtype)
        elif key in ("lma", "has_tos", "has_scar", "has_slice_location"):
            out[key] = np.minimum(value[a], value[b])
        elif key == "num_frames":
            out[key] = np.maximum(value[a], value[b])
        else:  # ids: "a+b", as the authors name their mixes
            out[key] = np.array([x + b"+" + y for x, y in zip(value[a], value[b])])
    return out


def plan(
    arrays: dict[str, np.ndarray], data: ml_collections.ConfigDict, seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The examples (originals, then mixes) and the (example, shift) items.

    Every original appears once unshifted plus once per non-zero shift of its
    group; mixes appear once, unshifted. Deterministic given `seed`.
    """
    scar = scar_slices(arrays)
    n = len(scar)
    items = [np.stack([np.arange(n), np.zeros(n, np.int64)], axis=1)]
    groups = (
        (scar, data.get("expand_shifts_scar", ()), data.get("expand_mixup_scar", 0)),
        (
            ~scar,
            data.get("expand_shifts_scar_free", ()),
            data.get("expand_mixup_scar_free", 0),
        ),
    )
    rng = np.random.default_rng([int(seed), _MIX_SALT])
    mixes = []
    for members, shifts, mix_count in groups:
        index = np.flatnonzero(members)
        for shift in (int(s) for s in shifts if int(s) % constants.NUM_SECTORS):
            items.append(np.stack([index, np.full(len(index), shift)], axis=1))
        if int(mix_count) > 0 and len(index):
            mixes.append(mix_pairs(arrays, index, int(mix_count), rng))
    examples = dict(arrays)
    offset = n
    for mix in mixes:
        count = len(mix["tos"])
        examples = {k: np.concatenate([examples[k], mix[k]]) for k in examples}
        items.append(
            np.stack([offset + np.arange(count), np.zeros(count, np.int64)], axis=1)
        )
        offset += count
    return examples, np.concatenate(items).astype(np.int64)


def _cache_key(config: ml_collections.ConfigDict) -> tuple:
    d = config.data
    manifest = os.path.join(d.records_dir, "manifest.json")
    return (
        os.path.abspath(d.records_dir),
        os.stat(manifest).st_mtime_ns,
        int(d.num_frames),
        int(d.drop_last_frames),
        float(d.frame_period_ms),
        tuple(int(s) for s in d.get("expand_shifts_scar", ())),
        tuple(int(s) for s in d.get("expand_shifts_scar_free", ())),
        int(d.get("expand_mixup_scar", 0)),
        int(d.get("expand_mixup_scar_free", 0)),
        int(config.seed),
    )


@functools.lru_cache(maxsize=2)
def _expanded(key: tuple, config_json: str) -> tuple[dict, np.ndarray]:
    """`plan` over the parsed train split (cached: counting and reading share it)."""
    from lma_tf.data import pipeline

    config = ml_collections.ConfigDict(json.loads(config_json))
    files, compression = pipeline.shard_files(config.data.records_dir, "train")
    ds = tf.data.TFRecordDataset(files, compression_type=compression)
    ds = ds.map(lambda x: pipeline.parse_and_fit(x, config.data)).batch(256)
    parts = [{k: v.numpy() for k, v in batch.items()} for batch in ds]
    if not parts:
        raise ValueError(f"{config.data.records_dir}: the train split has no slices")
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return plan(arrays, config.data, int(config.seed))


def expanded(config: ml_collections.ConfigDict) -> tuple[dict, np.ndarray]:
    """(examples, items) of the expanded train split of `config`."""
    return _expanded(_cache_key(config), config.to_json())


def count(config: ml_collections.ConfigDict) -> int:
    """Examples in one pass over the expanded train split."""
    return len(expanded(config)[1])


def dataset(
    config: ml_collections.ConfigDict,
    seed: int,
    num_pipelines: int = 1,
    pipeline_id: int = 0,
) -> tf.data.Dataset:
    """Parsed-example dicts of the expanded train split, shuffled whole by `seed`."""
    examples, items = expanded(config)
    tensors = {k: tf.constant(v) for k, v in examples.items()}
    ds = tf.data.Dataset.from_tensor_slices(items)
    ds = ds.shuffle(len(items), seed=seed, reshuffle_each_iteration=True)
    if num_pipelines > 1:
        ds = ds.shard(num_pipelines, pipeline_id)

    def take(item: tf.Tensor) -> dict:
        out = {k: tf.gather(v, item[0]) for k, v in tensors.items()}
        for key in _ROLLED:
            out[key] = tf.roll(out[key], item[1], axis=0)
        return out

    return ds.map(take, num_parallel_calls=tf.data.AUTOTUNE)
