"""The frontier and the default's rule: cheapest within both tolerances of the best."""

from __future__ import annotations

from lma_tf.evaluation import frontier


def _row(name, flops, mae, acc, params=1000):
    return {
        "name": name,
        "flops_per_example": flops,
        "combined_tos_mae_ms": mae,
        "lma_accuracy": acc,
        "params": params,
    }


ROWS = [
    _row("big", 300e6, 5.00, 0.950),
    _row("mid", 100e6, 5.08, 0.947),  # within 0.1 ms and 0.005: eligible
    _row("small", 30e6, 5.05, 0.940),  # accuracy 0.010 behind: not eligible
    _row("worse", 200e6, 5.50, 0.930),  # dominated by mid
    {"name": "classical", "flops_per_example": None, "combined_tos_mae_ms": 9.0},
]


def test_the_rule_picks_the_cheapest_within_both_tolerances():
    choice = frontier.pick(ROWS)
    assert choice["pick"] == "mid"
    assert choice["eligible"] == ["mid", "big"]
    assert choice["best_mae_ms"] == 5.0 and choice["best_accuracy"] == 0.95


def test_wider_tolerances_pick_a_cheaper_network():
    assert frontier.pick(ROWS, acc_tol=0.02)["pick"] == "small"


def test_no_network_within_both_tolerances_picks_none():
    rows = [_row("a", 1e6, 5.0, 0.90), _row("b", 2e6, 6.0, 0.95)]
    choice = frontier.pick(rows)
    assert choice["pick"] is None and "at once" in choice["reason"]
    assert frontier.pick([ROWS[-1]])["pick"] is None  # no network at all


def test_the_frontier_leaves_out_dominated_and_costless_rows():
    assert frontier.pareto_front(ROWS) == ["small", "big"]


def test_markdown_marks_the_pick_and_the_frontier():
    text = frontier.markdown(ROWS)
    lines = {line.split("|")[1].strip(): line for line in text.splitlines()[2:7]}
    assert "**mid** (pick)" in lines
    assert lines["small"].rstrip(" |").endswith("yes")
    assert "| 100.0 |" in lines["**mid** (pick)"]  # MFLOPs
    assert lines["classical"].count("| - |") >= 3
    assert text.rstrip().endswith(f"({frontier.pick(ROWS)['reason']}).")
