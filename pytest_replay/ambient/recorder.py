"""The ambient recorder: start values as facts, patches in place for the test, undone after."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

from ..errors import FactPayloadInvalid, MissingFact, ReplayWarning, rerecord_fix
from ..modes import Mode
from . import ACTIVE
from .clock import WallClock, capture, step_ns, valid_capture
from .frames import live_call
from .randomness import Randomness, _real_urandom, new_seed

CLOCK_KEY = "ambient|clock"
SEED_KEY = "ambient|seed"
SECTION = "ambient"


def hash_seed() -> str:
    """PYTHONHASHSEED as this process runs: "0", a fixed number, or "random"."""
    if not sys.flags.hash_randomization:
        return "0"
    value = os.environ.get("PYTHONHASHSEED", "")
    return value if value.isdecimal() else "random"


def _valid_seed(value: Any) -> bool:
    return type(value) is int and value >= 0


class Ambient:
    """One test's ambient patches. Facts: ``ambient|clock`` (the start instant and
    local zone), ``ambient|seed`` (the test's seed), and one
    ``random_bytes|from:<module>|...`` fact per OS-entropy draw.
    """

    def __init__(self, session: Any, *, clock: Any, random: bool, uuid: bool) -> None:
        self.ctx = session.context
        self.facts = session.facts
        self.settings = {"clock": clock, "random": random, "uuid": uuid}
        self.clock: WallClock | None = None
        self.randomness: Randomness | None = None
        self._fact: Callable[..., Any] = self.facts.fact
        self._wrapped = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        ACTIVE.append(self)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        clock, rand, uuids = self.settings["clock"], self.settings["random"], self.settings["uuid"]
        # Start values first, while the real clock and OS entropy are in place.
        if clock:
            recorded = self._start_value(CLOCK_KEY, capture, valid_capture, f"clock={clock!r}")
            self.clock = WallClock(recorded, step_ns(clock), pin_zone=not self.ctx.mode.live_io)
        if rand or uuids:
            what = "random=True" if rand else "uuid=True"
            seed = self._start_value(SEED_KEY, new_seed, _valid_seed, what)
            self.randomness = Randomness(seed, self._draw, generators=rand, uuids=uuids)
        if rand:
            self._check_hash_seed()
        self._wrap_facts()
        if self.clock is not None:
            self.clock.start()
        if self.randomness is not None:
            self.randomness.start()

    def close(self) -> None:
        """Undo every patch (idempotent): the real clock and randomness are back."""
        try:
            if self.randomness is not None:
                self.randomness.stop()
        finally:
            if self.clock is not None:
                self.clock.stop()
            if self._wrapped:
                self._wrapped = False
                self.facts.fact = self._fact
                del self.facts.afact
            if self in ACTIVE:
                ACTIVE.remove(self)

    def reseed(self, phase: str) -> None:
        if self.randomness is not None:
            self.randomness.reseed(phase)

    # -- facts -------------------------------------------------------------------------

    def _start_value(
        self, key: str, live: Callable[[], Any], valid: Callable[[Any], bool], setting: str
    ) -> Any:
        __tracebackhide__ = True
        facts = self.facts
        replaying = not self.ctx.mode.live_io
        fetches = facts.retryable and self.ctx.mode is Mode.REPLAY
        if replaying and not fetches and key not in {k for k, _ in facts.recorded_facts()}:
            raise self.ctx.error(
                MissingFact(
                    f"the cassette was recorded without {setting.split('=')[0]}=..., "
                    "so it holds no ambient start values",
                    place=f"key {key!r}",
                    recorded="(none)",
                    current=setting,
                    fix=rerecord_fix(),
                )
            )
        value = self._fact(key, live)
        if not valid(value):
            raise self.ctx.error(
                FactPayloadInvalid(
                    "recorded ambient start value is not valid",
                    place=f"key {key!r}",
                    recorded=value,
                    current="a value written by pytest_replay",
                    fix=rerecord_fix(),
                )
            )
        return value

    def _draw(self, n: int, where: str) -> bytes:
        """n bytes of OS entropy for module ``where``: live and recorded, or replayed."""
        __tracebackhide__ = True
        key = self.facts.derived_key(f"random_bytes|from:{where}")
        value = self._fact(key, _real_urandom, n)
        if type(value) is not bytes or len(value) != n:
            raise self.ctx.error(
                FactPayloadInvalid(
                    "recorded fact payload had unexpected length",
                    place=f"key {key!r}",
                    recorded=f"{len(value)} bytes" if isinstance(value, bytes) else value,
                    current=f"{n} bytes requested",
                    fix=rerecord_fix(),
                )
            )
        return value

    def _wrap_facts(self) -> None:
        """Inside a live fact function the patches are transparent: the fact records the
        result, and on replay the function does not run, so it must consume nothing."""
        fact, afact = self._fact, self.facts.afact

        def live_fact(key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            token = live_call.set(True)
            try:
                return fact(key, fn, *args, **kwargs)
            finally:
                live_call.reset(token)

        async def live_afact(key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            token = live_call.set(True)
            try:
                return await afact(key, fn, *args, **kwargs)
            finally:
                live_call.reset(token)

        self.facts.fact = live_fact
        self.facts.afact = live_afact
        self._wrapped = True

    def _check_hash_seed(self) -> None:
        section = self.ctx.section(SECTION)
        recorded = section.get("pythonhashseed") if isinstance(section, dict) else None
        current = hash_seed()
        if self.ctx.mode.live_io or recorded is None or str(recorded) == current:
            return
        if recorded == "random":
            fix = (
                "record with a fixed seed and replay with the same: "
                "PYTHONHASHSEED=0 pytest --replay=record " + self.ctx.nodeid
            )
        else:
            fix = f"run with PYTHONHASHSEED={recorded}"
        # Pointed at the cassette: the place to look is the recording, not our code.
        warnings.warn_explicit(
            f"{self.ctx.nodeid}: PYTHONHASHSEED was {recorded} when this cassette was "
            f"recorded and is {current} now; the iteration order of sets and of hashes "
            f"of str/bytes may differ from the recording. Fix: {fix}",
            ReplayWarning,
            filename=self.ctx.shown,
            lineno=1,
        )

    # -- Recorder protocol -------------------------------------------------------------

    def to_yaml(self) -> dict[str, Any]:
        if not self.ctx.mode.records:
            return {}
        section: dict[str, Any] = {k: v for k, v in self.settings.items() if v}
        if self.settings["random"]:
            section["pythonhashseed"] = hash_seed()
        return {SECTION: section}

    def unused(self) -> list[str]:
        return []  # ambient values are facts: the fact log reports them

    @property
    def new_count(self) -> int:
        return 0

    def finish(self) -> None:
        """Nothing to check after the body; close() undoes the patches."""

    def save_files(self) -> None:
        """Everything ambient is in the cassette's facts and ambient section."""
