"""Replay policies: per-field rules (exact, similar, max increase/decrease, within)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ..canonical import NotCanonical, canonical_json
from .drift import EPSILON, plain, same
from .result import Comparison
from .snapshot import Part, diff_snapshot, lookup, parse_path, render_changes

Similarity = Callable[[str, str], "float | None"]

# Stands in for a list item judged by a rule, so the structure check skips it
# without shifting the indices of the items after it.
EXEMPT_MARKER = "<judged by policy rule>"

_WORD = re.compile(r"\w+")


def token_similarity(a: str, b: str) -> float:
    """Deterministic text similarity in 0..1: Dice overlap of case-folded word multisets.

    1.0 means the same words the same number of times (order and punctuation
    ignored); texts without words are 1.0 only if equal up to whitespace.
    """
    left, right = Counter(_WORD.findall(a.casefold())), Counter(_WORD.findall(b.casefold()))
    total = left.total() + right.total()
    if total == 0:
        return 1.0 if a.split() == b.split() else 0.0
    return 2 * (left & right).total() / total


@dataclass(frozen=True)
class Violation:
    """One broken rule, as listed in a ``replay_policy`` failure."""

    rule: str
    field: str
    expected: str
    actual: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "field": self.field,
            "expected": self.expected,
            "actual": self.actual,
            "message": self.message,
        }

    def describe(self) -> str:
        return (
            f"{self.rule} {self.field or '(root)'}: {self.message}"
            f" (expected {self.expected}; actual {self.actual})"
        )


@dataclass(frozen=True)
class _Side:
    """A field looked up in one output: whether it exists and its value."""

    found: bool
    value: Any


# --- rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A check on one field; subclasses say what ``check`` compares."""

    name: ClassVar[str] = "rule"
    path: str

    @property
    def parts(self) -> tuple[Part, ...]:
        return parse_path(self.path)

    def check(self, old: _Side, new: _Side, similarity: Similarity | None) -> Violation | None:
        raise NotImplementedError

    def violation(self, expected: str, actual: str, message: str) -> Violation:
        return Violation(self.name, self.path, expected, actual, message)

    def missing(self, old: _Side, new: _Side) -> Violation | None:
        """A violation when the field is absent from a side the rule needs."""
        if old.found and new.found:
            return None
        if not (old.found or new.found):
            where = "recorded or current output"
        else:
            where = "current output" if old.found else "recorded output"
        return self.violation(
            _show(old), _show(new), f"field not found in {where} (check the path)"
        )


@dataclass(frozen=True)
class Exact(Rule):
    name: ClassVar[str] = "exact"

    def check(self, old: _Side, new: _Side, similarity: Similarity | None) -> Violation | None:
        missing = self.missing(old, new)
        if missing or same(old.value, new.value):
            return missing
        return self.violation(_show(old), _show(new), "value changed; rule requires exact match")


@dataclass(frozen=True)
class Similar(Rule):
    name: ClassVar[str] = "similar"
    threshold: float = 0.9

    def check(self, old: _Side, new: _Side, similarity: Similarity | None) -> Violation | None:
        missing = self.missing(old, new)
        if missing:
            return missing
        score = score_similarity(_text(old.value), _text(new.value), similarity)
        if score >= self.threshold:
            return None
        return self.violation(
            f"similarity >= {self.threshold:g}",
            f"{score:.3f}",
            f"text similarity {score:.3f} is below {self.threshold:g}",
        )


@dataclass(frozen=True)
class _Bound(Rule):
    """Shared number handling of max_increase / max_decrease."""

    limit: float = 0.0
    absolute: bool = False

    def numbers(self, old: _Side, new: _Side) -> tuple[float, float] | Violation:
        missing = self.missing(old, new)
        if missing:
            return missing
        if not (_is_number(old.value) and _is_number(new.value)):
            return self.violation(_show(old), _show(new), "rule needs numbers on both sides")
        return float(old.value), float(new.value)

    def allowed(self, recorded: float) -> float:
        # Percent of the recorded magnitude; a recorded 0 therefore allows no move.
        return self.limit if self.absolute else abs(recorded) * self.limit / 100

    def limit_text(self) -> str:
        return f"{self.limit:g}" if self.absolute else f"{self.limit:g}%"

    def judge(self, recorded: float, moved: float, current: float, verb: str) -> Violation | None:
        if moved <= self.allowed(recorded):
            return None
        share = f" ({moved / abs(recorded):+.2%})" if abs(recorded) > EPSILON else ""
        return self.violation(
            f"{verb} <= {self.limit_text()} of recorded {recorded:g}",
            f"{current:g}",
            f"{verb}d by {moved:g}{share}, more than {self.limit_text()}",
        )


@dataclass(frozen=True)
class MaxIncrease(_Bound):
    name: ClassVar[str] = "max_increase"

    def check(self, old: _Side, new: _Side, similarity: Similarity | None) -> Violation | None:
        pair = self.numbers(old, new)
        if isinstance(pair, Violation):
            return pair
        recorded, current = pair
        return self.judge(recorded, current - recorded, current, "increase")


@dataclass(frozen=True)
class MaxDecrease(_Bound):
    name: ClassVar[str] = "max_decrease"

    def check(self, old: _Side, new: _Side, similarity: Similarity | None) -> Violation | None:
        pair = self.numbers(old, new)
        if isinstance(pair, Violation):
            return pair
        recorded, current = pair
        return self.judge(recorded, recorded - current, current, "decrease")


