"""One step output against its recording: every check, in order, first failing kind wins."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .attestation import compare_attestations
from .drift import Drift, Match, check_match, compare_drift, plain
from .policy import Policy, Similarity, compare_policy
from .result import Comparison
from .tool_events import compare_tool_events

# The reference executor's order: identity first (attestations, tool calls),
# then the user's field rules, then the numeric/structural drift.
CHECK_ORDER: tuple[str, ...] = (
    "replay_attestation_diff",
    "replay_tool_diff",
    "replay_policy",
    "replay_drift",
)


def compare_step(
    recorded_output: Any,
    current_output: Any,
    *,
    step: str = "step",
    tolerance: Drift | Mapping[str, float] | float | None = None,
    policy: Policy | None = None,
    match: Match = "strict",
    recorded_tool_events: Any = None,
    current_tool_events: Any = None,
    similarity: Similarity | None = None,
) -> Comparison:
    """Check a replayed step output; the first failing check's Comparison, else a pass.

    Order: attestation ids -> tool events -> policy -> drift and structure.
    Fields named by ``policy`` are judged only by it: they are left out of
    the drift and structure check. Tool events of ``None`` mean "not
    captured" and only equal ``None``.
    """
    check_match(match)
    drift_tolerance = Drift.coerce(tolerance)
    recorded, current = plain(recorded_output), plain(current_output)

    attestations = compare_attestations(recorded, current, step=step)
    if not attestations:
        return attestations
    tools = compare_tool_events(recorded_tool_events, current_tool_events, step=step)
    if not tools:
        return tools
    passed = [attestations, tools]
    if policy is not None:
        rules = compare_policy(recorded, current, policy, step=step, similarity=similarity)
        if not rules:
            return rules
        passed.append(rules)
        recorded, current = policy.exempt(recorded), policy.exempt(current)
    drift = compare_drift(recorded, current, step=step, tolerance=drift_tolerance, match=match)
    if not drift:
        return drift
    passed.append(drift)

    payload: dict[str, Any] = {}
    for check in passed:
        payload.update(check.payload)
    return Comparison.passed(**payload)
