"""Attestation ids: the step output's ``attestation_ids`` must replay unchanged, in order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .result import Comparison

ATTESTATION_KEY = "attestation_ids"


def attestation_ids(output: Any) -> list[str]:
    """The top-level ``attestation_ids`` strings; [] when absent or not a list.

    Non-string entries are skipped, as in the reference executor, so an output
    without attestations and one with an empty list compare equal.
    """
    if not isinstance(output, Mapping):
        return []
    ids = output.get(ATTESTATION_KEY)
    if not isinstance(ids, (list, tuple)):
        return []
    return [item for item in ids if isinstance(item, str)]


def diff_ids(recorded: list[str], current: list[str]) -> tuple[list[str], list[str]]:
    """(missing, unexpected): recorded ids not produced now, and new ids not recorded."""
    missing = [item for item in recorded if item not in current]
    unexpected = [item for item in current if item not in recorded]
    return missing, unexpected


def compare_attestations(recorded_output: Any, current_output: Any, *, step: str) -> Comparison:
    """Equal lists pass; else kind ``replay_attestation_diff`` naming missing/unexpected ids."""
    recorded = attestation_ids(recorded_output)
    current = attestation_ids(current_output)
    if recorded == current:
        return Comparison.passed(step=step, attestation_ids=recorded)

    missing, unexpected = diff_ids(recorded, current)
    details = [
        f"missing (recorded, not produced now): {_ids(missing)}",
        f"unexpected (produced now, not recorded): {_ids(unexpected)}",
    ]
    if not missing and not unexpected:
        # Same ids, so order or repetition changed; the recording fixes both.
        details.append("the same ids appear in a different order or number")
    return Comparison(
        ok=False,
        kind="replay_attestation_diff",
        summary=f"attestation ids diverged during replay for step {step}",
        place=f"{step}: {ATTESTATION_KEY}",
        recorded=recorded,
        current=current,
        details=tuple(details),
        payload={
            "step": step,
            "recorded": recorded,
            "current": current,
            "missing": missing,
            "unexpected": unexpected,
        },
    )


def _ids(ids: list[str]) -> str:
    return ", ".join(ids) if ids else "(none)"
