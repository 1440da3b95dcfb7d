"""Evaluation on a split: the paper's metrics, per-slice CSV and figures.

  python -m lma_tf.evaluation.evaluate --model_dir=M --records_dir=D --split=test --output_dir=R
  python -m lma_tf.evaluation.evaluate --compare=M1,M2,M3 --records_dir=D --output_dir=R

R/metrics.json, R/per_slice.csv, R/figures/*.png; with --compare,
R/comparison.md, R/comparison.json and R/comparison.png.
"""

from __future__ import annotations

import json
import os
import sys

import ml_collections
import numpy as np
import tqdm

from lma_tf import atomic, constants
from lma_tf.data import pipeline, preprocess
from lma_tf.evaluation import metrics
from lma_tf.models import classical
from lma_tf.training import train_lib as train
from lma_tf.viz import plots

N = constants.NUM_SECTORS


def predict_split(
    config: ml_collections.ConfigDict, model_dir: str, split: str
) -> dict[str, np.ndarray]:
    """Runs the experiment of `model_dir` over a split (126 sectors out).

    Returns arrays: strain (N,126,T), num_frames, true_tos, true_lma, scar,
    has_scar, weight, subject_id, slice_id, slice_location, and the
    predictions pred_tos (or None), lma_probability, combined_tos (or None).
    """
    kind = config.model.kind
    ds = pipeline.make_dataset(config, split, training=False, include_metadata=True)
    net = None if kind == "classical" else train.restore_best(config, model_dir)
    params = _classical_params(config, model_dir) if kind == "classical" else None
    cols: dict[str, list] = {}
    for feats, labels, weights in tqdm.tqdm(ds, desc=f"predict {split}", unit="batch"):
        strain = feats["strain"].numpy()
        batch = {
            "strain": strain[:, :N],
            "num_frames": feats["num_frames"].numpy(),
            "true_tos": labels["tos"].numpy()[:, :N],
            "true_lma": labels["lma"].numpy()[:, :N],
            "scar": feats["scar"].numpy()[:, :N],
            "has_scar": feats["has_scar"].numpy(),
            "weight": weights["tos"].numpy()[:, :N],
            "subject_id": feats["subject_id"].numpy(),
            "slice_id": feats["slice_id"].numpy(),
            "slice_location": feats["slice_location"].numpy(),
        }
        if net is not None:
            out = net(strain, training=False)
            tos = out["tos"].numpy()[:, :N] if "tos" in out else None
            if "lma" in out:
                prob = metrics.lma_probability(out["lma"].numpy()[:, :N])
            else:  # regression only: late = TOS above the floor
                prob = metrics.lma_from_tos(tos).astype(np.float64)
        else:
            # Frames before the zero padding, in the pipeline's 17 ms grid.
            frames = np.array(
                [
                    preprocess.real_frames(x[:N], n)
                    for x, n in zip(strain, batch["num_frames"])
                ]
            )
            tos = classical.detect_batch(strain[:, :N], frames, **params)
            prob = metrics.lma_from_tos(tos).astype(np.float64)
        batch["pred_tos"] = tos
        batch["lma_probability"] = prob
        for k, v in batch.items():
            cols.setdefault(k, []).append(v)
    out = {
        k: (None if any(x is None for x in v) else np.concatenate(v))
        for k, v in cols.items()
    }
    out["combined_tos"] = (
        None
        if out["pred_tos"] is None
        else metrics.combine_tos(out["pred_tos"], out["lma_probability"])
    )
    return out


def _classical_params(config: ml_collections.ConfigDict, model_dir: str) -> dict:
    path = os.path.join(model_dir, train.CLASSICAL_JSON)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return classical.params_from_config(config)


