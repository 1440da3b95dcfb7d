"""`lma-tf frontier`: train candidate networks, score them on val, pick the default.

For each experiment: train it on the records' train split (checkpoint
selected on val, as `lma-tf train` does) into `runs_dir/<experiment>` (a
finished run of the same config is reused, an interrupted one resumed),
evaluate it on the **val** split, and measure its cost
(`evaluation.cost`). Then write to `output_dir`:

  frontier.md    the table (cost + val combined MAE + val LMA accuracy) and
                 the pick of the rule (`evaluation.frontier.pick`)
  frontier.json  the same rows, the rule's inputs and its answer
  frontier.png   combined MAE against FLOPs, frontier and pick marked
  val/<name>/    each run's evaluation (metrics.json, per-slice CSV)

The test split is never read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import ml_collections

from lma_tf import atomic, textsafe
from lma_tf import config as lma_config
from lma_tf.evaluation import frontier

SPLIT = "val"


def experiment_config(
    name: str, records_dir: str, epochs: int | None = None
) -> ml_collections.ConfigDict:
    """The config `lma-tf train --config=NAME --records_dir=D` would train.

    `epochs`, if given, is `--config.train.epochs`.
    """
    config = lma_config.load_experiment(name)
    config.data.records_dir = records_dir
    if epochs:
        config.train.epochs = int(epochs)
    return lma_config.validate_config(config)


def run_frontier(
    experiments: Sequence[str],
    records_dir: str,
    output_dir: str,
    runs_dir: str,
    epochs: int | None = None,
    mae_tol_ms: float = frontier.MAE_TOL_MS,
    acc_tol: float = frontier.ACC_TOL,
    log: Callable[[str], None] = lambda line: None,
) -> dict:
    """Trains, scores on val and costs each experiment; writes the frontier.

    Returns {"rows": one dict per experiment, "choice": `frontier.pick`'s
    answer, "epochs", "split": "val"}.
    """
    from lma_tf.evaluation import cost, evaluate
    from lma_tf.training import train_lib
    from lma_tf.viz import frontier as frontier_fig

    if not experiments:
        raise ValueError("no experiments to compare")
    rows = []
    for name in experiments:
        config = experiment_config(name, records_dir, epochs)
        model_dir = os.path.join(runs_dir, textsafe.safe_name(config.name))
        log(f"[frontier] {config.name}: training into {model_dir}")
        train_lib.train(config, model_dir, progress=False, log=log)
        result = evaluate.evaluate(
            model_dir,
            os.path.join(output_dir, SPLIT, textsafe.safe_name(config.name)),
            records_dir,
            SPLIT,
            num_figures=0,
        )
        log(f"[frontier] {config.name}: measuring cost")
        row = {
            "name": config.name,
            "model_dir": os.path.abspath(model_dir),
            **cost.network_cost(config),
            frontier.MAE: result.get(frontier.MAE),
            frontier.ACC: result.get(frontier.ACC),
            "tos_mae_ms": result.get("tos_mae_ms"),
        }
        rows.append(row)
        log(f"[frontier] {row}")
    choice = frontier.pick(rows, mae_tol_ms, acc_tol)
    os.makedirs(output_dir, exist_ok=True)
    atomic.write_text(
        os.path.join(output_dir, "frontier.md"), frontier.markdown(rows, choice)
    )
    out = {
        "split": SPLIT,
        "records_dir": os.path.abspath(records_dir),
        "epochs": epochs,
        "rule": {"mae_tol_ms": mae_tol_ms, "acc_tol": acc_tol},
        "rows": rows,
        "frontier": frontier.pareto_front(rows),
        "choice": choice,
    }
    atomic.write_json(os.path.join(output_dir, "frontier.json"), out)
    if frontier.plottable(rows):
        frontier_fig.plot_frontier(
            rows, os.path.join(output_dir, "frontier.png"), picked=choice["pick"]
        )
    return out
