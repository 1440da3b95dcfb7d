"""Writes a report folder from prediction CSVs: what `lma-tf report` runs.

  R/
    cohort_summary.csv      one line per subject (`report.COHORT_COLUMNS`)
    cohort_summary.json     the same, the orientation, the decision metrics
                            and the calibration (labelled data)
    reliability.png         reliability diagram of P(LMA) (labelled data)
    decision_quality.png    top-1 / top-2 by the true margin (labelled data)
    <subject>/report.json   the subject's report (`report.SCHEMA`)
    <subject>/report.png    its one-page figure (`lma_tf.viz.report_page`)

Subject folders are named by `textsafe.safe_name`, so an id cannot write
outside R. See docs/decision.md.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence

import numpy as np
import tqdm
from absl import logging

from lma_tf import atomic, constants, rules, textsafe
from lma_tf.decision import calibration, report, uncertainty
from lma_tf.decision import orientation as orientation_lib
from lma_tf.decision.orientation import Orientation
from lma_tf.decision.segments import read_segment_scar
from lma_tf.errors import UsageError
from lma_tf.serving import prediction_csv

COHORT_CSV = "cohort_summary.csv"
COHORT_JSON = "cohort_summary.json"
RELIABILITY_PNG = "reliability.png"
REPORT_JSON = "report.json"
REPORT_PNG = "report.png"
# Where an export keeps its description (`lma_tf.serving.layout.EXPORT_INFO`).
EXPORT_INFO = os.path.join("assets.extra", "lma_tf_export.json")
_MODEL_FIELDS = ("format", "version", "model_kind", "source_model_dir", "tensorflow")


def load_model_info(
    model_info: str | None = None, saved_model: str | None = None
) -> dict | None:
    """What the report records about the model, or None when nothing is given.

    `model_info`: a JSON file (an object) recorded as is. `saved_model`: an
    export version dir, or an export dir (its highest version), whose
    `assets.extra/lma_tf_export.json` gives format, version, model kind,
    source run and the config's name.

    Raises:
      UsageError: the file is missing, not JSON, or not an object.
    """
    if model_info and saved_model:
        raise UsageError("give --model_info or --saved_model, not both")
    if saved_model:
        path = os.path.join(saved_model, EXPORT_INFO)
        if not os.path.isfile(path) and os.path.isdir(saved_model):
            versions = [n for n in os.listdir(saved_model) if n.isdigit()]
            versions = [
                v
                for v in versions
                if os.path.isfile(os.path.join(saved_model, v, EXPORT_INFO))
            ]
            if versions:
                path = os.path.join(saved_model, max(versions, key=int), EXPORT_INFO)
        info = _read_json_object(path, f"{saved_model} has no {EXPORT_INFO}")
        out = {k: info[k] for k in _MODEL_FIELDS if k in info}
        config = info.get("config") or {}
        out["config_name"] = config.get("name") if isinstance(config, dict) else None
        out["export_info"] = os.path.abspath(path)
        return out
    if model_info:
        return {"model_info": os.path.abspath(model_info)} | _read_json_object(
            model_info, f"model info file not found: {model_info}"
        )
    return None


def _read_json_object(path: str, missing: str) -> dict:
    if not os.path.isfile(path):
        raise UsageError(missing)
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return value


def read_strains(
    inputs: Sequence[str], allow_pickle: bool = False
) -> dict[tuple[str, str], tuple[np.ndarray, float]]:
    """(subject, slice) -> (strain matrix, frame period) of raw input files.

    Bad files or slices are logged and skipped: the strain only adds a panel.
    """
    from lma_tf.data import slices as slices_lib
    from lma_tf.data import sources
    from lma_tf.data.slices import Reject

    out = {}
    for item in sources.read_sources(list(inputs), allow_pickle):
        if isinstance(item, Reject):
            logging.warning("strain input skipped: %s", textsafe.clean(item))
            continue
        try:
            s = slices_lib.validate_slice(item)
        except ValueError as e:
            logging.warning("strain input skipped: %s", textsafe.clean(e))
            continue
        out[(s.subject_id, s.slice_id)] = (s.strain_matrix, float(s.frame_period_ms))
    return out


def fit_temperature_on(path: str) -> float:
    """The temperature fitted on a labelled prediction CSV (the validation split).

    Raises:
      UsageError: the file has no labelled sector of both classes.
    """
    slices = [s for s in prediction_csv.read(path) if s.true_tos_ms is not None]
    if not slices:
        raise UsageError(f"{path}: no true_tos_ms: cannot fit a temperature on it")
    prob = np.stack([s.lma_probability for s in slices])
    labels = np.stack(
        [rules.lma_labels(s.true_tos_ms, s.scar_fraction) for s in slices]
    )
    ok = np.isfinite(np.stack([s.true_tos_ms for s in slices]))
    try:
        return calibration.fit_temperature(
            calibration.logits_from_probability(prob), np.where(ok, labels, np.nan)
        )
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None


def _write_csv(path: str, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=report.COHORT_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: "" if v is None else v for k, v in row.items()})
    atomic.write_text(path, buf.getvalue())


def _reliability(results, temperature: float, path: str) -> str | None:
    """reliability.png of the labelled sectors (raw and calibrated when T != 1)."""
    from lma_tf.viz import reliability

    ens = [s for r in results for s in r.slices if s.true_tos_ms is not None]
    if not ens:
        return None
    prob, labels = report.labelled_probabilities(ens)
    curves = {"P(LMA)": prob}
    if temperature != 1.0:
        raw = calibration.rescale_probability(prob, 1.0 / temperature)
        curves = {"raw": raw, f"temperature {temperature:.2f}": prob}
    return reliability.plot_reliability(curves, labels, path)


def load_calibration(path: str) -> tuple:
    """(P(LMA) calibrator, TOS interval rule or None) of an evaluate metrics.json.

    metrics.json holds `lma_calibration` (`calibration.Calibrator.to_dict`,
    fitted on the validation split) and `tos_interval`
    (`intervals.ConformalInterval.to_dict`); an unfitted one (method "none"
    or null, with its reason) gives the identity / None.

    Raises:
      UsageError: the file is missing, not JSON, or holds no calibration.
    """
    from lma_tf.decision import intervals

    doc = _read_json_object(path, f"calibration file not found: {path}")
    if "lma_calibration" not in doc:
        raise UsageError(f"{path}: no lma_calibration (a metrics.json of evaluate?)")
    try:
        calibrator = calibration.Calibrator.from_dict(doc["lma_calibration"])
        tos = doc.get("tos_interval") or {}
        rule = intervals.ConformalInterval.from_dict(tos) if tos.get("method") else None
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{path}: bad calibration ({e})") from None
    return calibrator, rule


def _temperature(temperature: float, calibrate_on: str | None) -> float:
    """The temperature to apply: given, or fitted on `calibrate_on`."""
    if calibrate_on:
        if temperature != 1.0:
            raise UsageError("give --temperature or --calibrate_on, not both")
        temperature = fit_temperature_on(calibrate_on)
    if not temperature > 0:
        raise UsageError(f"--temperature must be > 0, got {temperature}")
    return temperature


def _read(
    predictions: Sequence[str], temperature: float, calibrator=None, interval=None
) -> list:
    if not predictions:
        raise UsageError("no prediction CSV given")
    try:
        slices = uncertainty.read_ensemble(
            predictions, temperature, calibrator, interval
        )
    except ValueError as e:  # not a prediction CSV, members differ, bad orientation
        raise UsageError(str(e)) from None
    if not slices:
        raise UsageError(f"{predictions[0]}: no prediction rows")
    return slices


def _tos_range(slices) -> tuple[float, float]:
    """17 ms to the cohort's latest combined TOS rounded up to 10 ms."""
    top = max(float(np.nanmax(s.combined_tos_ms)) for s in slices)
    top = max(top, rules.LATE_TOS_MS)
    return (constants.TOS_FLOOR_MS, 10.0 * float(np.ceil(top / 10.0)))


