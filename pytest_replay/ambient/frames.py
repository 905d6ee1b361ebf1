"""Who is asking: the calling module, and whether an import or a live fact call is running."""

from __future__ import annotations

import contextvars
import sys
from types import FrameType

# Set while a fact function runs live (replay.fact, replay.now...): the fact
# records the result, so the patches inside it hand out real values and
# consume nothing (on replay the function does not run at all).
live_call: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "pytest_replay_ambient_live_call", default=False
)

# The machinery between the code under test and the patched function.
PLUMBING = ("os", "posix", "random", "secrets", "uuid", "numpy", "time_machine", "pytest_replay")
# Infrastructure that reads the clock for its own bookkeeping (log record
# times, report durations): in tick mode these reads do not advance the clock.
QUIET = ("logging", "_pytest", "pytest", "pluggy", "pytest_replay", "time_machine", "warnings")

_IMPORTING = "<frozen importlib._bootstrap"
_cache: dict[tuple[str, tuple[str, ...]], bool] = {}


def _under(name: str, roots: tuple[str, ...]) -> bool:
    key = (name, roots)
    hit = _cache.get(key)
    if hit is None:
        hit = _cache[key] = any(name == r or name.startswith(r + ".") for r in roots)
    return hit


def module_of(frame: FrameType | None) -> str:
    if frame is None:
        return "?"
    name = frame.f_globals.get("__name__")
    return name if isinstance(name, str) else "?"


def caller(depth: int = 2) -> tuple[str, bool]:
    """(first module outside the plumbing, an import is in progress on this stack).

    Randomness drawn while a module is being imported depends on what ran
    before in the process (was it imported already?), so it is never recorded.
    """
    frame: FrameType | None = sys._getframe(depth)
    where = ""
    while frame is not None:
        if frame.f_code.co_filename.startswith(_IMPORTING):
            return where or "?", True
        if not where:
            name = module_of(frame)
            if not _under(name, PLUMBING):
                where = name
        frame = frame.f_back
    return where or "?", False


def quiet_reader(depth: int = 2) -> bool:
    """The clock read comes from logging/pytest/ourselves, not from the code under test."""
    frame: FrameType | None = sys._getframe(depth)
    while frame is not None and _under(module_of(frame), ("time_machine",)):
        frame = frame.f_back
    return _under(module_of(frame), QUIET)
