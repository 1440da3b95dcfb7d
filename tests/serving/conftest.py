"""One tiny trained and exported model shared by the serving tests.

12 synthetic subjects, 1 epoch, batch 8, `drop_last_frames=5` (the serving
graph must honour the config), exported once per session as version 1.
"""

from __future__ import annotations

import dataclasses

import pytest


@dataclasses.dataclass(frozen=True)
class ServingRun:
    model_dir: str  # the training run
    version_dir: str  # its SavedModel, export_dir/1
    inputs: str  # the cohort's raw .npz files


@pytest.fixture(scope="session")
def serving_run(tmp_path_factory) -> ServingRun:
    from lma_tf import config as lma_config
    from lma_tf.data import records, synthetic, synthetic_io
    from lma_tf.serving import export
    from lma_tf.training import train_lib

    root = tmp_path_factory.mktemp("serving")
    cohort = synthetic.generate_cohort(12, seed=3)
    inputs = str(root / "in")
    synthetic_io.write_cohort(cohort, inputs, "npz")
    rec = str(root / "records")
    records.make_records(
        [inputs], records.RecordsOptions(output_dir=rec, progress=False)
    )
    cfg = lma_config.base_config()
    cfg.data.records_dir = rec
    cfg.data.drop_last_frames = 5
    cfg.train.epochs = 1
    cfg.train.batch_size = 8
    model_dir = str(root / "model")
    train_lib.train(cfg, model_dir, progress=False)
    version_dir = export.export(model_dir, str(root / "export"))
    return ServingRun(model_dir, version_dir, inputs)


@pytest.fixture(scope="session")
def keras_model(serving_run):
    """(Keras model, config) of the run, restored as export restores it."""
    from lma_tf.training import run_dir

    config = run_dir.load_config(serving_run.model_dir)
    return run_dir.restore_best(config, serving_run.model_dir), config
