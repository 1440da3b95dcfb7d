"""The twelve user mistakes: each is one line naming the fix, and exit status 2.

Every case runs the real command in a fresh interpreter, as `lma-tf NAME`
would (through `lma_tf.cli.dispatch`), in a temporary folder: absl's flags
are process-wide, and exit status and stderr are what a user sees.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from lma_tf import config as lma_config
from lma_tf import testing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISPATCH = (
    "import sys; from lma_tf.cli import dispatch; dispatch(['lma-tf', *sys.argv[1:]])"
)
# A network small enough that a failing run fails in seconds.
TINY = (
    "--config.model.trunk_channels=(8,)",
    "--config.model.frame_pools=1",
    "--config.model.sector_pools=1",
    "--config.model.head_channels=(8,)",
    "--config.model.head_units=(8,)",
)


def lma(cwd, *args: str, stderr_file: str | None = None) -> subprocess.CompletedProcess:
    """`lma-tf ARGS` in `cwd`; stderr goes to a file when `stderr_file` is given."""
    env = dict(os.environ, PYTHONPATH=REPO, MPLBACKEND="Agg")
    cmd = [sys.executable, "-c", DISPATCH, *args]
    if stderr_file is None:
        return subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
    with open(stderr_file, "w") as err:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )
    with open(stderr_file) as f:
        proc.stderr = f.read()
    return proc


# TensorFlow's own C++ start-up log lines (absl format, e.g. "I0000 ... port.cc:
# oneDNN custom operations are on ... round-off errors ..."): not our errors.
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]")


def error_line(proc: subprocess.CompletedProcess, command: str) -> str:
    """The one error line of a failed command; fails unless exit 2 and one line."""
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [
        ln
        for ln in proc.stderr.splitlines()
        if "error" in ln.lower() and not TF_LOG_LINE.match(ln)
    ]
    assert len(errors) == 1, f"expected one error line, got:\n{proc.stderr[-2000:]}"
    assert errors[0].startswith(f"lma-tf {command}: error: "), errors[0]
    assert proc.returncode == 2, f"exit {proc.returncode}: {errors[0]}"
    return errors[0]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> str:
    """Eight random subjects as .npz files, plus one slice of too few frames."""
    root = tmp_path_factory.mktemp("cli_cohort")
    testing.write_cohort_npz(str(root), 8, 3, seed=4)
    bad = testing.random_slice(np.random.default_rng(0), "P999", "P999_0", 8)
    testing.write_npz(str(root / "P999" / "P999_0.npz"), bad)
    return str(root)


# 1
def test_a_typo_in_the_experiment_name_suggests_the_right_one(tmp_path):
    line = error_line(lma(tmp_path, "train", "--config=multitsk"), "train")
    assert "did you mean 'multitask'" in line


# 2
def test_a_typo_in_a_config_field_suggests_the_field(tmp_path):
    line = error_line(lma(tmp_path, "train", "--config.train.epoch=3"), "train")
    assert "'epoch'" in line and "epochs" in line


# 3
def test_a_split_in_percent_asks_for_fractions(tmp_path, cohort):
    proc = lma(tmp_path, "convert", f"--input={cohort}", "--split=70,15,15")
    line = error_line(proc, "convert")
    assert "0.7,0.15,0.15" in line and "percent" in line
    assert not os.path.exists(tmp_path / "records")


# 4
def test_demo_with_an_unknown_experiment_fails_before_building_anything(tmp_path):
    proc = lma(tmp_path, "demo", "--experiments=multitsk", "--output_dir=out")
    assert "did you mean 'multitask'" in error_line(proc, "demo")
    assert os.listdir(tmp_path) == []


# 5
def test_train_help_is_tensorflow_free_exits_zero_and_lists_config_fields(tmp_path):
    code = (
        "import sys, json\n"
        "from lma_tf.cli import dispatch\n"
        "try:\n"
        "    dispatch(['lma-tf', 'train', '--help'])\n"
        "except SystemExit as e:\n"
        "    heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras')]\n"
        "    print(json.dumps({'code': e.code, 'heavy': heavy[:3]}))\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}
    defaults = dict(lma_config.field_defaults(lma_config.base_config()))
    for field in ("train.epochs", "train.batch_size", "model.trunk_channels"):
        assert f"--config.{field}=" in proc.stdout
    assert f"--config.train.epochs={defaults['train.epochs']}\n" in proc.stdout


# 6
def test_predict_given_a_training_run_dir_says_to_export_it_first(tmp_path, cohort):
    run = tmp_path / "trained_networks" / "multitask"
    (run / "best").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(lma_config.base_config().to_dict()))
    proc = lma(
        tmp_path,
        "predict",
        "--saved_model=trained_networks/multitask",
        f"--input={cohort}",
        "--output=p.csv",
    )
    line = error_line(proc, "predict")
    assert "export it first" in line
    assert "lma-tf export --model_dir=trained_networks/multitask" in line
    assert not os.path.exists(tmp_path / "p.csv")


# 7
def _dicom_folder(root) -> str:
    folder = root / "dicom" / "P001"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"IM{i:04d}.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    return str(folder)


def test_a_dicom_folder_says_which_files_are_supported(tmp_path):
    proc = lma(tmp_path, "convert", f"--input={_dicom_folder(tmp_path)}")
    line = error_line(proc, "convert")  # nothing to read at all: exit 2
    assert ".dcm" in line, "say which files were found and not read"
    for ext in (".npz", ".npy", ".mat"):
        assert ext in line, f"{ext} missing from: {line}"
    assert not os.path.exists(tmp_path / "records")


def test_a_dicom_file_is_a_reject_naming_the_supported_formats(tmp_path):
    dicom = os.path.join(_dicom_folder(tmp_path), "IM0000.dcm")
    proc = lma(tmp_path, "convert", f"--input={dicom}")
    (reject,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("REJECT")]
    assert "IM0000.dcm" in reject and "'.dcm'" in reject
    for ext in (".npz", ".npy", ".mat"):
        assert ext in reject
    # A file was read and refused: the rule for "no valid slice" (exit 1).
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


# 8
def test_a_train_split_smaller_than_a_batch_suggests_a_batch_size(tmp_path, cohort):
    from lma_tf.data import records

    records.make_records(
        [cohort], records.RecordsOptions(output_dir=str(tmp_path / "r"), progress=False)
    )
    proc = lma(tmp_path, "train", "--records_dir=r", "--model_dir=m", *TINY)
    line = error_line(proc, "train")
    assert "less than a batch" in line
    assert re.search(r"--config\.train\.batch_size=\d+", line)


# 9
def test_reject_lines_start_their_own_line_when_stderr_is_a_file(tmp_path, cohort):
    log = str(tmp_path / "stderr.log")
    proc = lma(
        tmp_path, "convert", f"--input={cohort}", "--output_dir=r", stderr_file=log
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.split("\n") if "REJECT" in ln]
    assert lines, "the 8-frame slice must be rejected"
    for ln in lines:
        assert ln.startswith("REJECT file="), f"glued to another line: {ln!r}"


# 10
def test_an_unknown_experiment_lists_the_known_ones(tmp_path):
    line = error_line(lma(tmp_path, "train", "--config=nosuch"), "train")
    for name in lma_config.experiment_names():
        assert name in line


# 11
@pytest.mark.parametrize(
    "args, path",
    [
        (("convert", "--input=missing/cohort"), "missing/cohort"),
        (("maps", "--predictions=missing.csv"), "missing.csv"),
        (("evaluate", "--model_dir=missing_run"), "missing_run"),
    ],
)
def test_a_missing_input_names_the_path(tmp_path, args, path):
    line = error_line(lma(tmp_path, *args), args[0])
    assert path in line and "Errno" not in line


# 12
@pytest.mark.parametrize("split", ["0.5,0.5", "a,b,c", "0.6,0.3,0.3"])
def test_a_bad_split_shows_a_good_one(tmp_path, cohort, split):
    proc = lma(tmp_path, "convert", f"--input={cohort}", f"--split={split}")
    line = error_line(proc, "convert")
    assert f"--split={split}" in line and "0.7,0.15,0.15" in line
