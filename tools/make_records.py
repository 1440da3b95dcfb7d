"""Converts DENSE inputs (npz / pickled npy / DENSEanalysis .mat / CSV manifest)
into subject-split, sharded TFRecords with a manifest.json.

  python tools/make_records.py --input=/data/cohort --output_dir=records
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from lma_tf.data import records  # noqa: E402

_INPUT = flags.DEFINE_multi_string(
    "input", None, "File, directory (recursive) or CSV manifest; repeatable."
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "records", "Where shards go.")
_SPLIT = flags.DEFINE_list("split", ["0.7", "0.15", "0.15"], "train,val,test.")
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", 0, "Shards per split (0: about one per 256 slices)."
)
_COMPRESSION = flags.DEFINE_enum("compression", "", ["", "GZIP"], "Shard codec.")
_ALLOW_PICKLE = flags.DEFINE_bool(
    "allow_pickle", False, "Read pickled .npy lists (pickle runs code: trust them)."
)
_STRICT = flags.DEFINE_bool("strict", False, "Any rejected slice is fatal.")
_SALT = flags.DEFINE_string(
    "pseudonymize_salt", "", "If set, subject ids become salted hashes."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the subject split.")
flags.mark_flag_as_required("input")


def main(argv):
    del argv
    options = records.RecordsOptions(
        output_dir=_OUTPUT_DIR.value,
        split=tuple(float(x) for x in _SPLIT.value),
        num_shards=_NUM_SHARDS.value,
        compression=_COMPRESSION.value,
        allow_pickle=_ALLOW_PICKLE.value,
        strict=_STRICT.value,
        pseudonymize_salt=_SALT.value,
        seed=_SEED.value,
    )
    try:
        manifest = records.make_records(_INPUT.value, options)
    except (records.RecordsError, FileNotFoundError, ValueError) as e:
        sys.exit(f"make_records: error: {e}")
    counts = ", ".join(
        f"{k}={v['num_slices']} slices/{v['num_subjects']} subjects"
        for k, v in manifest["splits"].items()
    )
    print(
        f"wrote {manifest['num_slices']} slices to {options.output_dir} ({counts}); "
        f"{manifest['num_rejects']} rejected"
    )


if __name__ == "__main__":
    app.run(main)