@dataclass(frozen=True)
class Within(Rule):
    name: ClassVar[str] = "within"
    low: float = 0.0
    high: float = 0.0

    def check(self, old: _Side, new: _Side, similarity: Similarity | None) -> Violation | None:
        # Only the current value matters: the range is absolute, not relative to the recording.
        expected = f"{self.low:g} <= value <= {self.high:g}"
        if not new.found:
            return self.violation(expected, _show(new), "field not found in current output")
        if not _is_number(new.value):
            return self.violation(expected, _show(new), "rule needs a number")
        if self.low <= new.value <= self.high:
            return None
        return self.violation(
            expected, f"{new.value:g}", f"{new.value:g} is outside [{self.low:g}, {self.high:g}]"
        )


# --- the builder ------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """Named, immutable list of field rules; each builder method returns a new Policy.

    Paths are dotted from the step's return value, with list indices as
    ``items[0]`` or ``items.0``. Fields a rule names are judged only by it
    and skipped by the structure and drift checks.
    """

    name: str = "policy"
    rules: tuple[Rule, ...] = ()

    def _add(self, rule: Rule) -> Policy:
        parse_path(rule.path)  # a malformed path fails here, where the policy is written
        return replace(self, rules=(*self.rules, rule))

    def exact(self, path: str) -> Policy:
        """The field must be equal (type-aware) to the recording."""
        return self._add(Exact(path))

    def similar(self, path: str, threshold: float) -> Policy:
        """Text similarity of recorded vs current must be >= ``threshold`` (0..1)."""
        if not (_is_number(threshold) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"similar({path!r}, {threshold!r}): threshold must be in 0..1")
        return self._add(Similar(path, float(threshold)))

    def max_increase(self, path: str, limit: float, *, absolute: bool = False) -> Policy:
        """May grow by at most ``limit`` percent of the recorded value (or units if absolute)."""
        return self._add(MaxIncrease(path, _limit("max_increase", path, limit), absolute))

    def max_decrease(self, path: str, limit: float, *, absolute: bool = False) -> Policy:
        """May shrink by at most ``limit`` percent of the recorded value (or units if absolute)."""
        return self._add(MaxDecrease(path, _limit("max_decrease", path, limit), absolute))

    def within(self, path: str, low: float, high: float) -> Policy:
        """The current value must lie in ``[low, high]``."""
        if not (_is_number(low) and _is_number(high)) or not low <= high:
            raise ValueError(f"within({path!r}, {low!r}, {high!r}): need numbers low <= high")
        return self._add(Within(path, float(low), float(high)))

    @property
    def fields(self) -> tuple[str, ...]:
        """Paths named by the rules, in order, without repeats."""
        return tuple(dict.fromkeys(rule.path for rule in self.rules))

    def check(
        self, recorded: Any, current: Any, *, similarity: Similarity | None = None
    ) -> list[Violation]:
        """Every rule, each checked: all violations, in rule order."""
        recorded, current = plain(recorded), plain(current)
        found: list[Violation] = []
        for rule in self.rules:
            old = _Side(*lookup(recorded, rule.parts))
            new = _Side(*lookup(current, rule.parts))
            violation = rule.check(old, new, similarity)
            if violation is not None:
                found.append(violation)
        return found

    def exempt(self, value: Any) -> Any:
        """A copy of ``value`` without the fields the rules judge (list items become a marker)."""
        value = plain(value)
        for path in self.fields:
            value = _without(value, parse_path(path))
        return value


def compare_policy(
    recorded: Any,
    current: Any,
    policy: Policy,
    *,
    step: str,
    similarity: Similarity | None = None,
) -> Comparison:
    """All rules of ``policy``: kind ``replay_policy`` listing every violation together."""
    recorded, current = plain(recorded), plain(current)
    violations = policy.check(recorded, current, similarity=similarity)
    if not violations:
        return Comparison.passed(step=step, policy=policy.name)
    changes = diff_snapshot(recorded, current)
    details = [f"- {v.describe()}" for v in violations]
    details.extend(render_changes(changes))
    return Comparison(
        ok=False,
        kind="replay_policy",
        summary=(
            f"step {step} broke replay policy {policy.name!r}:"
            f" {len(violations)} violation(s) in {', '.join(v.field for v in violations)}"
        ),
        place=f"{step}: {violations[0].field}",
        details=tuple(details),
        payload={
            "step": step,
            "policy": policy.name,
            "violations": [v.to_dict() for v in violations],
            "changes": [c.to_dict() for c in changes],
        },
    )


def score_similarity(a: str, b: str, similarity: Similarity | None = None) -> float:
    """``similarity(a, b)`` when given and not None (an unanswered hook), else token_similarity."""
    score = similarity(a, b) if similarity is not None else None
    if score is None:
        return token_similarity(a, b)
    if not (_is_number(score) and 0.0 <= score <= 1.0):
        raise ValueError(f"similarity({a!r:.40}, {b!r:.40}) returned {score!r}; expected 0..1")
    return float(score)


# --- helpers ----------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _limit(rule: str, path: str, limit: float) -> float:
    if not _is_number(limit) or math.isnan(limit) or limit < 0:
        raise ValueError(f"{rule}({path!r}, {limit!r}): limit must be a number >= 0")
    return float(limit)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return canonical_json(value)
    except NotCanonical:
        return repr(value)


def _show(side: _Side) -> str:
    if not side.found:
        return "(absent)"
    text = repr(side.value)
    return text if len(text) <= 120 else text[:117] + "..."


def _without(value: Any, parts: tuple[Part, ...]) -> Any:
    if not parts:
        return EXEMPT_MARKER
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict) and str(head) in value:
        key = str(head)
        copy = dict(value)
        if rest:
            copy[key] = _without(value[key], rest)
        else:
            # Dropped, not marked: a judged key present on one side only is the rule's business.
            del copy[key]
        return copy
    if isinstance(value, list) and isinstance(head, int) and head < len(value):
        copy = list(value)
        copy[head] = _without(value[head], rest)
        return copy
    return value
