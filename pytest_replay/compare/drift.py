"""Drift of step outputs: token/cost tolerances and structure equality without metrics."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..canonical import floats_equal
from .result import Comparison
from .snapshot import ROOT_LABEL, FieldChange, diff_snapshot, render_changes

TOKEN_KEYS: tuple[str, ...] = ("tokens", "token_count", "total_tokens")
COST_KEYS: tuple[str, ...] = ("cost", "cost_usd", "total_cost")
METRIC_KEYS: frozenset[str] = frozenset(TOKEN_KEYS + COST_KEYS)

# Below this magnitude a recorded metric is treated as zero and the tolerance
# is read as an absolute bound (a relative one would divide by ~0).
EPSILON = sys.float_info.epsilon

Match = Literal["strict", "tolerant"]
MATCH_MODES: tuple[str, ...] = ("strict", "tolerant")


@dataclass(frozen=True)
class Drift:
    """How far tokens and cost may move on replay: relative (0.05 = 5%), default 0."""

    tokens: float = 0.0
    cost: float = 0.0

    def __post_init__(self) -> None:
        for name in ("tokens", "cost"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Drift({name}=...) must be a number, got {value!r}")
            if math.isnan(value) or value < 0:
                raise ValueError(f"Drift({name}={value!r}) must be >= 0")

    @classmethod
    def coerce(cls, value: Drift | Mapping[str, float] | float | None) -> Drift:
        """Accept what a marker or ini option may hold: None, a Drift, a mapping or one number."""
        if value is None:
            return cls()
        if isinstance(value, Drift):
            return value
        if isinstance(value, Mapping):
            return cls(**dict(value))
        return cls(tokens=value, cost=value)


@dataclass(frozen=True)
class MetricDrift:
    """One metric (tokens or cost) found in the recorded and current outputs."""

    metric: str
    recorded: float | None
    current: float | None
    tolerance: float

    @property
    def compared(self) -> bool:
        # As in the reference executor, a metric on one side only is not compared.
        return self.recorded is not None and self.current is not None

    @property
    def delta(self) -> float | None:
        if not self.compared:
            return None
        assert self.recorded is not None and self.current is not None
        if floats_equal(self.current, self.recorded):
            return 0.0  # also for NaN==NaN and equal infinities, where subtraction gives NaN
        return self.current - self.recorded

    @property
    def relative(self) -> float | None:
        """delta / recorded, or None when the recorded value is ~0 (absolute mode)."""
        delta = self.delta
        if delta is None or self.recorded is None or abs(self.recorded) <= EPSILON:
            return None
        return 0.0 if delta == 0.0 else delta / self.recorded

    @property
    def mode(self) -> str | None:
        """How the tolerance was applied: "relative", "absolute" (recorded ~0) or None."""
        if not self.compared:
            return None
        return "absolute" if self.relative is None else "relative"

    @property
    def within(self) -> bool:
        delta = self.delta
        if delta is None:
            return True
        relative = self.relative
        if relative is not None:
            return abs(relative) <= self.tolerance
        return abs(delta) <= self.tolerance

    def describe(self) -> str:
        """One line: both values, delta, relative delta and the applied tolerance."""
        if not self.compared:
            side = "recorded" if self.current is None else "current"
            return (
                f"{self.metric}: recorded={_num(self.recorded)} current={_num(self.current)}"
                f" (only in {side} output; not compared)"
            )
        relative = self.relative
        if relative is None:
            rel_text = "n/a (recorded ~0)"
            bound = f"|delta| <= {_num(self.tolerance)} (absolute)"
        else:
            rel_text = _pct(relative, signed=True)
            bound = f"|delta/recorded| <= {_pct(self.tolerance)} (relative)"
        verdict = "ok" if self.within else "EXCEEDED"
        return (
            f"{self.metric}: recorded={_num(self.recorded)} current={_num(self.current)}"
            f" delta={_num(self.delta, signed=True)} relative={rel_text}"
            f" tolerance {bound}: {verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "current": self.current,
            "delta": self.delta,
            "relative": self.relative,
            "tolerance": self.tolerance,
            "mode": self.mode,
            "within": self.within,
        }


@dataclass(frozen=True)
class StepDrift:
    """compute_drift's verdict: both metrics and whether the rest of the output is equal."""

    tokens: MetricDrift
    cost: MetricDrift
    structure_equal: bool

    @property
    def within_tolerance(self) -> bool:
        return self.tokens.within and self.cost.within and self.structure_equal

    @property
    def exceeded(self) -> tuple[MetricDrift, ...]:
        return tuple(m for m in (self.tokens, self.cost) if not m.within)


