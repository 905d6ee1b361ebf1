"""Drift: token/cost tolerances as in the reference executor, and structure equality."""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_replay.compare import (
    METRIC_KEYS,
    Drift,
    compare_drift,
    compute_drift,
    normalise,
    same,
    strip_keys,
)
from pytest_replay.compare.drift import MetricDrift, find_metric

EPS = sys.float_info.epsilon

RECORDED = {"message": "Original output", "metrics": {"tokens": 100, "cost": 1.00}}
ONE_PERCENT = {"message": "Original output", "metrics": {"tokens": 100.5, "cost": 1.009}}


# --- the reference executor's scenarios ------------------------------------------


def test_identical_rerun_is_within_zero_tolerance():
    output = {"message": "Weather summary", "metrics": {"tokens": 600, "cost": 0.002}}
    drift = compute_drift(output, dict(output), Drift(tokens=0.0, cost=0.0))
    assert drift.within_tolerance
    assert drift.tokens.delta == 0.0 and drift.cost.delta == 0.0
    assert compare_drift(output, output, step="plan").ok


def test_one_percent_drift_passes_with_tolerance_one_percent():
    drift = compute_drift(RECORDED, ONE_PERCENT, Drift(tokens=0.01, cost=0.01))
    assert drift.within_tolerance
    assert drift.tokens.delta == pytest.approx(0.5)
    assert drift.cost.relative == pytest.approx(0.009)


def test_one_percent_drift_fails_with_zero_tolerance():
    result = compare_drift(RECORDED, ONE_PERCENT, step="plan", tolerance=Drift())
    assert not result.ok
    assert result.kind == "replay_drift"
    assert "tokens" in result.summary and "cost" in result.summary
    assert result.place == "plan: tokens"
    assert (result.recorded, result.current) == (100.0, 100.5)


def test_default_tolerance_is_zero():
    assert Drift() == Drift(tokens=0.0, cost=0.0)
    assert not compute_drift(RECORDED, ONE_PERCENT).within_tolerance


def test_failure_reports_tolerance_values_delta_and_relative():
    result = compare_drift(RECORDED, ONE_PERCENT, step="plan", tolerance=Drift(0.001, 0.5))
    tokens_line = next(line for line in result.details if line.startswith("tokens:"))
    assert "recorded=100" in tokens_line and "current=100.5" in tokens_line
    assert "delta=+0.5" in tokens_line and "relative=+0.5%" in tokens_line
    assert "0.1% (relative)" in tokens_line and "EXCEEDED" in tokens_line
    cost_line = next(line for line in result.details if line.startswith("cost:"))
    assert cost_line.endswith(": ok")
    metrics = result.payload["metrics"]
    assert metrics["tokens"] == {
        "recorded": 100.0,
        "current": 100.5,
        "delta": 0.5,
        "relative": 0.005,
        "tolerance": 0.001,
        "mode": "relative",
        "within": False,
    }
    assert result.payload["tolerance"] == {"tokens": 0.001, "cost": 0.5}
    assert result.payload["step"] == "plan"


def test_failure_shows_the_change_table():
    result = compare_drift(RECORDED, ONE_PERCENT, step="plan")
    assert "field changes (2):" in result.details
    assert any("metrics.tokens" in line and "100.5" in line for line in result.details)


# --- finding metrics ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["tokens", "token_count", "total_tokens"])
def test_every_token_key_is_a_token_metric(key):
    assert find_metric({"usage": {key: 7}}, ("tokens", "token_count", "total_tokens")) == 7.0


@pytest.mark.parametrize("key", ["cost", "cost_usd", "total_cost"])
def test_every_cost_key_is_a_cost_metric(key):
    drift = compute_drift({key: 2.0}, {key: 3.0}, Drift(cost=0.49))
    assert drift.cost.delta == 1.0 and not drift.within_tolerance


def test_direct_keys_in_listed_order_win():
    output = {"total_tokens": 5, "token_count": 6, "tokens": 7}
    assert compute_drift(output, output).tokens.recorded == 7.0
    assert compute_drift({"total_tokens": 5, "token_count": 6}, {}).tokens.recorded == 6.0


def test_direct_keys_win_over_nested_ones():
    assert compute_drift({"a": {"tokens": 1}, "tokens": 2}, {}).tokens.recorded == 2.0


