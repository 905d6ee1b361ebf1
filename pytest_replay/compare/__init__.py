"""Comparators for recorded vs current values; each returns a Comparison, none needs pytest."""

from .attestation import attestation_ids, compare_attestations
from .drift import (
    COST_KEYS,
    METRIC_KEYS,
    TOKEN_KEYS,
    Drift,
    MetricDrift,
    StepDrift,
    compare_drift,
    compute_drift,
    normalise,
    same,
    strip_keys,
)
from .policy import Policy, Violation, compare_policy, token_similarity
from .result import Comparison
from .snapshot import (
    ChangeType,
    FieldChange,
    diff_snapshot,
    format_path,
    parse_path,
    render_changes,
)
from .steps import compare_step
from .tool_events import canonical_events, compare_tool_events, events_identical

__all__ = [
    "COST_KEYS",
    "METRIC_KEYS",
    "TOKEN_KEYS",
    "ChangeType",
    "Comparison",
    "Drift",
    "FieldChange",
    "MetricDrift",
    "Policy",
    "StepDrift",
    "Violation",
    "attestation_ids",
    "canonical_events",
    "compare_attestations",
    "compare_drift",
    "compare_policy",
    "compare_step",
    "compare_tool_events",
    "compute_drift",
    "diff_snapshot",
    "events_identical",
    "format_path",
    "normalise",
    "parse_path",
    "render_changes",
    "same",
    "strip_keys",
    "token_similarity",
]
