"""`lma-tf convert`: DENSE inputs -> validated, subject-split, sharded TFRecords.

Reads .npz slices, the authors' pickled .npy lists, DENSEanalysis .mat
exports and CSV record sheets (docs/data.md), reports every rejected slice on
stderr and writes the shards with a manifest.json:

  lma-tf convert --input=/data/cohort --output_dir=records
"""

from __future__ import annotations

import sys

from absl import flags

from lma_tf import cli

_INPUT = flags.DEFINE_multi_string(
    "input", None, "File, directory (recursive) or CSV manifest; repeatable."
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "records", "Where shards go.")
_SPLIT = flags.DEFINE_list(
    "split",
    ["0.7", "0.15", "0.15"],
    "train,val,test fractions, each in [0, 1], summing to 1.",
)
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", 0, "Shards per split (0: about one per 256 slices)."
)
_COMPRESSION = flags.DEFINE_enum("compression", "", ["", "GZIP"], "Shard codec.")
_ALLOW_PICKLE = flags.DEFINE_bool(
    "allow_pickle", False, "Read pickled .npy lists (pickle runs code: trust them)."
)
_STRICT = flags.DEFINE_bool("strict", False, "Any rejected slice is fatal.")
_SALT = flags.DEFINE_string(
    "pseudonymize_salt",
    "",
    "If set, subject ids become salted hashes. At least 16 random bytes (32 hex "
    "digits). Visible to other users in `ps`: prefer --pseudonymize_salt_file "
    "or the LMA_TF_SALT environment variable.",
)
_SALT_FILE = flags.DEFINE_string(
    "pseudonymize_salt_file",
    "",
    "File holding the pseudonymisation salt (one line). Without this flag and "
    "--pseudonymize_salt, the LMA_TF_SALT environment variable is used if set.",
)
_ALLOW_OUTSIDE = flags.DEFINE_bool(
    "allow_outside_paths",
    False,
    "Read files that record sheets or symbolic links name outside the --input "
    "folders (refused by default).",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the subject split.")
flags.mark_flag_as_required("input")


def _parse_split(values: list[str]) -> tuple[float, ...]:
    """--split as floats; UsageError unless three fractions summing to 1."""
    from lma_tf.data import records
    from lma_tf.errors import UsageError

    text = ",".join(values)
    try:
        split = tuple(float(v) for v in values)
    except ValueError:
        raise UsageError(
            f"--split={text}: not numbers; give three fractions train,val,test "
            "in [0, 1] that sum to 1, e.g. --split=0.7,0.15,0.15"
        ) from None
    records.check_split(split, name="--split")
    return split


def main(argv: list[str]) -> None:
    """Validates the flags, then `records.make_records`; prints a summary."""
    from lma_tf.data import records
    from lma_tf.errors import UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}; inputs go in --input")
    salt, warnings = records.resolve_salt(_SALT.value, _SALT_FILE.value)
    for warning in warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    options = records.RecordsOptions(
        output_dir=_OUTPUT_DIR.value,
        split=_parse_split(_SPLIT.value),
        num_shards=_NUM_SHARDS.value,
        compression=_COMPRESSION.value,
        allow_pickle=_ALLOW_PICKLE.value,
        strict=_STRICT.value,
        pseudonymize_salt=salt,
        seed=_SEED.value,
        allow_outside_paths=_ALLOW_OUTSIDE.value,
    )
    manifest = records.make_records(_INPUT.value, options)
    counts = ", ".join(
        f"{k}={v['num_slices']} slices/{v['num_subjects']} subjects"
        for k, v in manifest["splits"].items()
    )
    print(
        f"wrote {manifest['num_slices']} slices to {options.output_dir} ({counts}); "
        f"{manifest['num_rejects']} rejected"
    )


if __name__ == "__main__":
    cli.run("convert", main)
