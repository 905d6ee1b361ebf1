"""Content-addressed blob store (blake3) for bulky and binary payloads."""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

import blake3

from .errors import BlobError


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()
_NAME = re.compile(r"^([0-9a-f]{64})\.([a-z0-9]{1,8})$")
_THREADED_BYTES = 1 << 20  # blake3 splits bigger inputs across threads, same digest
_LARGE_BYTES = 1 << 20  # a blob this big is hashed mapped, and read by the caller from the file

# Blob files whose bytes this process has checked against their names, by
# absolute path, with the file's stamp at that moment. A blob checked at a
# test's setup is not hashed again when the test reads it, nor by later tests,
# unless the file changed: any write moves its ctime, which no user can set.
_VERIFIED: dict[str, tuple[int, ...]] = {}
# File times are kept in coarse ticks, so a write in the same tick as the check
# could leave the stamp as it was. As git does for its index, a file changed
# this recently is not remembered, only checked (a fresh recording's blobs).
_RACY_NS = 2_000_000_000


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _remember(key: str, stamp: tuple[int, ...]) -> None:
    if time.time_ns() - stamp[4] >= _RACY_NS:
        _VERIFIED[key] = stamp


def _hasher(size: int) -> blake3.blake3:
    return blake3.blake3(max_threads=blake3.blake3.AUTO if size >= _THREADED_BYTES else 1)


def _digest(data: bytes) -> str:
    """blake3 hex digest, the same as canonical.digest, on all cores for large data."""
    return _hasher(len(data)).update(data).hexdigest()


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
        self._checked: dict[str, bytes] = {}  # small blobs read by verify, until open takes them

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
        name = f"{_digest(data)}.{ext}"
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
        kept = self._checked.pop(name, None)  # small, read and checked at setup
        if kept is not None:
            return kept
        try:
            with open(path, "rb") as fh:
                stamp = _stamp(os.fstat(fh.fileno()))
                data = fh.read()
        except OSError as exc:
            raise self._unreadable(name, exc) from None
        key = os.path.abspath(path)
        if _VERIFIED.get(key) != stamp or len(data) != stamp[2]:
            verified(name, data, self.shown)
            _remember(key, stamp)
        return data

    def open(self, name: str) -> BinaryIO:
        """The blob as a file to read (use it in a ``with``), its bytes checked against its name.

        A large blob this run has checked (at setup) and that has not changed
        since is the open file itself, so a large array is read once, straight
        into place; any other blob is read (and hashed, unless it was checked)
        and served from memory.
        """
        path = self.path_for(name)
        data = self._pending.get(name)
        if data is None:
            data = self._checked.pop(name, None)  # small, read and checked at setup
        if data is not None:
            return io.BytesIO(data)
        key = os.path.abspath(path)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below, or by the caller
        except OSError as exc:
            raise self._unreadable(name, exc) from None
        handed = False
        try:
            stamp = _stamp(os.fstat(fh.fileno()))
            known = _VERIFIED.get(key) == stamp
            if known and stamp[2] >= _LARGE_BYTES:
                handed = True
                return fh
            data = fh.read()
        except OSError as exc:
            raise self._unreadable(name, exc) from None
        finally:
            if not handed:
                fh.close()
        if not known:
            verified(name, data, self.shown)
            _remember(key, stamp)
        return io.BytesIO(data)

    def verify(self, name: str) -> None:
        """Check that a blob is on disk and matches its digest.

        A replay calls it at setup for blobs it reads later (arrays), so a bad
        blob errors the test before its body runs; ``open`` and ``get`` then
        skip the hash. A small blob's bytes are kept for ``open``; a large one
        is hashed mapped, on all cores, and not kept.
        """
        path = self.path_for(name)
        if name in self._pending:
            return
        key = os.path.abspath(path)
        known = _VERIFIED.get(key)
        try:
            if known is not None and _stamp(os.stat(path)) == known:
                return  # one stat: a blob an earlier test checked
            with open(path, "rb") as fh:
                stamp = _stamp(os.fstat(fh.fileno()))
                data = fh.read() if stamp[2] < _LARGE_BYTES else None
            if data is not None:
                actual = _digest(data)
            else:
                # Mapped, not read: a large array blob is hashed on all cores
                # without holding a copy of it.
                actual = _hasher(stamp[2]).update_mmap(path).hexdigest()
        except OSError as exc:
            raise self._unreadable(name, exc) from None
        _check(name, actual, self.shown)
        _remember(key, stamp)
        if data is not None:
            self._checked[name] = data

    def exists(self, name: str) -> bool:
        return name in self._pending or (self.root / name).is_file()

    def _unreadable(self, name: str, exc: OSError) -> BlobError:
        return BlobError(
            f"blob {name} cannot be read: {exc.strerror or exc}",
            place=f"{self.shown}/{name}",
            fix="commit the .blobs directory with the cassettes, or re-record: "
            "pytest --replay=record {test}",
        )


def verified(name: str, data: bytes, shown: str) -> bytes:
    """``data`` if its blake3 digest is the one ``name`` carries, else a BlobError."""
    _check(name, _digest(data), shown)
    return data


def _check(name: str, actual: str, shown: str) -> None:
    if actual != name.split(".", 1)[0]:
        raise BlobError(
            f"blob {name} does not match its digest (tampered or corrupted)",
            place=f"{shown}/{name}",
            recorded=name.split(".", 1)[0],
            current=actual,
            fix="restore the blob from version control, or re-record: "
            "pytest --replay=record {test}",
        )