def compute_drift(
    recorded: Any,
    current: Any,
    tolerance: Drift | Mapping[str, float] | float | None = None,
    *,
    match: Match = "strict",
) -> StepDrift:
    """Compare metrics within ``tolerance`` and everything else exactly (or per ``match``)."""
    check_match(match)
    tolerance = Drift.coerce(tolerance)
    recorded, current = plain(recorded), plain(current)
    tokens = MetricDrift(
        "tokens",
        find_metric(recorded, TOKEN_KEYS),
        find_metric(current, TOKEN_KEYS),
        tolerance.tokens,
    )
    cost = MetricDrift(
        "cost",
        find_metric(recorded, COST_KEYS),
        find_metric(current, COST_KEYS),
        tolerance.cost,
    )
    left, right = strip_keys(recorded, METRIC_KEYS), strip_keys(current, METRIC_KEYS)
    if match == "tolerant":
        left, right = normalise(left), normalise(right)
    return StepDrift(tokens=tokens, cost=cost, structure_equal=same(left, right))


def compare_drift(
    recorded: Any,
    current: Any,
    *,
    step: str,
    tolerance: Drift | Mapping[str, float] | float | None = None,
    match: Match = "strict",
) -> Comparison:
    """compute_drift as a Comparison of kind ``replay_drift`` with the change table on failure."""
    check_match(match)
    tolerance = Drift.coerce(tolerance)
    recorded, current = plain(recorded), plain(current)
    drift = compute_drift(recorded, current, tolerance, match=match)
    metrics = {"tokens": drift.tokens.to_dict(), "cost": drift.cost.to_dict()}
    if drift.within_tolerance:
        return Comparison.passed(step=step, metrics=metrics)

    if match == "tolerant":
        # The table shows what the tolerant check saw, so formatting noise is not listed.
        changes = diff_snapshot(normalise(recorded), normalise(current))
    else:
        changes = diff_snapshot(recorded, current)
    structural = [c for c in changes if not _is_metric_change(c)]
    reasons = [
        f"{m.metric} {_num(m.delta, signed=True)}"
        + (f" ({_pct(m.relative, signed=True)})" if m.relative is not None else "")
        + f" exceeds tolerance {_tolerance_text(m)}"
        for m in drift.exceeded
    ]
    if not drift.structure_equal:
        reasons.append(
            f"output structure changed ({len(structural)} field change(s), metric keys ignored,"
            f" match={match})"
        )
    present = [m for m in (drift.tokens, drift.cost) if (m.recorded, m.current) != (None, None)]
    details = [m.describe() for m in present]
    if changes:
        details.extend(render_changes(changes))

    place, old, new = _first_difference(drift, structural)
    return Comparison(
        ok=False,
        kind="replay_drift",
        summary=f"output of step {step} drifted during replay: " + "; ".join(reasons),
        place=f"{step}: {place}",
        recorded=old,
        current=new,
        details=tuple(details),
        payload={
            "step": step,
            "tolerance": {"tokens": tolerance.tokens, "cost": tolerance.cost},
            "metrics": metrics,
            "structure_equal": drift.structure_equal,
            "match": match,
            "changes": [c.to_dict() for c in changes],
        },
    )


