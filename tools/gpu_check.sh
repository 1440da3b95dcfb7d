#!/usr/bin/env bash
# GPU check: a short training run under --strategy=mirrored with mixed
# precision; fails unless TensorFlow sees a GPU and placed the model on it.
# Prints examples/s. Usage: tools/gpu_check.sh [python]  (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export TF_CPP_MIN_LOG_LEVEL=2

"$PY" - <<'PYEOF'
import sys
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print(f"TensorFlow {tf.__version__}, GPUs: {gpus}")
if not gpus:
    sys.exit("gpu_check: FAILED: TensorFlow sees no GPU (install .[gpu])")
PYEOF

"$PY" tools/synthesize_cohort.py --output_dir="$WORK/c" --num_subjects=60 --seed=0 >/dev/null
"$PY" tools/make_records.py --input="$WORK/c" --output_dir="$WORK/r" >/dev/null 2>&1

"$PY" - "$WORK" <<'PYEOF'
import sys
import time

import keras
import tensorflow as tf

from lma_tf import config as lma_config
from lma_tf.data import pipeline
from lma_tf.training import run_dir
from lma_tf.training import strategy as lma_strategy
from lma_tf.training import train_lib as train

work = sys.argv[1]
cfg = lma_config.base_config()
cfg.data.records_dir = f"{work}/r"
cfg.train.mixed_precision = True
cfg.train.epochs = 3
cfg.train.batch_size = 64
strategy = lma_strategy.get_strategy("mirrored")
devices = strategy.extended.worker_devices
print(f"strategy: mirrored over {devices}")
if not any("GPU" in d.upper() for d in devices):
    sys.exit("gpu_check: FAILED: mirrored strategy has no GPU replica")
start = time.perf_counter()
result = train.train(cfg, f"{work}/m", strategy, progress=False)
seconds = time.perf_counter() - start
epochs = len(result["history"])
steps = pipeline.count_examples(cfg, "train") // cfg.train.batch_size
saved = run_dir.load_config(f"{work}/m")
assert saved.train.mixed_precision, "the run did not use mixed precision"
keras.mixed_precision.set_global_policy("mixed_float16")
net = run_dir.restore_best(saved, f"{work}/m")
print(f"compute dtype: {net.layers[-1].compute_dtype}, policy {net.dtype_policy.name}")
kernel = next(w for w in net.weights if "kernel" in w.path)
print(f"variable device: {kernel.value.device}")
if "GPU" not in kernel.value.device.upper():
    sys.exit("gpu_check: FAILED: weights are not on a GPU")
print(f"last epoch: {result['history'][-1]}")
print(f"gpu_check: OK: {epochs * steps * cfg.train.batch_size / seconds:.0f} examples/s "
      f"({epochs} epochs incl. tracing, {strategy.num_replicas_in_sync} replicas, "
      "mixed_float16)")
PYEOF
