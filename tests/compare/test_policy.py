"""Policies: every rule checked for real, violations listed together, judged fields exempt."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_replay.compare import Policy, Violation, compare_policy, token_similarity
from pytest_replay.compare.policy import EXEMPT_MARKER, score_similarity

RECORDED = {
    "output": {"answer": "Paris", "summary": "The capital of France is Paris."},
    "metrics": {"latency_ms": 100, "score": 80, "temp": 0.5},
    "items": [{"name": "a"}, {"name": "b"}],
}


def current(**changes):
    out = {
        "output": dict(RECORDED["output"]),
        "metrics": dict(RECORDED["metrics"]),
        "items": [dict(item) for item in RECORDED["items"]],
    }
    for dotted, value in changes.items():
        head, key = dotted.split("__")
        out[head][key] = value
    return out


FULL = (
    Policy("agent")
    .exact("output.answer")
    .similar("output.summary", 0.6)
    .max_increase("metrics.latency_ms", 20)
    .max_decrease("metrics.score", 5)
    .within("metrics.temp", 0.0, 1.0)
)


def test_an_unchanged_output_satisfies_every_rule():
    assert FULL.check(RECORDED, current()) == []
    assert compare_policy(RECORDED, current(), FULL, step="plan").ok


# --- each rule, passing and failing ---------------------------------------------


def test_exact_fails_on_any_change_and_is_type_aware():
    [v] = Policy().exact("output.answer").check(RECORDED, current(output__answer="Lyon"))
    assert (v.rule, v.field) == ("exact", "output.answer")
    assert (v.expected, v.actual) == ("'Paris'", "'Lyon'")
    assert Policy().exact("metrics.score").check(RECORDED, current(metrics__score=80.0))


def test_similar_passes_above_and_fails_below_the_threshold():
    close = current(output__summary="The capital of France is Paris!")
    assert Policy().similar("output.summary", 0.9).check(RECORDED, close) == []
    far = current(output__summary="Berlin is nice in spring.")
    [v] = Policy().similar("output.summary", 0.9).check(RECORDED, far)
    assert v.rule == "similar" and v.expected == "similarity >= 0.9"
    assert float(v.actual) < 0.9 and "below 0.9" in v.message


def test_max_increase_in_percent():
    rule = Policy().max_increase("metrics.latency_ms", 20)
    assert rule.check(RECORDED, current(metrics__latency_ms=120)) == []
    assert rule.check(RECORDED, current(metrics__latency_ms=50)) == []
    [v] = rule.check(RECORDED, current(metrics__latency_ms=121))
    assert v.rule == "max_increase" and v.actual == "121"
    assert v.message == "increased by 21 (+21.00%), more than 20%"


def test_max_increase_in_absolute_units():
    rule = Policy().max_increase("metrics.latency_ms", 5, absolute=True)
    assert rule.check(RECORDED, current(metrics__latency_ms=105)) == []
    [v] = rule.check(RECORDED, current(metrics__latency_ms=106))
    assert "more than 5" in v.message and "%" not in v.expected


def test_max_decrease_in_percent_and_absolute():
    rule = Policy().max_decrease("metrics.score", 5)
    assert rule.check(RECORDED, current(metrics__score=76)) == []
    assert rule.check(RECORDED, current(metrics__score=99)) == []
    [v] = rule.check(RECORDED, current(metrics__score=75.9))
    assert v.rule == "max_decrease" and "decreased by" in v.message
    assert (
        Policy()
        .max_decrease("metrics.score", 1, absolute=True)
        .check(RECORDED, current(metrics__score=78))
    )


def test_percent_of_a_zero_recording_allows_no_move():
    rule = Policy().max_increase("n", 50)
    assert rule.check({"n": 0}, {"n": 0}) == []
    [v] = rule.check({"n": 0}, {"n": 1})
    assert "%)" not in v.message  # no percentage of zero


def test_within_checks_the_current_value_only():
    rule = Policy().within("metrics.temp", 0.0, 1.0)
    assert rule.check(RECORDED, current(metrics__temp=1.0)) == []
    assert rule.check({}, current(metrics__temp=0.0)) == []
    [v] = rule.check(RECORDED, current(metrics__temp=1.5))
    assert v.rule == "within" and v.expected == "0 <= value <= 1"
    assert v.message == "1.5 is outside [0, 1]"


def test_numeric_rules_reject_non_numbers_and_nan():
    assert Policy().max_increase("x", 10).check({"x": "1"}, {"x": "2"})[0].message == (
        "rule needs numbers on both sides"
    )
    assert Policy().within("x", 0, 1).check({}, {"x": True})
    assert Policy().within("x", 0, 1).check({}, {"x": float("nan")})
    assert Policy().max_decrease("x", 10).check({"x": 1.0}, {"x": float("nan")})


def test_a_path_missing_on_a_side_is_a_violation():
    [v] = Policy().exact("output.missing").check(RECORDED, current())
    assert "recorded or current output" in v.message
    [v] = Policy().similar("items[2].name", 0.5).check(RECORDED, current())
    assert v.actual == "(absent)"
    [v] = Policy().within("metrics.nope", 0, 1).check(RECORDED, current())
    assert "current output" in v.message


def test_list_indices_in_both_spellings():
    changed = current()
    changed["items"][1]["name"] = "c"
    for path in ("items[1].name", "items.1.name"):
        [v] = Policy().exact(path).check(RECORDED, changed)
        assert v.field == path
    assert Policy().exact("items[0].name").check(RECORDED, changed) == []


# --- together ---------------------------------------------------------------------


def test_all_violations_are_listed_together_in_rule_order():
    broken = current(
        output__answer="Lyon",
        output__summary="Something else entirely",
        metrics__latency_ms=500,
    )
    broken["metrics"]["score"] = 10
    broken["metrics"]["temp"] = 2.0
    violations = FULL.check(RECORDED, broken)
    assert [v.rule for v in violations] == [
        "exact",
        "similar",
        "max_increase",
        "max_decrease",
        "within",
    ]
    result = compare_policy(RECORDED, broken, FULL, step="plan")
    assert not result.ok and result.kind == "replay_policy"
    assert "5 violation(s)" in result.summary and "'agent'" in result.summary
    assert result.place == "plan: output.answer"
    assert result.payload["violations"] == [v.to_dict() for v in violations]
    keys = {"rule", "field", "expected", "actual", "message"}
    assert set(result.payload["violations"][0]) == keys
    assert sum(line.startswith("- ") for line in result.details) == 5
    assert "field changes (5):" in result.details


def test_violation_to_dict():
    v = Violation("exact", "a", "1", "2", "changed")
    assert v.to_dict() == {
        "rule": "exact",
        "field": "a",
        "expected": "1",
        "actual": "2",
        "message": "changed",
    }


# --- building ---------------------------------------------------------------------


def test_builder_returns_new_policies():
    base = Policy("p")
    extended = base.exact("a")
    assert base.rules == () and len(extended.rules) == 1
    assert extended.fields == ("a",)
    assert Policy().exact("a").similar("a", 0.5).fields == ("a",)


@pytest.mark.parametrize(
    "build",
    [
        lambda p: p.similar("a", 1.5),
        lambda p: p.similar("a", -0.1),
        lambda p: p.max_increase("a", -1),
        lambda p: p.max_decrease("a", float("nan")),
        lambda p: p.within("a", 2, 1),
        lambda p: p.exact("a..b"),
    ],
)
def test_bad_rules_fail_when_written(build):
    with pytest.raises(ValueError):
        build(Policy())


def test_exempt_drops_judged_keys_and_marks_judged_list_items():
    policy = Policy().exact("output.answer").exact("items[1]").exact("nope.deeper")
    exempted = policy.exempt(RECORDED)
    assert "answer" not in exempted["output"]
    assert exempted["items"] == [{"name": "a"}, EXEMPT_MARKER]
    assert RECORDED["output"]["answer"] == "Paris"  # the input is not touched
    assert Policy().exact("").exempt({"a": 1}) == EXEMPT_MARKER


# --- similarity -------------------------------------------------------------------


def test_default_similarity_is_normalised_token_overlap():
    assert token_similarity("The cat sat", "the  CAT sat.") == 1.0
    assert token_similarity("a b", "c d") == 0.0
    assert token_similarity("a b c d", "a b x y") == 0.5
    assert token_similarity("", "") == 1.0
    assert token_similarity("!!", "??") == 0.0


def test_a_custom_similarity_is_used_and_none_falls_back():
    policy = Policy().similar("s", 0.9)
    assert policy.check({"s": "a"}, {"s": "b"}, similarity=lambda a, b: 0.95) == []
    assert policy.check({"s": "a"}, {"s": "a"}, similarity=lambda a, b: None) == []
    assert policy.check({"s": "a"}, {"s": "b"}, similarity=lambda a, b: None)


def test_a_similarity_outside_0_1_is_an_error():
    with pytest.raises(ValueError, match=r"expected 0\.\.1"):
        score_similarity("a", "b", lambda a, b: 2.0)


def test_similar_on_non_text_compares_canonical_json():
    policy = Policy().similar("v", 0.99)
    assert policy.check({"v": {"b": 1, "a": 2}}, {"v": {"a": 2, "b": 1}}) == []


@given(st.text(max_size=40), st.text(max_size=40))
def test_similarity_is_symmetric_and_bounded(a, b):
    score = token_similarity(a, b)
    assert 0.0 <= score <= 1.0
    assert score == token_similarity(b, a)
    assert token_similarity(a, a) == 1.0