def check_match(match: str) -> None:
    """Reject a ``match=`` other than strict/tolerant with the allowed values."""
    if match not in MATCH_MODES:
        raise ValueError(f"match={match!r}; expected one of {', '.join(MATCH_MODES)}")


# --- finding and stripping metrics -------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_float(value: float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond float range: its sign is all a tolerance can use
        return math.copysign(math.inf, value)


def find_metric(value: Any, keys: tuple[str, ...]) -> float | None:
    """First numeric value under one of ``keys``, depth first.

    At each mapping the direct keys are tried in the listed order, then its
    values are searched in sorted-key order (sorted so a freshly produced
    output and its YAML-loaded recording, whose key orders differ, pick the
    same field), then list items in order.
    """
    if isinstance(value, Mapping):
        for key in keys:
            found = value.get(key)
            if _is_number(found):
                return _as_float(found)
        for key in sorted(value, key=str):
            nested = find_metric(value[key], keys)
            if nested is not None:
                return nested
        return None
    if isinstance(value, list):
        for item in value:
            nested = find_metric(item, keys)
            if nested is not None:
                return nested
    return None


def strip_keys(value: Any, keys: frozenset[str] = METRIC_KEYS) -> Any:
    """A copy of ``value`` without ``keys`` at any depth."""
    if isinstance(value, Mapping):
        return {k: strip_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [strip_keys(v, keys) for v in value]
    return value


# --- plain values, strict equality and tolerant normalisation ---------------------


def plain(value: Any) -> Any:
    """JSON-shaped copy: tuples become lists, NumPy/CuPy values become Python ones.

    Anything else is kept as is, so an odd object still compares by ``==``.
    """
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "shape"):
        return plain(value.tolist())
    return value


def _family(value: Any) -> str:
    # JSON types as the recording sees them: bool is not an int, int is not a float.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__qualname__


def same(a: Any, b: Any) -> bool:
    """Strict, type-aware equality of plain values (1 != 1.0 != True; NaN == NaN)."""
    if a is b:
        return True
    family = _family(a)
    if family != _family(b):
        return False
    if family == "object":
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if family == "array":
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if family == "float":
        return floats_equal(a, b)
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


_FLOAT_IN_TEXT = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_SIGNIFICANT = ".12g"  # enough to keep real changes, few enough to absorb formatting noise


def _normal_float(value: float) -> float | int:
    if not math.isfinite(value):
        return value
    rounded = float(format(value, _SIGNIFICANT))
    if rounded.is_integer() and abs(rounded) < 2**53:
        return int(rounded)
    return rounded


def _normal_text(text: str) -> str:
    text = " ".join(text.split())
    return _FLOAT_IN_TEXT.sub(lambda m: format(_normal_float(float(m.group())), ""), text)


def normalise(value: Any) -> Any:
    """The tolerant form: collapsed whitespace, and one spelling per number (in text too)."""
    if isinstance(value, Mapping):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, str):
        return _normal_text(value)
    if isinstance(value, float):
        return _normal_float(value)
    return value


# --- message helpers --------------------------------------------------------------


def _num(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "absent"
    return format(value, "+.12g" if signed else ".12g")


def _pct(fraction: float, *, signed: bool = False) -> str:
    return format(fraction * 100, "+.6g" if signed else ".6g") + "%"


def _tolerance_text(metric: MetricDrift) -> str:
    if metric.relative is None:
        return f"{_num(metric.tolerance)} (absolute, recorded ~0)"
    return _pct(metric.tolerance)


def _is_metric_change(change: FieldChange) -> bool:
    return any(part in METRIC_KEYS for part in change.parts if isinstance(part, str))


def _first_difference(drift: StepDrift, structural: list[FieldChange]) -> tuple[str, Any, Any]:
    if drift.exceeded:
        metric = drift.exceeded[0]
        return metric.metric, metric.recorded, metric.current
    if structural:
        first = structural[0]
        return first.path or ROOT_LABEL, first.old, first.new
    return "output", None, None