def test_nested_search_is_in_sorted_key_order_whatever_the_insertion_order():
    fresh = {"b": {"tokens": 1}, "a": {"tokens": 2}}
    loaded = {"a": {"tokens": 2}, "b": {"tokens": 1}}
    assert compute_drift(fresh, loaded).tokens.recorded == 2.0
    assert compute_drift(fresh, loaded).tokens.current == 2.0


def test_lists_are_searched_in_order():
    output = {"calls": [{"name": "x"}, {"cost": 0.5}, {"cost": 0.7}]}
    assert compute_drift(output, {}).cost.recorded == 0.5


def test_non_numeric_metric_values_are_skipped():
    output = {"tokens": "many", "ok": True, "usage": {"tokens": True, "total_tokens": 9}}
    assert compute_drift(output, {}).tokens.recorded == 9.0


def test_metric_on_one_side_only_is_not_compared():
    drift = compute_drift({"tokens": 600, "text": "a"}, {"text": "a"})
    assert drift.within_tolerance
    assert drift.tokens.delta is None and not drift.tokens.compared
    assert "only in recorded output" in drift.tokens.describe()


def test_metric_on_one_side_is_still_listed_in_a_failure():
    result = compare_drift({"tokens": 600, "text": "a"}, {"text": "b"}, step="s")
    assert not result.ok
    assert any("only in recorded output; not compared" in line for line in result.details)


def test_zero_recorded_value_uses_absolute_tolerance():
    assert compute_drift({"cost": 0.0}, {"cost": 0.005}, Drift(cost=0.01)).within_tolerance
    drift = compute_drift({"cost": 0.0}, {"cost": 0.02}, Drift(cost=0.01))
    assert not drift.within_tolerance
    assert drift.cost.relative is None
    assert "(absolute)" in drift.cost.describe()


def test_nan_and_infinities_on_both_sides_do_not_drift():
    nan, inf = float("nan"), float("inf")
    assert compute_drift({"cost": nan}, {"cost": nan}).within_tolerance
    assert compute_drift({"cost": inf}, {"cost": inf}).within_tolerance
    assert not compute_drift({"cost": 1.0}, {"cost": nan}, Drift(cost=1e9)).within_tolerance


# --- structure ---------------------------------------------------------------------


def test_metric_keys_are_stripped_at_every_depth():
    value = {"tokens": 1, "a": [{"cost_usd": 2, "b": {"total_cost": 3, "c": 4}}]}
    assert strip_keys(value) == {"a": [{"b": {"c": 4}}]}


def test_structure_change_fails_even_with_generous_tolerance():
    changed = {"message": "Other output", "metrics": {"tokens": 100, "cost": 1.0}}
    result = compare_drift(RECORDED, changed, step="plan", tolerance=Drift(10, 10))
    assert not result.ok
    assert "structure changed" in result.summary
    assert result.place == "plan: message"
    assert (result.recorded, result.current) == ("Original output", "Other output")
    assert result.payload["structure_equal"] is False


def test_strict_equality_is_type_aware():
    assert same({"a": [1, 2.5, None]}, {"a": [1, 2.5, None]})
    assert not same(1, 1.0)
    assert not same(True, 1)
    assert not same([1], [1, 1])
    assert not same({"a": 1}, {"b": 1})
    assert same(float("nan"), float("nan"))
    assert not same([1, 2], (1, 2))  # tuples are not JSON; plain() turns them into lists


def test_tuples_and_numpy_values_compare_as_their_json_form():
    np = pytest.importorskip("numpy")
    recorded = {"v": [1, 2], "x": 1.5}
    current = {"v": np.array([1, 2]), "x": np.float64(1.5)}
    assert compute_drift(recorded, current).within_tolerance
    assert compute_drift({"t": [1, 2]}, {"t": (1, 2)}).within_tolerance


def test_tolerant_match_normalises_whitespace_and_float_formatting():
    recorded = {"text": "score:  0.50\n done", "x": 1, "y": 0.30000000000000004}
    current = {"text": "score: 0.5 done", "x": 1.0, "y": 0.3}
    assert not compute_drift(recorded, current).within_tolerance
    assert compute_drift(recorded, current, match="tolerant").within_tolerance
    assert normalise({"s": " a  b "}) == {"s": "a b"}


def test_tolerant_match_still_sees_real_changes():
    result = compare_drift(
        {"x": 1.5, "s": "a b"}, {"x": 1.25, "s": "a  c"}, step="s", match="tolerant"
    )
    assert not result.ok
    assert "match=tolerant" in result.summary
    paths = [c["path"] for c in result.payload["changes"]]
    assert paths == ["s", "x"]


