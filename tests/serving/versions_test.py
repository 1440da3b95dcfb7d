"""The export layout: numbered versions, the latest SavedModel, training dirs."""

import pytest

from lma_tf.serving import layout
from lma_tf.training import run_dir


def test_versions(tmp_path):
    assert layout.next_version(str(tmp_path / "missing")) == 1
    for name in ("1", "7", ".tmp-8-1", "notes"):
        (tmp_path / name).mkdir()
    assert layout.next_version(str(tmp_path)) == 8
    (tmp_path / "1" / "saved_model.pb").write_text("")
    assert layout.latest_version_dir(str(tmp_path)) == str(tmp_path / "1")
    (tmp_path / "7" / "saved_model.pb").write_text("")
    assert layout.latest_version_dir(str(tmp_path)) == str(tmp_path / "7")
    with pytest.raises(FileNotFoundError, match="neither a SavedModel"):
        layout.latest_version_dir(str(tmp_path / "notes"))


def test_onnx_versions_are_not_saved_models(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / layout.ONNX_FILE).write_text("")
    with pytest.raises(FileNotFoundError):
        layout.latest_version_dir(str(tmp_path))


def test_a_training_run_dir_says_to_export_first(tmp_path):
    run = tmp_path / "run"
    (run / run_dir.BEST_DIR).mkdir(parents=True)
    (run / run_dir.CONFIG_JSON).write_text("{}")
    assert layout.is_training_run(str(run))
    with pytest.raises(FileNotFoundError, match="training run dir") as e:
        layout.latest_version_dir(str(run))
    assert f"lma-tf export --model_dir={run} --export_dir=" in str(e.value)


def test_run_dir_marks_match_the_training_side():
    """layout keeps its own copy (serving never imports training): keep in step."""
    assert layout.RUN_CONFIG_JSON == run_dir.CONFIG_JSON
    assert layout.RUN_BEST_DIR == run_dir.BEST_DIR
