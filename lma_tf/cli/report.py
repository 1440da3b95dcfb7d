"""`lma-tf report`: per-subject pacing-target reports from prediction CSVs.

  lma-tf report --predictions=P.csv[,P2.csv,...] --output_dir=R
      [--scar=LGE_segments.csv] [--sector0=rv_insertion|segment1]
      [--sector_offset=0] [--direction=ccw|cw] [--base_at=high|low]
      [--model_info=INFO.json | --saved_model=E] [--input=RAW ...]
      [--temperature=1 | --calibrate_on=VAL.csv | --calibration=metrics.json]

Several CSVs of the same inputs (seeds, folds) are an ensemble: their
spread gives each sector a 90 % TOS interval. Writes R/<subject>/report.json
and report.png, R/cohort_summary.csv/.json and, on labelled data, the
decision metrics, R/reliability.png and R/decision_quality.png. Also
`python -m lma_tf.cli.report` and `python tools/report.py`. The work is
`lma_tf.decision.run.write_reports`; see docs/decision.md.
"""

from __future__ import annotations

import sys

from absl import flags

from lma_tf.cli import orientation_flags
from lma_tf.cli.orientation_flags import DIRECTIONS, SECTOR0  # noqa: F401 (checked)

NOTICE = "Research use only \u2014 not a medical device"

_PREDICTIONS = flags.DEFINE_list(
    "predictions", None, "Prediction CSV(s) of the same inputs, comma-separated."
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "report", "Where the report goes.")
_SCAR = flags.DEFINE_string(
    "scar", None, "LGE segment table: subject_id, segment, scar_fraction|scar_percent."
)
_SECTOR0, _SECTOR_OFFSET, _DIRECTION = orientation_flags.define()
flags.adopt_module_key_flags(orientation_flags)
_BASE_AT = flags.DEFINE_enum(
    "base_at", "high", ["high", "low"], "Which slice_location end is the base."
)
_MODEL_INFO = flags.DEFINE_string(
    "model_info", None, "JSON describing the model, recorded in report.json."
)
_SAVED_MODEL = flags.DEFINE_string(
    "saved_model", None, "Export (dir or version) whose export info to record."
)
_INPUT = flags.DEFINE_multi_string(
    "input", None, "Raw input file/dir (repeatable): draws the target's strain."
)
_ALLOW_PICKLE = flags.DEFINE_bool(
    "allow_pickle", False, "Read pickled .npy inputs (pickle runs code)."
)
_TEMPERATURE = flags.DEFINE_float(
    "temperature", 1.0, "Temperature applied to the LMA logits (1: none)."
)
_CALIBRATE_ON = flags.DEFINE_string(
    "calibrate_on", None, "Labelled validation CSV to fit the temperature on."
)
_CALIBRATION = flags.DEFINE_string(
    "calibration",
    None,
    "metrics.json of `lma-tf evaluate`: its validation-fitted P(LMA) calibration "
    "and, for a single CSV, its 90% TOS interval.",
)


def _print_result(result: dict) -> None:
    print(f"[report] orientation: {result['orientation']}")
    if result["temperature"] != 1.0:
        print(f"[report] temperature {result['temperature']:.3f}")
    from lma_tf import textsafe
    from lma_tf.decision import report

    for r in result["results"]:
        print(f"[report] {textsafe.clean(r.subject_id)}: {r.decision.summary()}")
    m = result["decision_metrics"]
    if m:
        print(
            f"[report] {m['num_subjects']} labelled subjects: top-1 "
            f"{m['top1_accuracy']:.3f}, top-2 {m['top2_accuracy']:.3f}, "
            f"adjacent {m['adjacent_accuracy']:.3f}, first target within "
            f"{report.NEAR_MS:g} ms of the latest {m['within_5ms_accuracy']:.3f}"
        )

        def share(key: str) -> str:  # None: no subject was given a target
            return "n/a" if m[key] is None else f"{m[key]:.3f}"

        print(
            f"[report] first target or a near-tie is the true one: "
            f"{share('tie_set_accuracy')}; of the subjects given a target, "
            f"{share('decisive_share')} have no near-tie, their top-1 "
            f"{share('decisive_top1_accuracy')}"
        )
        bands = ", ".join(
            f"{b['band']}: {b['num_subjects']} at top-1 "
            + ("n/a" if b["top1_accuracy"] is None else f"{b['top1_accuracy']:.3f}")
            for b in m["top1_by_true_margin"]
        )
        print(f"[report] by the true target's margin over the next choice: {bands}")
    c = result["calibration"]
    if c:
        cov = c["tos_interval_coverage"]
        cov_text = "n/a (one model)" if cov is None else f"{cov:.3f}"
        print(f"[report] ECE {c['ece']:.4f}; 90% TOS interval coverage {cov_text}")
    print(f"[report] wrote {len(result['paths'])} files to {result['output_dir']}")


def main(argv: list[str]) -> None:
    """Validates the flags, then `lma_tf.decision.run.write_reports`."""
    from lma_tf.errors import LmaError, UsageError

    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]} (flags only)")
    if not _PREDICTIONS.value:
        raise UsageError("--predictions is required")
    print(f"[report] {NOTICE}", file=sys.stderr)

    from lma_tf.decision import run

    orientation = orientation_flags.orientation(
        _SECTOR0.value, _SECTOR_OFFSET.value, _DIRECTION.value
    )
    try:
        result = run.write_reports(
            _PREDICTIONS.value,
            _OUTPUT_DIR.value,
            orientation=orientation,
            base_at_high=_BASE_AT.value == "high",
            scar_table=_SCAR.value,
            model=run.load_model_info(_MODEL_INFO.value, _SAVED_MODEL.value),
            strain_inputs=_INPUT.value or (),
            allow_pickle=_ALLOW_PICKLE.value,
            temperature=_TEMPERATURE.value,
            calibrate_on=_CALIBRATE_ON.value,
            calibration_file=_CALIBRATION.value,
        )
    except FileNotFoundError:
        raise  # cli.run: a usage error (a missing input)
    except OSError as e:
        raise LmaError(str(e)) from e
    _print_result(result)


if __name__ == "__main__":
    from lma_tf import cli

    cli.run("report", main)
