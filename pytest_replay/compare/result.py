"""The result object every comparator returns; only the plugin turns it into a failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_MISSING: Any = object()


@dataclass(frozen=True)
class Comparison:
    """Outcome of comparing a recorded thing with the current one.

    ``kind`` is the DESIGN failure family (``replay_drift``...), ``place`` the
    exact location (step name, key, record index, array index), ``details``
    ready-to-read lines for the failure message, and ``payload`` the
    JSON-able diff persisted content-addressed by the plugin.
    """

    ok: bool
    kind: str = ""
    summary: str = ""
    place: str | None = None
    recorded: Any = _MISSING
    current: Any = _MISSING
    details: tuple[str, ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def passed(cls, **payload: Any) -> Comparison:
        return cls(ok=True, payload=dict(payload))

    def __bool__(self) -> bool:
        return self.ok

    def error_fields(self) -> dict[str, Any]:
        """Keyword arguments for a ReplayError describing this failed comparison."""
        fields: dict[str, Any] = {
            "place": self.place,
            "details": list(self.details),
            "payload": dict(self.payload),
        }
        for name in ("recorded", "current"):
            if getattr(self, name) is not _MISSING:
                fields[name] = getattr(self, name)
        return fields

    @property
    def has_values(self) -> bool:
        return self.recorded is not _MISSING or self.current is not _MISSING
