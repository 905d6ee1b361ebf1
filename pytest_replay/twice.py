"""--replay-twice: the files a recording replaced, kept so a non-deterministic test can undo it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .blobs import atomic_write

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
