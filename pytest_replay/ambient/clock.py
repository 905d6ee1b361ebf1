"""The wall clock of code under test, started at a recorded instant (time-machine)."""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import re
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .frames import live_call, quiet_reader

DEFAULT_TICK = 0.001  # seconds per read in clock="tick" mode
_PROBE_NS = 86_400_000_000_007
_ZONE_NAME = re.compile(r"[A-Za-z0-9+-]{1,16}")


def capture() -> dict[str, Any]:
    """The recorded instant: wall clock now, plus the local zone needed to replay local time."""
    now_ns = time.time_ns()
    local = time.localtime(now_ns // 1_000_000_000)
    utc = _dt.datetime.fromtimestamp(now_ns / 1e9, _dt.timezone.utc)
    return {
        "time_ns": now_ns,
        "utc": utc.isoformat().replace("+00:00", "Z"),
        "utcoffset": int(local.tm_gmtoff),
        "zone": str(local.tm_zone),
    }


# datetime can show instants from year 1 to 9999; a clock outside that (or a
# UTC offset of a day or more) is a hand-edited cassette, not a recording.
_MAX_NS = 253_402_300_799 * 10**9  # 9999-12-31T23:59:59Z


def valid_capture(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and type(value.get("time_ns")) is int
        and 0 <= value["time_ns"] <= _MAX_NS
        and type(value.get("utcoffset", 0)) is int
        and abs(value.get("utcoffset", 0)) < 86_400
        and isinstance(value.get("zone", ""), str)
    )


def _probe() -> int:
    return _PROBE_NS


def _posix_tz(zone: str, offset: int) -> str:
    """A fixed-offset POSIX TZ string: needs no tz database on the replaying machine."""
    name = zone if _ZONE_NAME.fullmatch(zone) else "REC"
    sign = "-" if offset >= 0 else "+"  # POSIX offsets are west of UTC
    minutes, seconds = divmod(abs(offset), 60)
    hours, minutes = divmod(minutes, 60)
    return f"<{name}>{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"


class WallClock:
    """``time.time``/``datetime.now`` and friends start at ``start_ns``.

    ``step_ns`` None: they advance with real elapsed time. Otherwise every
    read by the code under test advances by exactly ``step_ns`` (reads by
    logging, pytest and pytest_replay see the time without advancing it).
    ``time.monotonic``/``perf_counter`` are never touched.
    """

    def __init__(self, recorded: dict[str, Any], step_ns: int | None, *, pin_zone: bool) -> None:
        self.start_ns = int(recorded["time_ns"])
        self.step_ns = step_ns
        self._offset = int(recorded.get("utcoffset", 0))
        self._zone = str(recorded.get("zone", ""))
        self._pin_zone = pin_zone
        self._ticks = itertools.count()
        self._k = 0
        self._travel: Any = None
        self._real_ns: Callable[[], int] = time.time_ns
        self._real0 = 0
        self._tz_saved: tuple[bool, str | None] | None = None

    def start(self) -> None:
        try:
            import time_machine
        except ImportError:  # pragma: no cover - a dependency, absent only on odd installs
            raise ConfigError(
                "clock=... needs the time-machine package, which is not installed",
                fix="pip install 'time-machine>=3' (CPython only)",
            ) from None
        if self._pin_zone:
            self._pin_local_zone()
        travel = time_machine.travel(self.start_ns / 1e9, tick=False)
        try:
            traveller = travel.start()
        except RuntimeError as exc:  # freezegun active, or another refusal
            self._unpin_zone()
            raise ConfigError(
                f"the clock cannot be patched: {exc}",
                fix="do not combine clock=... with freezegun in the same test",
            ) from None
        self._travel = travel
        self._real_ns = time_machine.escape_hatch.time.time_ns
        self._real0 = self._real_ns()
        # time-machine routes every patched read through its traveller's
        # time_ns(); ours replaces it on this one traveller. A probe value
        # proves the route before the real clock function goes in.
        traveller.time_ns = _probe
        seen = time.time_ns()
        traveller.time_ns = self._now_ns
        if seen != _PROBE_NS:
            self.stop()
            raise ConfigError(
                "this time-machine version does not route clock reads through its traveller",
                current=getattr(time_machine, "__version__", "unknown version"),
                fix="pip install 'time-machine>=3'",
            )

    def stop(self) -> None:
        if self._travel is not None:
            travel, self._travel = self._travel, None
            travel.stop()
        self._unpin_zone()

    def _now_ns(self) -> int:
        if self.step_ns is None:
            return self.start_ns + (self._real_ns() - self._real0)
        if live_call.get() or quiet_reader():
            return self.start_ns + self.step_ns * self._k
        k = self._k = next(self._ticks)
        return self.start_ns + self.step_ns * k

    # -- local time zone -------------------------------------------------------------

    def _pin_local_zone(self) -> None:
        """Replay local time as recorded: a machine in another zone gets the recorded offset."""
        tzset = getattr(time, "tzset", None)
        if tzset is None:  # Windows: local time follows the machine
            return
        here = time.localtime(self.start_ns // 1_000_000_000)
        if here.tm_gmtoff == self._offset and here.tm_zone == self._zone:
            return
        self._tz_saved = ("TZ" in os.environ, os.environ.get("TZ"))
        os.environ["TZ"] = _posix_tz(self._zone, self._offset)
        tzset()

    def _unpin_zone(self) -> None:
        if self._tz_saved is None:
            return
        had, value = self._tz_saved
        self._tz_saved = None
        if had and value is not None:
            os.environ["TZ"] = value
        else:
            os.environ.pop("TZ", None)
        time.tzset()


def step_ns(setting: Any) -> int | None:
    """None for real elapsed time (True); nanoseconds per read for "tick" or a number."""
    if setting is True:
        return None
    seconds = DEFAULT_TICK if setting == "tick" else float(setting)
    return max(1, round(seconds * 1e9))
