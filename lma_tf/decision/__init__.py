"""From per-sector predictions to the pacing decision (see docs/decision.md).

- `orientation`: where the sectors sit on the ventricle, and the AHA
  16-segment mapping that follows from it (DENSEanalysis reference points
  included).
- `uncertainty`: ensembles of prediction CSVs and MC dropout, turned into a
  per-sector median, probability and 90 % interval; low-confidence rules.
- `calibration`: temperature scaling, isotonic regression, ECE, interval
  coverage.
- `segments`: one subject's per-segment table; the LGE segment table.
- `targets`: the ranked pacing targets and the excluded segments, with reasons.
- `report`: report.json, the cohort summary and the decision metrics
  (`decision_metrics`); `run` writes a report folder (`lma-tf report`).

Nothing is imported here, so `import lma_tf.decision.orientation` stays light.
"""
