"""Accuracy per cost: the Pareto frontier of networks and the default's rule.

Each candidate is a row (a dict) with at least `name`, `flops_per_example`,
`combined_tos_mae_ms` and `lma_accuracy` (both on the validation split),
plus any cost columns of `lma_tf.evaluation.cost`. Plain Python: no
TensorFlow, so the rule can be checked and reused anywhere.

The rule: the cheapest network (fewest FLOPs per example; then fewer
parameters) whose combined TOS MAE is within `mae_tol_ms` of the best one and
whose LMA accuracy is within `acc_tol` of the best one, the two bests taken
over all candidates. Never fed test-split numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MAE_TOL_MS = 0.1
ACC_TOL = 0.005
MAE = "combined_tos_mae_ms"
ACC = "lma_accuracy"
FLOPS = "flops_per_example"

# Columns of frontier.md: (key, header, format).
COLUMNS = (
    ("params", "params", "{:,.0f}"),
    (FLOPS, "MFLOPs/example", "mflops"),
    ("latency_p50_ms", "latency p50 (ms)", "{:.2f}"),
    ("train_examples_per_s", "train examples/s", "{:.0f}"),
    (MAE, "val combined MAE (ms)", "{:.3f}"),
    (ACC, "val LMA accuracy", "{:.4f}"),
)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _scored(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows with a network (FLOPs > 0) and both validation scores."""
    return [
        r
        for r in rows
        if (_number(r.get(FLOPS)) or 0) > 0
        and _number(r.get(MAE)) is not None
        and _number(r.get(ACC)) is not None
    ]


def plottable(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows with a network (FLOPs > 0) and a combined MAE: the figure's points."""
    return [
        r
        for r in rows
        if (_number(r.get(FLOPS)) or 0) > 0 and _number(r.get(MAE)) is not None
    ]


def pareto_front(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the rows no other row beats on both FLOPs and combined MAE.

    Row b dominates row a when it has no more FLOPs and no higher MAE, and
    is better in one of them. Returned in increasing FLOPs.
    """
    scored = plottable(rows)
    front = []
    for a in scored:
        fa, ma = float(a[FLOPS]), float(a[MAE])
        dominated = any(
            float(b[FLOPS]) <= fa
            and float(b[MAE]) <= ma
            and (float(b[FLOPS]) < fa or float(b[MAE]) < ma)
            for b in scored
        )
        if not dominated:
            front.append(a)
    return [r["name"] for r in sorted(front, key=lambda r: float(r[FLOPS]))]


def pick(
    rows: Sequence[Mapping[str, Any]],
    mae_tol_ms: float = MAE_TOL_MS,
    acc_tol: float = ACC_TOL,
) -> dict[str, Any]:
    """The rule's choice among `rows`: see the module docstring.

    Returns {"pick": name or None, "best_mae_ms", "best_accuracy",
    "eligible": names within both tolerances, cheapest first, "reason"}.
    `pick` is None when no row has a network and both scores, or when no
    row is within both tolerances (the best MAE and the best accuracy come
    from different networks, each too far behind on the other).
    """
    scored = _scored(rows)
    if not scored:
        return {
            "pick": None,
            "best_mae_ms": None,
            "best_accuracy": None,
            "eligible": [],
            "reason": "no network with validation scores",
        }
    best_mae = min(float(r[MAE]) for r in scored)
    best_acc = max(float(r[ACC]) for r in scored)
    eligible = [
        r
        for r in scored
        if float(r[MAE]) <= best_mae + mae_tol_ms + 1e-12
        and float(r[ACC]) >= best_acc - acc_tol - 1e-12
    ]
    eligible.sort(key=lambda r: (float(r[FLOPS]), _number(r.get("params")) or 0))
    names = [r["name"] for r in eligible]
    if not names:
        reason = (
            f"no network is within {mae_tol_ms:g} ms of the best combined MAE "
            f"({best_mae:.3f}) and {acc_tol:g} of the best LMA accuracy "
            f"({best_acc:.4f}) at once"
        )
    else:
        reason = (
            f"cheapest of {', '.join(names)}: within {mae_tol_ms:g} ms of the best "
            f"combined MAE ({best_mae:.3f} ms) and {acc_tol:g} of the best LMA "
            f"accuracy ({best_acc:.4f})"
        )
    return {
        "pick": names[0] if names else None,
        "best_mae_ms": best_mae,
        "best_accuracy": best_acc,
        "eligible": names,
        "reason": reason,
    }


def _format(value: Any, fmt: str) -> str:
    number = _number(value)
    if number is None:
        return "-" if value is None or isinstance(value, bool) else str(value)
    if fmt == "mflops":
        return f"{number / 1e6:.1f}"
    return fmt.format(number)


def markdown(
    rows: Sequence[Mapping[str, Any]], choice: Mapping[str, Any] | None = None
) -> str:
    """frontier.md: one row per network, frontier members and the pick marked."""
    choice = pick(rows) if choice is None else choice
    front = set(pareto_front(rows))
    header = "| network | " + " | ".join(h for _, h, _ in COLUMNS) + " | frontier |"
    lines = [header, "|---|" + "---:|" * len(COLUMNS) + ":---:|"]
    for r in rows:
        name = str(r["name"])
        shown = f"**{name}** (pick)" if name == choice.get("pick") else name
        cells = [_format(r.get(k), fmt) for k, _, fmt in COLUMNS]
        mark = "yes" if name in front else ""
        lines.append("| " + " | ".join([shown, *cells, mark]) + " |")
    lines.append("")
    lines.append(f"Pick: {choice.get('pick') or 'none'} ({choice.get('reason')}).")
    return "\n".join(lines) + "\n"