def _write_subjects(
    results, output_dir: str, docs: dict, page: dict, strains, progress: bool
) -> list[str]:
    """report.json and report.png of every subject; returns the paths."""
    from lma_tf.viz import report_page

    paths = []
    for r in tqdm.tqdm(results, desc="reports", unit="subject", disable=not progress):
        folder = textsafe.inside(output_dir, textsafe.safe_name(r.subject_id))
        doc = report.json_ready(report.subject_report(r, **docs))
        paths.append(atomic.write_json(os.path.join(folder, REPORT_JSON), doc))
        own = {k[1]: v for k, v in strains.items() if k[0] == r.subject_id}
        png = os.path.join(folder, REPORT_PNG)
        paths.append(report_page.plot_report_page(r, png, strains=own, **page))
    return paths


def _write_cohort(results, slices, output_dir: str, header: dict) -> dict:
    """cohort_summary.csv/.json, reliability.png and decision_quality.png;
    returns the cohort document."""
    rows = [report.cohort_row(r) for r in results]
    labelled = any(r.labelled for r in results)
    calib = report.sector_calibration(slices) if labelled else None
    if calib is not None:
        calib["temperature"] = header["temperature"]
        rule = header.get("tos_interval_rule")
        if rule and calib["ensemble_members"] == 1:
            calib["tos_interval"] = (
                f"{100 * rule['level']:g}% split-conformal, constant width "
                f"+-{rule['residual_quantile_ms']:.1f} ms (fitted on validation)"
            )
    cohort = {
        "schema": report.COHORT_SCHEMA,
        "schema_version": report.SCHEMA_VERSION,
        "notice": report.BANNER,
        **header,
        "subjects": rows,
        "decision_metrics": report.metrics_from_results(results) if labelled else None,
        "calibration": calib,
    }
    os.makedirs(output_dir, exist_ok=True)
    paths = [
        os.path.join(output_dir, COHORT_CSV),
        os.path.join(output_dir, COHORT_JSON),
    ]
    _write_csv(paths[0], rows)
    atomic.write_json(paths[1], report.json_ready(cohort))
    if labelled:
        png = os.path.join(output_dir, RELIABILITY_PNG)
        if _reliability(results, header["temperature"], png):
            paths.append(png)
        from lma_tf.viz import decision_quality

        png = decision_quality.write_if_targets(cohort["decision_metrics"], output_dir)
        if png:
            paths.append(png)
    cohort["paths"] = paths
    return cohort