def test_unknown_match_mode_is_rejected():
    with pytest.raises(ValueError, match="strict, tolerant"):
        compare_drift({}, {}, step="s", match="fuzzy")  # type: ignore[arg-type]


# --- the tolerance type ------------------------------------------------------------


def test_drift_rejects_negative_nan_and_non_numbers():
    with pytest.raises(ValueError):
        Drift(tokens=-0.1)
    with pytest.raises(ValueError):
        Drift(cost=float("nan"))
    with pytest.raises(TypeError):
        Drift(tokens="5%")  # type: ignore[arg-type]


def test_drift_coerce_accepts_marker_and_ini_shapes():
    assert Drift.coerce(None) == Drift()
    assert Drift.coerce({"tokens": 0.05}) == Drift(tokens=0.05)
    assert Drift.coerce(0.1) == Drift(0.1, 0.1)
    tolerance = Drift(0.05, 0.10)
    assert Drift.coerce(tolerance) is tolerance


# --- properties of the arithmetic -------------------------------------------------

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
tolerances = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


def metric(recorded: float, current: float, tol: float) -> MetricDrift:
    return MetricDrift("tokens", recorded, current, tol)


@given(finite, finite, tolerances)
def test_within_iff_relative_delta_within_tolerance(recorded, current, tol):
    drift = compute_drift({"tokens": recorded}, {"tokens": current}, Drift(tokens=tol))
    delta = current - recorded
    if abs(recorded) > EPS:
        assert drift.within_tolerance == (abs(delta / recorded) <= tol)
    else:
        assert drift.within_tolerance == (abs(delta) <= tol)


@given(finite.filter(lambda r: abs(r) > 1e-6), finite, tolerances)
def test_within_iff_delta_at_most_tol_times_base_away_from_the_edge(recorded, current, tol):
    delta, bound = abs(current - recorded), tol * abs(recorded)
    within = metric(recorded, current, tol).within
    if delta <= bound * (1 - 1e-9):
        assert within
    elif delta >= bound * (1 + 1e-9) and delta > 0:
        assert not within


@given(st.floats(min_value=-EPS, max_value=EPS), finite, tolerances)
def test_zero_base_uses_absolute_delta(recorded, current, tol):
    assert metric(recorded, current, tol).within == (abs(current - recorded) <= tol)


@given(finite, finite, tolerances)
def test_verdict_is_symmetric_under_negation(recorded, current, tol):
    assert metric(recorded, current, tol).within == metric(-recorded, -current, tol).within


@given(finite, finite)
def test_delta_is_current_minus_recorded_and_antisymmetric(recorded, current):
    forward, backward = metric(recorded, current, 0).delta, metric(current, recorded, 0).delta
    assert forward == current - recorded or (forward == 0.0 and current == recorded)
    assert forward == -backward


@given(finite, finite, tolerances, tolerances)
def test_larger_tolerance_never_turns_a_pass_into_a_failure(recorded, current, t1, t2):
    low, high = sorted((t1, t2))
    if metric(recorded, current, low).within:
        assert metric(recorded, current, high).within


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "tokens", "cost", "x"]), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200)
@given(json_value, tolerances)
def test_an_identical_rerun_is_always_within_any_tolerance(value, tol):
    assert compute_drift(value, value, Drift(tol, tol)).within_tolerance


@settings(max_examples=200)
@given(json_value, st.integers(0, 10**6))
def test_metric_values_never_affect_structure_equality(value, tokens):
    recorded = {"body": value, "usage": {"tokens": 1}}
    current = {"body": value, "usage": {"tokens": tokens}}
    assert compute_drift(recorded, current).structure_equal


@given(json_value)
def test_strip_keys_is_idempotent_and_leaves_no_metric_key(value):
    once = strip_keys(value)
    assert strip_keys(once) == once
    assert not _has_metric_key(once)


def _has_metric_key(value):
    if isinstance(value, dict):
        return any(k in METRIC_KEYS or _has_metric_key(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_metric_key(v) for v in value)
    return False


def test_math_isclose_sanity_for_the_seed_numbers():
    # 1.009 - 1.00 is not exactly 0.009 in binary; the check must still pass at 1%.
    assert not math.isclose(1.009 - 1.00, 0.009, rel_tol=0, abs_tol=0)
    assert compute_drift({"cost": 1.00}, {"cost": 1.009}, Drift(cost=0.01)).within_tolerance
