"""--replay-twice: the files a recording replaced, kept so a non-deterministic test can undo it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .blobs import atomic_write
from .errors import ReplayError, quote_test

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FAILED = (
    "replay-twice: replaying the cassette this test had just recorded did not give the same "
    "run, so the test is not deterministic (what it recorded was discarded); what differed:\n"
)
FIX = (
    "take every varying input through replay.fact / now / random_bytes / uuid4 "
    "(or a step), then re-record: pytest --replay=record --replay-twice {test}"
)


def failure_text(inner: str, nodeid: str) -> str:
    """The second pass's failure, told as the test's: what differed, then one Fix line."""
    return f"{FAILED}{inner}\n  Fix: {FIX.replace('{test}', quote_test(nodeid))}"


def drop_fixes(exc: BaseException | None) -> None:
    """Take the Fix line off the replay errors of a second pass (and those they chain to).

    Their advice ("if the new output is right, re-record", "allow the drift")
    is for a test whose behaviour changed; a run that differs from the one
    recorded a moment before is non-deterministic, and failure_text says so.
    What differed (the at/recorded/current rows, the field changes) stays.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ReplayError):
            exc.fix = None
        exc = exc.__cause__ or exc.__context__


def ring_logs(cassette: Path, data: bytes | None) -> set[Path]:
    """The ring logs a cassette's ``rings:`` section names, built as the ring recorder does.

    Only these exact names: ``<stem>.*.vrrl`` would also match the logs of a
    cassette named ``<stem>.<anything>``. An unreadable cassette names none.
    """
    if data is None or b"\nrings:" not in data:  # most cassettes: no parse
        return set()
    try:
        doc = yaml.load(data, Loader=_Loader)
    except (yaml.YAMLError, ValueError):
        return set()
    rings = doc.get("rings") if isinstance(doc, dict) else None
    if not isinstance(rings, dict):
        return set()
    from .ring.section import sidecar_path  # only --replay-twice needs the ring code

    return {sidecar_path(cassette, name) for name in rings if isinstance(name, str)}


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


@dataclass
class Snapshot:
    """A cassette and its ring logs as they were before a test recorded over them.

    Blobs are not restored: they are content-addressed, so a new one can only
    be unused, never wrong (``pytest-replay prune`` removes it).
    """

    cassette: Path
    old: bytes | None  # None: there was no cassette
    sidecars: dict[Path, bytes] = field(default_factory=dict)

    @classmethod
    def take(cls, cassette: Path) -> Snapshot:
        old = _read(cassette)
        sidecars = {}
        for path in ring_logs(cassette, old):
            data = _read(path)
            if data is not None:
                sidecars[path] = data
        return cls(cassette, old, sidecars)

    def restore(self) -> None:
        """Put the files back as they were (a new cassette and its ring logs are removed)."""
        for path in ring_logs(self.cassette, _read(self.cassette)):
            if path not in self.sidecars:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        for path, data in self.sidecars.items():
            atomic_write(path, data)
        if self.old is None:
            self.cassette.unlink(missing_ok=True)
        else:
            atomic_write(self.cassette, self.old)
