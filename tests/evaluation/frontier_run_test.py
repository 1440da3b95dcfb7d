"""`lma-tf frontier` end to end on tiny networks: trains, scores val, never test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lma_tf import testing
from lma_tf.evaluation import cost, evaluate, frontier_run


def _tiny_experiment(path, name: str, **model) -> str:
    fields = "".join(f"    c.model.{k} = {v!r}\n" for k, v in model.items())
    path.write_text(
        "from lma_tf import config as lma_config, testing\n\n\n"
        "def get_config():\n"
        "    c = testing.tiny_config(lma_config.base_config(), 'unused')\n"
        f"    c.name = {name!r}\n{fields}    return c\n"
    )
    return str(path)


def test_frontier_trains_scores_val_and_names_the_pick(tmp_path, monkeypatch):
    records = testing.synthetic_records(str(tmp_path), 14, 1)
    experiments = [
        _tiny_experiment(tmp_path / "wide.py", "wide"),
        _tiny_experiment(
            tmp_path / "pooled.py", "pooled", separable=True, sector_pools=1
        ),
    ]
    splits = []
    score = evaluate.evaluate

    def spy(model_dir, output_dir, records_dir="", split="test", **kw):
        splits.append(split)
        return score(model_dir, output_dir, records_dir, split, **kw)

    monkeypatch.setattr(evaluate, "evaluate", spy)
    # The timings are cost_test's business; the counts are real.
    monkeypatch.setattr(
        cost,
        "network_cost",
        lambda c: {
            **cost.static_cost(c),
            "latency_p50_ms": 1.0,
            "train_examples_per_s": 5.0,
        },
    )
    out_dir = tmp_path / "out"
    out = frontier_run.run_frontier(
        experiments, records, str(out_dir), str(tmp_path / "runs"), epochs=1
    )
    assert splits == ["val", "val"]
    names = [r["name"] for r in out["rows"]]
    assert names == ["wide", "pooled"]
    wide, pooled = out["rows"]
    assert pooled["flops_per_example"] < wide["flops_per_example"]
    assert all(r["combined_tos_mae_ms"] > 0 for r in out["rows"])
    assert out["choice"]["pick"] in (*names, None)
    saved = json.loads((out_dir / "frontier.json").read_text())
    assert saved["choice"] == out["choice"] and saved["split"] == "val"
    assert "val combined MAE" in (out_dir / "frontier.md").read_text()
    assert (out_dir / "frontier.png").stat().st_size > 1000
    # A second call reuses the finished runs (same configs) instead of refusing.
    again = frontier_run.run_frontier(
        experiments[:1], records, str(out_dir), str(tmp_path / "runs"), epochs=1
    )
    assert again["rows"][0]["combined_tos_mae_ms"] == wide["combined_tos_mae_ms"]


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give --records_dir"),
        (["--records_dir=r", "--experiments=multitsk"], "did you mean 'multitask'"),
    ],
)
def test_the_command_refuses_bad_flags_in_one_line(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "lma_tf.cli.frontier", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": testing.__file__.rsplit("/lma_tf/", 1)[0], "PATH": ""},
    )
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
