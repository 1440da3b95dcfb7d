"""Ranking of pacing targets, exclusions with reasons, and the labelled answer."""

from __future__ import annotations

from decision_samples import predicted

from lma_tf import rules
from lma_tf.decision import report, segments, targets, uncertainty


def _decision(slices):
    table = segments.subject_segments(uncertainty.as_ensemble(slices))
    return table, targets.rank_targets(table)


def _subject(basal=(), mid=(), **kw):
    """Basal/mid/apical slices; `basal`/`mid`: (sectors, TOS, P) late regions."""
    out = []
    for name, loc, regions in (("b", 30.0, basal), ("m", 20.0, mid), ("a", 10.0, ())):
        s = predicted("p", name, loc, **kw)
        for sectors, tos, prob in regions:
            s.tos_ms[list(sectors)] = tos
            s.lma_probability[list(sectors)] = prob
            if s.true_tos_ms is not None:
                s.true_tos_ms[list(sectors)] = tos
        s.combined_tos_ms = rules.combine_tos(s.tos_ms, s.lma_probability)
        out.append(s)
    return out


def test_latest_scar_free_confident_segment_first():
    slices = _subject(
        basal=[(range(63, 84), 120.0, 0.9), (range(84, 105), 90.0, 0.95)],
        mid=[(range(63, 84), 90.0, 0.99)],
    )
    _, d = _decision(slices)
    # 5 (120 ms) first; 11 and 6 tie on 90 ms: the higher P(LMA) first.
    assert d.segments == [5, 11, 6]
    assert [t.rank for t in d.targets] == [1, 2, 3]
    top = d.recommended
    assert top.name == "basal inferolateral" and top.tos_median_ms == 120.0
    assert top.reason.startswith("latest-activating scar-free segment: median TOS 120")
    assert "scar 0.00 (data)" in top.reason
    assert d.summary() == "segment 5 (basal inferolateral), median TOS 120 ms"
    excluded = {e.segment: e.reasons for e in d.excluded}
    assert set(excluded) == set(range(1, 17)) - {5, 6, 11}
    assert excluded[1] == ["not late: median TOS 17 ms (late means after 18 ms)"]
    assert d.num_late == 3


def test_scar_and_low_confidence_are_excluded_never_first():
    slices = _subject(
        basal=[(range(63, 84), 130.0, 0.55), (range(84, 105), 125.0, 0.95)],
        mid=[(range(63, 84), 60.0, 0.9)],
        scar=range(84, 105),
    )
    table, d = _decision(slices)
    excluded = {e.segment: e.reasons for e in d.excluded}
    # 5 is the latest but its calls sit on the threshold: low confidence.
    assert excluded[5][0].startswith("low confidence: P(LMA) within 0.15")
    # 6 is scar: excluded, whatever its TOS.
    assert excluded[6][0].startswith("scar 0.80 >= 0.5 (data)")
    assert d.segments == [11]
    assert d.recommended.segment == 11
    # The labelled answer skips scar but not low confidence: 5 (130 ms).
    assert targets.true_target(table) == 5


def test_no_late_activation_means_no_target():
    table, d = _decision(_subject())
    assert d.targets == [] and d.recommended is None
    assert d.summary() == "no target: no late-activating segment"
    assert targets.true_target(table) is None
    scarred = _subject(basal=[(range(84, 105), 125.0, 0.95)], scar=range(84, 105))
    assert _decision(scarred)[1].summary() == (
        "no target: every late segment is scar or low-confidence"
    )


def test_unknown_scar_is_said():
    slices = _subject(basal=[(range(63, 84), 120.0, 0.9)], labelled=False)
    _, d = _decision(slices)
    assert d.recommended.segment == 5
    assert "scar unknown (no LGE data)" in d.recommended.reason


def test_decision_to_dict():
    d = _decision(_subject(basal=[(range(63, 84), 120.0, 0.9)]))[1].to_dict()
    assert d["recommended"] == 5 and d["num_late_segments"] == 1
    assert d["targets"][0]["segment"] == 5 and len(d["excluded"]) == 15
    assert report.json_ready({"a": float("nan"), "b": [1.0]}) == {"a": None, "b": [1.0]}


def test_targets_within_5ms_of_the_first_are_its_near_ties():
    slices = _subject(
        basal=[(range(63, 84), 120.0, 0.9), (range(84, 105), 115.0, 0.95)],
        mid=[(range(63, 84), 114.9, 0.99)],
    )
    _, d = _decision(slices)
    # 6 is exactly 5 ms before 5 (a near-tie); 11 is 5.1 ms before (not one).
    assert d.segments == [5, 6, 11]
    assert [t.segment for t in d.near_ties] == [6]
    assert d.summary() == (
        "segment 5 (basal inferolateral), median TOS 120 ms; near-tie within "
        "5 ms: segment 6 (basal anterolateral)"
    )
    assert d.to_dict()["near_ties"] == [6]
    alone = _decision(_subject(basal=[(range(63, 84), 120.0, 0.9)]))[1]
    assert alone.near_ties == [] and alone.to_dict()["near_ties"] == []
    assert _decision(_subject())[1].near_ties == []
