"""The wheel is the product: built, installed in a fresh venv, run from an empty folder.

`pip install .` must give a working `lma-tf` with no checkout on disk. The
wheel is built from a copy of the sources, installed without dependencies
into a new venv (TensorFlow and friends come from this test's own
environment through a `.pth` path entry, so nothing is downloaded), and the
whole chain, synthesize -> convert -> train -> evaluate -> export -> predict
-> maps, runs with the installed console script in an empty temporary cwd.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from lma_tf.cli import COMMANDS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TensorFlow's C++ start-up lines: none may reach a user asking for --help.
BANNER = re.compile(r"oneDNN|cpu_feature_guard|This TensorFlow binary|tensorflow/core")
# Enough to make a 1-epoch run of the multitask network take seconds.
TINY = (
    "--config.train.epochs=1",
    "--config.train.batch_size=4",
    "--config.train.warmup_epochs=0",
    "--config.model.trunk_channels=(8,)",
    "--config.model.frame_pools=1",
    "--config.model.sector_pools=1",
    "--config.model.head_channels=(8,)",
    "--config.model.head_units=(8,)",
)


def _build_wheel(out_dir: str, src: str) -> str:
    """Builds the wheel from a copy of the sources (the checkout stays clean)."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("lma_tf", "experiments"):
        shutil.copytree(os.path.join(REPO, name), os.path.join(src, name), ignore=skip)
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(os.path.join(REPO, name), src)
    dist = os.path.join(out_dir, "dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-q", "-w", dist, src],
        check=True,
        capture_output=True,
        cwd=out_dir,
    )
    (wheel,) = os.listdir(dist)
    return os.path.join(dist, wheel)


def _new_venv(root: str, wheel: str) -> str:
    """A pip-free venv with the wheel installed; deps from this environment."""
    venv = os.path.join(root, "venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", venv],
        check=True,
        capture_output=True,
    )
    python = os.path.join(venv, "bin", "python")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
        + ["--no-deps", "--no-index", wheel],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # A plain path line: the directory is appended to sys.path after the new
    # venv's own site-packages, and the .pth files in it (among them this
    # checkout's editable install) are not run, so they cannot shadow the wheel.
    deps = sysconfig.get_paths()["purelib"]
    with open(os.path.join(site, "zz_test_dependencies.pth"), "w") as f:
        f.write(deps + "\n")
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, source copy it was built from, venv, env with the venv on PATH)."""
    root = str(tmp_path_factory.mktemp("packaging"))
    src = os.path.join(root, "src")
    wheel = _build_wheel(root, src)
    venv = _new_venv(root, wheel)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "MPLBACKEND")
    }
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
    return wheel, src, venv, env


def _run(args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(args), env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"{proc.args} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
        f"{proc.stderr[-3000:]}"
    )
    return proc


def test_wheel_holds_every_module_and_the_experiments(installed):
    wheel, src, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for top, package in (("lma_tf", "lma_tf"), ("experiments", "lma_tf/experiments")):
        for dirpath, _, filenames in os.walk(os.path.join(src, top)):
            rel = os.path.relpath(dirpath, os.path.join(src, top))
            for f in filenames:
                if f.endswith(".py"):
                    expected.add(os.path.normpath(os.path.join(package, rel, f)))
    missing = sorted(expected - names)
    # A subpackage without __init__.py is silently left out by find_packages.
    assert not missing, f"not in the wheel: {missing[:10]}"
    assert "lma_tf/experiments/multitask.py" in names
    entry_points = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points[0]).decode()
    assert "lma-tf = lma_tf.cli:dispatch" in text


def test_installed_copy_is_the_wheel_not_the_checkout(installed, tmp_path):
    _, _, venv, env = installed
    code = (
        "import lma_tf, lma_tf.config as c; "
        "print(lma_tf.__file__); print(c.experiments_dir()); "
        "print(','.join(c.experiment_names()))"
    )
    out = _ok(_run([os.path.join(venv, "bin", "python"), "-c", code], env, tmp_path))
    module_file, experiments, names = out.stdout.split()
    real_venv = os.path.realpath(venv)
    assert os.path.realpath(module_file).startswith(real_venv + os.sep)
    assert os.path.realpath(experiments).startswith(real_venv + os.sep)
    assert "multitask" in names.split(",") and "classical" in names.split(",")


def test_every_help_exits_zero_without_tensorflow_noise(installed, tmp_path):
    _, _, _, env = installed
    top = _ok(_run(["lma-tf", "--help"], env, tmp_path))
    for command in COMMANDS:
        assert command in top.stdout
        proc = _ok(_run(["lma-tf", command, "--help"], env, tmp_path))
        text = proc.stdout + proc.stderr
        assert "--" in proc.stdout, f"{command} --help lists no flags"
        assert not BANNER.search(text), f"{command} --help:\n{text[:500]}"
    train = _run(["lma-tf", "train", "--help"], env, tmp_path).stdout
    assert "--config.train.epochs=60" in train
    assert os.listdir(tmp_path) == [], "--help wrote files"


def test_the_whole_chain_runs_from_an_empty_folder(installed, tmp_path):
    _, _, _, env = installed

    def lma(*args: str) -> subprocess.CompletedProcess:
        return _ok(_run(["nice", "-n", "5", "lma-tf", *args], env, tmp_path))

    lma("synthesize", "--output_dir=cohort", "--num_subjects=8", "--seed=1")
    lma("convert", "--input=cohort", "--output_dir=records")
    lma("train", "--config=multitask", "--records_dir=records", *TINY)
    assert os.path.isfile(tmp_path / "trained_networks/multitask/config.json")
    lma("evaluate", "--model_dir=trained_networks/multitask", "--num_figures=1")
    assert os.path.isfile(tmp_path / "results/multitask/metrics.json")
    assert os.path.isfile(tmp_path / "results/multitask/per_slice.csv")
    # A training run dir is not an export: one line that says what to do.
    wrong = _run(
        ["lma-tf", "predict", "--saved_model=trained_networks/multitask"]
        + ["--input=cohort", "--output=p.csv"],
        env,
        tmp_path,
    )
    assert wrong.returncode == 2 and "lma-tf export" in wrong.stderr
    lma("export", "--model_dir=trained_networks/multitask", "--export_dir=export")
    assert os.path.isfile(tmp_path / "export/1/saved_model.pb")
    lma("predict", "--saved_model=export/1", "--input=cohort", "--output=pred.csv")
    with open(tmp_path / "pred.csv") as f:
        assert sum(1 for _ in f) > 126
    lma("maps", "--predictions=pred.csv", "--output_dir=maps")
    maps = os.listdir(tmp_path / "maps")
    assert any(m.endswith("_bullseye.png") for m in maps)
    assert any(m.endswith("_activation_map.png") for m in maps)