def write_reports(
    predictions: Sequence[str],
    output_dir: str,
    *,
    orientation: Orientation = orientation_lib.DEFAULT,
    base_at_high: bool = True,
    scar_table: str | None = None,
    model: dict | None = None,
    strain_inputs: Sequence[str] = (),
    allow_pickle: bool = False,
    temperature: float = 1.0,
    calibrate_on: str | None = None,
    calibration_file: str | None = None,
    progress: bool = True,
) -> dict:
    """Reads the CSVs, analyses every subject and writes the report folder.

    Several `predictions` are an ensemble of the same inputs. `temperature`
    rescales P(LMA); `calibrate_on` (a labelled CSV, the validation split)
    fits it instead; `calibration_file` (an evaluate metrics.json, see
    `load_calibration`) applies the calibration fitted there and, to a
    single CSV, its constant-width 90 % TOS interval. Returns {"output_dir",
    "num_subjects", "temperature",
    "orientation" (its description), "decision_metrics", "calibration",
    "results" (the `report.SubjectResult`s), "paths" (every file written)}.

    Raises:
      UsageError: no predictions, a bad file (named), or members that differ.
    """
    temperature = _temperature(temperature, calibrate_on)
    calibrator = interval = None
    if calibration_file:
        if temperature != 1.0:
            raise UsageError(
                "give --calibration or --temperature / --calibrate_on, not both"
            )
        calibrator, interval = load_calibration(calibration_file)
        temperature = calibrator.temperature
    slices = _read(predictions, temperature, calibrator, interval)
    lge = read_segment_scar(scar_table) if scar_table else None
    strains = read_strains(strain_inputs, allow_pickle) if strain_inputs else {}
    results = report.analyse(slices, orientation, base_at_high, lge)
    unknown = sorted(set(lge or {}) - {r.subject_id for r in results})
    if unknown:
        logging.warning("LGE table subjects not in the predictions: %s", unknown[:5])
    inputs = {
        "predictions": [os.path.abspath(p) for p in predictions],
        "lge_table": os.path.abspath(scar_table) if scar_table else None,
        "strain_inputs": [os.path.abspath(p) for p in strain_inputs],
        "calibrated_on": os.path.abspath(calibrate_on) if calibrate_on else None,
        "calibration": (
            os.path.abspath(calibration_file) if calibration_file else None
        ),
    }
    docs = {
        "orientation": orientation,
        "base_at_high": base_at_high,
        "inputs": inputs,
        "model": model,
        "temperature": temperature,
    }
    page = {
        "orientation": orientation,
        "base_at_high": base_at_high,
        "tos_range": _tos_range(slices),
    }
    paths = _write_subjects(results, output_dir, docs, page, strains, progress)
    header = {
        "orientation": orientation.to_dict(),
        "base_at": "high" if base_at_high else "low",
        "model": model,
        "inputs": inputs,
        "temperature": temperature,
        "lma_calibration": calibrator.to_dict() if calibrator else None,
        "tos_interval_rule": interval.constant().to_dict() if interval else None,
    }
    cohort = _write_cohort(results, slices, output_dir, header)
    return {
        "output_dir": output_dir,
        "num_subjects": len(results),
        "temperature": temperature,
        "orientation": orientation.describe(),
        "decision_metrics": cohort["decision_metrics"],
        "calibration": cohort["calibration"],
        "results": results,
        "paths": paths + cohort["paths"],
    }
