"""`evaluate --compare` gains the cost column group and the cost frontier figure."""

from __future__ import annotations

from lma_tf.evaluation import cost, evaluate, metrics


def test_compare_adds_cost_columns_and_the_frontier(trained, tmp_path, monkeypatch):
    _, dirs = trained
    seen = []

    def fake_cost(config):
        seen.append(config.model.kind)
        static = cost.static_cost(config)  # real counts, made-up timings
        return {**static, "latency_p50_ms": 1.5, "train_examples_per_s": 100.0}

    monkeypatch.setattr(cost, "network_cost", fake_cost)
    results = evaluate.compare(list(dirs.values()), str(tmp_path / "with"))
    assert seen == ["multitask", "regression_only", "classical"]
    assert results["classical"]["params"] == 0
    assert results["multitask"]["flops_per_example"] > 0
    header = (tmp_path / "with" / "comparison.md").read_text().splitlines()[0]
    cells = [c.strip() for c in header.strip("|").split("|")]
    group = list(metrics.COST_TABLE_KEYS)
    assert cells[-len(group) :] == group  # after the metric columns
    assert (tmp_path / "with" / "cost_frontier.png").stat().st_size > 1000

    plain = evaluate.compare(list(dirs.values()), str(tmp_path / "without"), cost=False)
    assert "params" not in metrics.comparison_table(plain)
    assert not (tmp_path / "without" / "cost_frontier.png").exists()