def evaluate(
    model_dir: str,
    output_dir: str,
    records_dir: str = "",
    split: str = "test",
    num_figures: int = 6,
) -> dict:
    """Scores one trained experiment; writes metrics.json, CSV and figures."""
    config = train.load_config(model_dir)
    if records_dir:
        config.data.records_dir = records_dir
    p = predict_split(config, model_dir, split)
    pred_lma = (p["lma_probability"] >= 0.5).astype(np.int64)
    # The positional arrays of metrics.sector_metrics / per_slice_rows.
    arrays = (
        p["true_tos"],
        p["pred_tos"],
        p["combined_tos"],
        p["true_lma"],
        pred_lma,
        p["scar"],
        p["has_scar"],
        p["weight"],
    )
    result = metrics.sector_metrics(*arrays, float(config.data.frame_period_ms))
    ids = list(zip(p["subject_id"], p["slice_id"]))
    result.update(
        {
            "experiment": config.name,
            "split": split,
            "num_slices": len(ids),
            "num_subjects": len({s for s, _ in ids}),
            "num_labelled_slices": int((p["weight"].sum(axis=1) > 0).sum()),
        }
    )
    os.makedirs(output_dir, exist_ok=True)
    metrics.write_json(result, os.path.join(output_dir, "metrics.json"))
    rows = metrics.per_slice_rows(ids, *arrays)
    metrics.write_csv(rows, os.path.join(output_dir, "per_slice.csv"))
    _figures(p, output_dir, num_figures)
    return result


def _figures(p: dict, output_dir: str, num_figures: int) -> None:
    """Strain + TOS figures: scarred slices first (where the heads disagree)."""
    fig_dir = os.path.join(output_dir, "figures")
    scar_first = np.argsort(
        -(p["scar"] >= constants.SCAR_THRESHOLD).sum(axis=1), kind="stable"
    )
    for i in scar_first[:num_figures]:
        subject = p["subject_id"][i].decode()
        slice_id = p["slice_id"][i].decode()
        frames = preprocess.real_frames(p["strain"][i], int(p["num_frames"][i]))
        plots.plot_strain_tos(
            p["strain"][i][:, :frames],
            true_tos=p["true_tos"][i],
            pred_tos=None if p["pred_tos"] is None else p["pred_tos"][i],
            combined_tos=None if p["combined_tos"] is None else p["combined_tos"][i],
            scar_fraction=p["scar"][i] if p["has_scar"][i] else None,
            title=f"{subject} / {slice_id}",
            path=os.path.join(fig_dir, f"{subject}_{slice_id}.png"),
        )


def compare(
    model_dirs: list[str], output_dir: str, records_dir: str = "", split: str = "test"
) -> dict[str, dict]:
    """Evaluates several experiments on the same records; writes the table."""
    results = {}
    for model_dir in model_dirs:
        name = train.load_config(model_dir).name
        if name in results:  # two runs of one experiment: tell them apart
            name = f"{name} ({os.path.basename(os.path.normpath(model_dir))})"
        sub = os.path.join(output_dir, plots.safe_filename(name))
        results[name] = evaluate(model_dir, sub, records_dir, split)
    table = metrics.comparison_table(results)
    os.makedirs(output_dir, exist_ok=True)
    atomic.write_text(os.path.join(output_dir, "comparison.md"), table + "\n")
    metrics.write_json(results, os.path.join(output_dir, "comparison.json"))
    plots.plot_comparison(
        results,
        ["tos_mae_ms", "tos_mae_ms_scar", "combined_tos_mae_ms", "lma_accuracy"],
        os.path.join(output_dir, "comparison.png"),
    )
    return results


def main(argv: list[str]) -> None:
    from lma_tf.cli import quiet_logs

    quiet_logs()
    del argv
    from absl import flags

    f = flags.FLAGS
    try:
        if f.compare:
            results = compare(f.compare, f.output_dir, f.records_dir, f.split)
            print(metrics.comparison_table(results))
        else:
            if not f.model_dir:
                sys.exit("evaluate: error: --model_dir or --compare is required")
            result = evaluate(
                f.model_dir, f.output_dir, f.records_dir, f.split, f.num_figures
            )
            print(json.dumps(result, indent=2))
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"evaluate: error: {e}")


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("model_dir", "", "A trained model directory.")
    flags.DEFINE_list("compare", [], "Several model directories to compare.")
    flags.DEFINE_string("records_dir", "", "Records (default: the one trained on).")
    flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split to score.")
    flags.DEFINE_string("output_dir", "results", "Where results go.")
    flags.DEFINE_integer("num_figures", 6, "Strain/TOS figures to draw.")


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
