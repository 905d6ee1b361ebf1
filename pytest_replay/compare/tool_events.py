"""Tool-event parity: a step's tool events must replay identical after canonicalisation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .drift import plain, same
from .result import Comparison
from .snapshot import ChangeType, FieldChange, diff_snapshot, format_path, render_changes

EVENTS_FIELD = "tool_events"


def canonical_events(events: Any) -> Any:
    """Plain JSON shape with keys sorted at every depth; None (not captured) stays None.

    A key holding ``None`` is kept, so ``{"a": None}`` and ``{}`` stay different,
    as they do in the reference executor.
    """
    if events is None:
        return None
    return _sorted(plain(events))


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def events_identical(recorded: Any, current: Any) -> bool:
    """Both absent, or both present and equal after canonicalisation.

    Absent on one side only is a difference even against an empty list: the
    recording says whether tool events were captured at all.
    """
    if recorded is None or current is None:
        return recorded is None and current is None
    return same(canonical_events(recorded), canonical_events(current))


def first_difference(recorded: list[Any], current: list[Any]) -> int:
    """Index of the first event that differs (or the first one only one side has)."""
    for index, (old, new) in enumerate(zip(recorded, current, strict=False)):
        if not same(old, new):
            return index
    return min(len(recorded), len(current))


def compare_tool_events(recorded: Any, current: Any, *, step: str) -> Comparison:
    """Identical events pass; otherwise kind ``replay_tool_diff`` at the first differing index."""
    if events_identical(recorded, current):
        return Comparison.passed(step=step, tool_events=_count(canonical_events(recorded)))

    old, new = canonical_events(recorded), canonical_events(current)
    details = [f"tool events: recorded {_describe(old)}, current {_describe(new)}"]
    index: int | None = None
    changes: list[FieldChange] = []
    shown_old: Any = old
    shown_new: Any = new
    if isinstance(old, list) and isinstance(new, list):
        index = first_difference(old, new)
        prefix: tuple[str | int, ...] = (EVENTS_FIELD, index)
        shown_old = old[index] if index < len(old) else None
        shown_new = new[index] if index < len(new) else None
        changes = _event_changes(prefix, old, new, index)
        details.append(f"first differing event: {format_path(prefix)}")
    elif old is None or new is None:
        details.append("tool events were captured on one side only")
    else:
        changes = _prefixed((EVENTS_FIELD,), diff_snapshot(old, new))
    details.extend(render_changes(changes))

    place = format_path((EVENTS_FIELD, index)) if index is not None else EVENTS_FIELD
    return Comparison(
        ok=False,
        kind="replay_tool_diff",
        summary=f"tool events diverged during replay for step {step}",
        place=f"{step}: {place}",
        recorded=shown_old,
        current=shown_new,
        details=tuple(details),
        payload={
            "step": step,
            "recorded": old,
            "current": new,
            "index": index,
            "changes": [c.to_dict() for c in changes],
        },
    )


def _event_changes(
    prefix: tuple[str | int, ...], old: list[Any], new: list[Any], index: int
) -> list[FieldChange]:
    path = format_path(prefix)
    if index >= len(old):
        return [FieldChange(path, None, new[index], ChangeType.ADDED)]
    if index >= len(new):
        return [FieldChange(path, old[index], None, ChangeType.REMOVED)]
    return _prefixed(prefix, diff_snapshot(old[index], new[index]))


def _prefixed(prefix: tuple[str | int, ...], changes: list[FieldChange]) -> list[FieldChange]:
    return [FieldChange(format_path(prefix + c.parts), c.old, c.new, c.change) for c in changes]


def _count(events: Any) -> int | None:
    return len(events) if isinstance(events, list) else None


def _describe(events: Any) -> str:
    if events is None:
        return "none captured"
    if isinstance(events, list):
        return f"{len(events)} event(s)"
    return f"a {type(events).__name__}"
