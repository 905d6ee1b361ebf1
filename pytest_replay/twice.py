"""--replay-twice: the files a recording replaced, kept so a non-deterministic test can undo it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from .blobs import atomic_write


def _sidecars(cassette: Path) -> dict[Path, bytes]:
    """The ring logs (``<stem>.<ring>.vrrl``) next to a cassette, with their bytes."""
    out = {}
    for path in cassette.parent.glob(f"{glob_escape(cassette.stem)}.*.vrrl"):
        with contextlib.suppress(OSError):
            out[path] = path.read_bytes()
    return out


def glob_escape(text: str) -> str:
    """``text`` matched literally by Path.glob (test ids hold brackets)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


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
        try:
            old: bytes | None = cassette.read_bytes()
        except OSError:
            old = None
        return cls(cassette, old, _sidecars(cassette) if old is not None else {})

    def restore(self) -> None:
        """Put the files back as they were (a new cassette and its ring logs are removed)."""
        for path in _sidecars(self.cassette):
            if path not in self.sidecars:
                path.unlink(missing_ok=True)
        for path, data in self.sidecars.items():
            atomic_write(path, data)
        if self.old is None:
            self.cassette.unlink(missing_ok=True)
        else:
            atomic_write(self.cassette, self.old)
