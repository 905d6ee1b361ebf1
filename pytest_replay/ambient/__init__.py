"""Ambient determinism: the clock, randomness and uuids of code under test, from the cassette.

Off unless a test asks (``clock=``, ``random=``, ``uuid=`` settings, ini
``replay_ambient``). This module stays light: time-machine, NumPy and the
patching code are imported only by a test that turns something on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..modes import Mode

if TYPE_CHECKING:
    from ..session import ReplaySession

KEYS = ("clock", "random", "uuid")
CLOCK_WHAT = "False, True (real elapsed time), 'tick' (1 ms per read) or seconds per read (> 0)"

# The recorders whose patches are in place now (at most one outside odd nesting).
ACTIVE: list[Any] = []


def valid_clock(value: Any) -> bool:
    if value is None or isinstance(value, bool) or value == "tick":
        return True
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def valid_switch(value: Any) -> bool:
    return value is None or isinstance(value, bool)


def parse_ini(words: Iterable[str]) -> dict[str, Any]:
    """``replay_ambient = clock random uuid`` (``clock=tick``, ``clock=0.5`` allowed)."""
    out: dict[str, Any] = {}
    for word in words:
        name, eq, value = word.partition("=")
        name = name.strip().lower()
        if name in ("random", "uuid") and not eq:
            out[name] = True
        elif name == "clock" and not eq:
            out["clock"] = True
        elif name == "clock" and value.strip():
            out["clock"] = _clock_word(value.strip())
        else:
            raise ConfigError(
                f"ini option replay_ambient has an unknown entry {word!r}",
                details=["entries: clock, clock=tick, clock=<seconds per read>, random, uuid"],
                fix="write e.g.  replay_ambient = clock random uuid",
            )
    return out


def _clock_word(text: str) -> Any:
    if text.lower() == "tick":
        return "tick"
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not valid_clock(seconds):
        raise ConfigError(
            f"ini option replay_ambient has clock={text!r}",
            fix=f"clock must be {CLOCK_WHAT}",
        )
    return seconds


def wanted(*sources: Mapping[str, Any]) -> bool:
    """Whether the merged sources (later wins) set any ambient key to something but off.

    A bad value (``clock=0``) counts, so the test's session reports it.
    """
    merged: dict[str, Any] = {}
    for source in sources:
        if isinstance(source, Mapping):
            merged.update((k, source[k]) for k in KEYS if k in source)
    return any(merged.get(k) is not None and merged.get(k) is not False for k in KEYS)


class _Off:
    """The recorder of a test that patches nothing: costs one attribute lookup."""

    new_count = 0

    def to_yaml(self) -> dict[str, Any]:
        return {}

    def unused(self) -> list[str]:
        return []

    def finish(self) -> None:
        """Nothing to check."""

    def save_files(self) -> None:
        """Nothing to save."""

    def close(self) -> None:
        """Nothing to undo."""


_OFF = _Off()


def install(session: ReplaySession) -> Any:
    """Patch what the test's settings turn on; a no-op recorder otherwise."""
    settings = session.context.settings
    clock, rand, uuids = (settings.get(k) for k in KEYS)
    mode = session.context.mode
    if not (clock or rand or uuids) or (mode.live_io and not mode.records):
        if mode is Mode.VERIFY:
            _account_for_recorded(session.facts)
        return _OFF  # off (or a live mode that records nothing): the real world
    if session.context.recorded is None and not mode.live_io:
        # Strict with no cassette: nothing to serve; the test fails before its
        # body with replay_missing_cassette, which names the real problem.
        return _OFF
    from .recorder import Ambient

    ambient = Ambient(session, clock=clock or False, random=bool(rand), uuid=bool(uuids))
    ambient.start()
    return ambient


def _account_for_recorded(facts: Any) -> None:
    """Verify runs on the real clock and entropy: the recorded ambient facts are not unused."""
    counts: dict[str, int] = {}
    for key, _ in facts.recorded_facts():
        if "ambient|" in key or "random_bytes|from:" in key:
            counts[key] = counts.get(key, 0) + 1
    for key, n in counts.items():
        facts.skip(key, n)


def reseed(phase: str) -> None:
    """Seed ``random``/NumPy again for ``phase`` (a plugin such as pytest-randomly reseeded)."""
    for ambient in ACTIVE:
        ambient.reseed(phase)
