"""Content-addressed blob store (blake3) for bulky and binary payloads."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from .canonical import digest
from .errors import BlobError


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()
_NAME = re.compile(r"^([0-9a-f]{64})\.([a-z0-9]{1,8})$")


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory, fsync, then os.replace.

    A crash leaves either the old file or the new one, never half of each.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files; a cassette is a normal repository file.
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class BlobStore:
    """``<root>/<blake3 hex>.<ext>``; a blob's name is the digest of its bytes."""

    def __init__(self, root: Path, shown: str | None = None) -> None:
        self.root = root
        self.shown = shown or str(root)  # how messages name the store (relative to rootdir)
        self._pending: dict[str, bytes] = {}

    def path_for(self, name: str) -> Path:
        if not _NAME.match(name):
            raise BlobError(
                f"blob reference {name!r} is not '<64 hex digits>.<ext>'",
                fix="the cassette was edited by hand or corrupted; re-record the test",
            )
        return self.root / name

    def put(self, data: bytes, ext: str) -> str:
        """Stage bytes and return the blob name ``<hex>.<ext>``; ``flush`` writes them.

        Staging means a test that fails while recording leaves no orphan
        blobs behind: only a cassette that is saved brings its blobs.
        """
        name = f"{digest(data)}.{ext}"
        self._pending[name] = data
        return name

    def flush(self) -> int:
        """Write every staged blob that is not on disk yet; returns how many were written."""
        written = 0
        for name, data in self._pending.items():
            path = self.root / name
            if not path.exists():
                atomic_write(path, data)
                written += 1
        self._pending.clear()
        return written

    def discard(self) -> None:
        self._pending.clear()

    def get(self, name: str) -> bytes:
        """Read a blob and verify its bytes against the digest in its name."""
        path = self.path_for(name)
        if name in self._pending:
            return self._pending[name]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BlobError(
                f"blob {name} cannot be read: {exc.strerror or exc}",
                place=f"{self.shown}/{name}",
                fix="commit the .blobs directory with the cassettes, or re-record: "
                "pytest --replay=record {test}",
            ) from None
        return verified(name, data, self.shown)

    def exists(self, name: str) -> bool:
        return name in self._pending or (self.root / name).is_file()


def verified(name: str, data: bytes, shown: str) -> bytes:
    """``data`` if its blake3 digest is the one ``name`` carries, else a BlobError."""
    actual = digest(data)
    if actual != name.split(".", 1)[0]:
        raise BlobError(
            f"blob {name} does not match its digest (tampered or corrupted)",
            place=f"{shown}/{name}",
            recorded=name.split(".", 1)[0],
            current=actual,
            fix="restore the blob from version control, or re-record: "
            "pytest --replay=record {test}",
        )
    return data
