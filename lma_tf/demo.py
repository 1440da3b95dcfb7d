"""The end-to-end demo on the embedded synthetic cohort (`make demo`).

synthesize -> records -> train the experiments (multitask and the classical
baseline by default; `make paper` trains the paper's comparison) -> evaluate
on the test split (metrics, comparison table, strain/TOS figures) -> export a
SavedModel -> predict the test subjects from their raw files -> 3-D
activation maps, AHA bullseyes and Grad-CAM figures.
"""

from __future__ import annotations

import json
import os

from lma_tf import config as lma_config
from lma_tf import rules
from lma_tf.data import records, synthetic, synthetic_io
from lma_tf.decision import run as decision_run
from lma_tf.evaluation import evaluate, metrics
from lma_tf.serving import export, predict, prediction_csv
from lma_tf.training import train_lib as train
from lma_tf.viz import activation_map, explain


def run_demo(
    output_dir: str,
    num_subjects: int = 120,
    seed: int = 0,
    epochs: int = 40,
    experiments: tuple[str, ...] = ("multitask", "classical"),
    scar_model: str = "passive",
) -> dict:
    """Runs every stage into `output_dir`; returns a summary of what it wrote."""
    cohort_dir = os.path.join(output_dir, "cohort")
    records_dir = os.path.join(output_dir, "records")
    slices = synthetic.generate_cohort(num_subjects, seed, scar_model)
    synthetic_io.write_cohort(slices, cohort_dir, "npz")
    print(f"[demo] synthetic cohort: {len(slices)} slices -> {cohort_dir}")

    manifest = records.make_records(
        [cohort_dir], records.RecordsOptions(output_dir=records_dir, seed=seed)
    )
    counts = {k: v["num_slices"] for k, v in manifest["splits"].items()}
    print(f"[demo] records: {json.dumps(counts)} -> {records_dir}")

    model_dirs = []
    for name in experiments:
        cfg = lma_config.load_experiment(name)
        cfg.seed = seed
        cfg.data.records_dir = records_dir
        cfg.train.epochs = epochs
        model_dir = os.path.join(output_dir, "models", name)
        print(f"[demo] training {name} -> {model_dir}")
        train.train(cfg, model_dir)
        model_dirs.append(model_dir)

    results_dir = os.path.join(output_dir, "results")
    results = evaluate.compare(model_dirs, results_dir, split="test")
    print(f"[demo] test split, written to {results_dir}:")
    print(metrics.comparison_table(results))
    networks = [d for d, n in zip(model_dirs, experiments) if n != "classical"]
    figures = {}
    if networks:
        test_dirs = [
            os.path.join(cohort_dir, subject)
            for subject in manifest["splits"]["test"]["subjects"]
        ]
        figures = serve_and_explain(networks, test_dirs, output_dir, results_dir)
    return {
        "figures": figures,
        "cohort_dir": cohort_dir,
        "records_dir": records_dir,
        "splits": counts,
        "model_dirs": model_dirs,
        "results_dir": results_dir,
        "results": results,
    }


def serve_and_explain(
    networks: list[str], test_dirs: list[str], output_dir: str, results_dir: str
) -> dict:
    """The serving path on the test subjects, as on new patients.

    SavedModel export of the first network -> batch prediction from the raw
    files -> 3-D activation maps + bullseyes -> Grad-CAM of up to two
    networks -> the pacing report of every subject. Returns the figures.
    """
    version_dir = export.export(networks[0], os.path.join(output_dir, "export"))
    predictions = os.path.join(results_dir, "test_predictions.csv")
    predict.predict(version_dir, test_dirs, predictions)
    maps = activation_map.activation_maps_from_csv(
        predictions, os.path.join(results_dir, "activation_maps")
    )
    cams = explain.run_gradcam(
        networks[:2],
        os.path.join(results_dir, "gradcam"),
        slice_ids=_most_late_slices(predictions, 4),
    )
    # The strain of the slice through each top target comes from the raw files.
    reports = decision_run.write_reports(
        [predictions],
        os.path.join(results_dir, "reports"),
        model=decision_run.load_model_info(None, version_dir),
        strain_inputs=test_dirs,
    )
    print(f"[demo] SavedModel {version_dir}; predictions {predictions}")
    print(
        f"[demo] {len(maps)} activation maps/bullseyes, {len(cams['figures'])} "
        f"Grad-CAM figures and {reports['num_subjects']} pacing reports under "
        f"{results_dir}"
    )
    return {
        "activation_maps": maps,
        "gradcam": cams["figures"],
        "reports": [p for p in reports["paths"] if p.endswith(".png")],
    }


def _most_late_slices(predictions_csv: str, n: int) -> list[str]:
    """The `n` slices with the most predicted LMA sectors (worth explaining)."""
    slices = prediction_csv.read(predictions_csv)
    late = [int(rules.lma_call(s.lma_probability).sum()) for s in slices]
    order = sorted(range(len(slices)), key=lambda i: -late[i])
    return [slices[i].slice_id for i in order[:n]]
