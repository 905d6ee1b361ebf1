"""compare_step: the checks in the reference order, the first failing kind wins."""

from __future__ import annotations

import pytest

from pytest_replay.compare import Drift, Policy, compare_step
from pytest_replay.compare.steps import CHECK_ORDER

RECORDED = {
    "message": "Original output",
    "metrics": {"tokens": 100, "cost": 1.00, "latency_ms": 100},
    "attestation_ids": ["att-1"],
}
EVENTS = [{"kind": "tool.run", "payload": {"stdout": "hello"}}]


def changed(**fields):
    out = {**RECORDED, "metrics": dict(RECORDED["metrics"])}
    for key, value in fields.items():
        if key in out["metrics"]:
            out["metrics"][key] = value
        else:
            out[key] = value
    return out


def test_identical_rerun_passes_with_a_merged_payload():
    result = compare_step(
        RECORDED,
        changed(),
        step="plan",
        recorded_tool_events=EVENTS,
        current_tool_events=[dict(e) for e in EVENTS],
    )
    assert result.ok
    assert result.payload["step"] == "plan"
    assert result.payload["attestation_ids"] == ["att-1"]
    assert result.payload["tool_events"] == 1
    assert result.payload["metrics"]["tokens"]["delta"] == 0.0


def test_one_percent_drift_passes_at_one_percent_and_fails_at_zero():
    drifted = changed(tokens=100.5, cost=1.009)
    assert compare_step(RECORDED, drifted, step="plan", tolerance=Drift(0.01, 0.01)).ok
    result = compare_step(RECORDED, drifted, step="plan", tolerance=Drift(0, 0))
    assert not result.ok and result.kind == "replay_drift"


def test_tolerance_may_be_a_mapping_or_a_number():
    drifted = changed(tokens=104)
    assert compare_step(RECORDED, drifted, tolerance={"tokens": 0.05}).ok
    assert compare_step(RECORDED, drifted, tolerance=0.05).ok
    assert not compare_step(RECORDED, drifted, tolerance=0.01).ok


def test_order_is_attestation_tools_policy_drift():
    assert CHECK_ORDER == (
        "replay_attestation_diff",
        "replay_tool_diff",
        "replay_policy",
        "replay_drift",
    )
    everything_wrong = changed(
        attestation_ids=["att-2"],
        message="Other",
        tokens=999,
        latency_ms=900,
    )
    policy = Policy("p").max_increase("metrics.latency_ms", 10)
    other_events = [{"kind": "tool.run", "payload": {"stdout": "bye"}}]

    def kind(current, events):
        return compare_step(
            RECORDED,
            current,
            step="s",
            policy=policy,
            recorded_tool_events=EVENTS,
            current_tool_events=events,
        ).kind

    assert kind(everything_wrong, other_events) == "replay_attestation_diff"
    everything_wrong["attestation_ids"] = ["att-1"]
    assert kind(everything_wrong, other_events) == "replay_tool_diff"
    assert kind(everything_wrong, EVENTS) == "replay_policy"
    everything_wrong["metrics"]["latency_ms"] = 100
    assert kind(everything_wrong, EVENTS) == "replay_drift"


def test_attestation_mismatch_names_missing_and_unexpected_ids():
    result = compare_step(RECORDED, changed(attestation_ids=["att-9"]), step="sign")
    assert result.summary == "attestation ids diverged during replay for step sign"
    assert result.payload["missing"] == ["att-1"]
    assert result.payload["unexpected"] == ["att-9"]


def test_tool_event_mismatch():
    result = compare_step(
        RECORDED,
        changed(),
        step="run",
        recorded_tool_events=EVENTS,
        current_tool_events=None,
    )
    assert result.kind == "replay_tool_diff"


def test_fields_judged_by_the_policy_skip_structure_and_drift():
    policy = Policy().similar("message", 0.5).max_increase("metrics.tokens", 50)
    current = changed(message="Original output, reworded", tokens=140)
    assert compare_step(RECORDED, current, policy=policy).ok
    # Without the policy both the text and the token count would fail.
    assert compare_step(RECORDED, current).kind == "replay_drift"


def test_other_fields_still_need_structure_equality_under_a_policy():
    policy = Policy().exact("message")
    result = compare_step(RECORDED, changed(extra=1), step="s", policy=policy)
    assert result.kind == "replay_drift"
    assert result.place == "s: extra"


def test_policy_failure_lists_violations_and_the_change_table():
    policy = Policy().exact("message").within("metrics.latency_ms", 0, 150)
    result = compare_step(RECORDED, changed(message="x", latency_ms=200), step="s", policy=policy)
    assert result.kind == "replay_policy"
    assert [v["rule"] for v in result.payload["violations"]] == ["exact", "within"]
    assert any(line.startswith("field changes") for line in result.details)


def test_structure_failure_includes_the_change_table():
    result = compare_step(RECORDED, changed(message="Changed"), step="s")
    assert result.kind == "replay_drift"
    assert "field changes (1):" in result.details
    assert result.payload["changes"] == [
        {"path": "message", "change": "Modified", "old": "Original output", "new": "Changed"}
    ]


def test_tolerant_match_ignores_whitespace_and_float_spelling():
    current = changed(message="Original   output\n", latency_ms=100.0)
    assert not compare_step(RECORDED, current).ok
    assert compare_step(RECORDED, current, match="tolerant").ok


def test_bad_match_is_rejected_before_comparing():
    with pytest.raises(ValueError):
        compare_step(RECORDED, RECORDED, match="loose")  # type: ignore[arg-type]


def test_similarity_callable_reaches_the_policy():
    policy = Policy().similar("message", 0.99)
    current = changed(message="totally different")
    assert not compare_step(RECORDED, current, policy=policy).ok
    assert compare_step(RECORDED, current, policy=policy, similarity=lambda a, b: 1.0).ok
