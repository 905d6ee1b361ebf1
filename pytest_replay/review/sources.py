"""Where a review reads cassettes from: the working tree on disk, or a git revision."""

from __future__ import annotations

import io
import os
import posixpath
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..blobs import BlobStore, verified
from ..errors import BlobError, CassetteError, RingLogError, restore_fix
from ..ring import read_records
from ..ring.section import is_sidecar_name
from .git import Revision, worktree_files

_TOP_LEVEL_HEADER = re.compile(rb"^pytest_replay:", re.MULTILINE)


def looks_like_cassette(data: bytes) -> bool:
    """True when the YAML has a top-level ``pytest_replay:`` key: the schema header.

    The recorder writes it first, but a cassette whose keys a tool re-sorted
    still replays, so it is looked for on any line (only top-level keys start
    at column 0). Other YAML in the repository (CI configs, vcrpy cassettes
    of pytest-recording) has no such key and is left alone.
    """
    return _TOP_LEVEL_HEADER.search(data.lstrip(b"\xef\xbb\xbf")) is not None


def is_yaml_candidate(rel: str) -> bool:
    return rel.endswith(".yaml") and ".blobs" not in rel.split("/")


def sidecar_name(rel: str, log: object, shown: str) -> str:
    """The repository path of a ring's .vrrl, which must sit next to its cassette."""
    if not is_sidecar_name(log):
        raise CassetteError(
            f"ring log {log!r} is not a file name next to the cassette",
            cassette=shown,
            fix=restore_fix(),
        )
    return posixpath.join(posixpath.dirname(rel), str(log))


class Side:
    """One side of a review: lists files, reads them, serves blobs and ring logs."""

    label: str

    def cassettes(self) -> dict[str, bytes]:
        """Repository path -> bytes of every file that looks like a cassette."""
        found = self.read_many(self.yaml_files())
        return {rel: data for rel, data in found.items() if data and looks_like_cassette(data)}

    def read_many(self, rels: list[str]) -> dict[str, bytes | None]:
        return {rel: self.read(rel) for rel in rels}

    def yaml_files(self) -> list[str]:
        raise NotImplementedError

    def read(self, rel: str) -> bytes | None:
        raise NotImplementedError

    def blob_store(self, rel: str) -> BlobStore:
        raise NotImplementedError

    def ring_records(self, rel: str, log: object, shown: str) -> np.ndarray:
        raise NotImplementedError

    def has_file(self, rel: str) -> bool:
        raise NotImplementedError

    def shown(self, rel: str) -> str:
        return rel

    def close(self) -> None:
        """Release what the side holds open."""


class WorkTree(Side):
    """Files on disk under ``root``, as git lists them (tracked or untracked, not ignored)."""

    label = "working tree"

    def __init__(self, root: Path, pathspecs: Sequence[str] = ()) -> None:
        self.root = root
        self.pathspecs = tuple(pathspecs)

    def yaml_files(self) -> list[str]:
        return [f for f in worktree_files(self.root, self.pathspecs) if is_yaml_candidate(f)]

    def read(self, rel: str) -> bytes | None:
        try:
            return (self.root / rel).read_bytes()
        except OSError:
            return None

    def blob_store(self, rel: str) -> BlobStore:
        path = self.root / rel
        for parent in path.parents:
            if (parent / ".blobs").is_dir():
                return BlobStore(parent / ".blobs", shown=_rel(parent / ".blobs", self.root))
            if parent == self.root:
                break
        return BlobStore(path.parent / ".blobs", shown=_rel(path.parent / ".blobs", self.root))

    def ring_records(self, rel: str, log: object, shown: str) -> np.ndarray:
        return read_records(self.root / sidecar_name(rel, log, shown))

    def has_file(self, rel: str) -> bool:
        return (self.root / rel).is_file()


class AtRevision(Side):
    """Files of one commit, read through git without touching the working tree."""

    def __init__(self, revision: Revision, pathspecs: Sequence[str] = ()) -> None:
        self.revision = revision
        self.pathspecs = tuple(pathspecs)
        self.label = revision.label
        self._blob_dirs: set[str] | None = None

    def yaml_files(self) -> list[str]:
        return [f for f in self.revision.files(self.pathspecs) if is_yaml_candidate(f)]

    def read(self, rel: str) -> bytes | None:
        return self.revision.read(rel)

    def read_many(self, rels: list[str]) -> dict[str, bytes | None]:
        return self.revision.read_many(rels)

    def shown(self, rel: str) -> str:
        return f"{rel} (at {self.revision.commit[:12]})"

    def has_file(self, rel: str) -> bool:
        return rel in self.revision.blobs()

    def _dirs(self) -> set[str]:
        if self._blob_dirs is None:
            dirs = set()
            for rel in self.revision.files():
                parts = rel.split("/")
                if ".blobs" in parts:
                    dirs.add("/".join(parts[: parts.index(".blobs")]))
            self._blob_dirs = dirs
        return self._blob_dirs

    def blob_store(self, rel: str) -> BlobStore:
        parent = posixpath.dirname(rel)
        folder = parent
        while True:
            if folder in self._dirs():
                break
            if not folder:
                folder = parent
                break
            folder = posixpath.dirname(folder)
        return GitBlobStore(self.revision, posixpath.join(folder, ".blobs"))

    def ring_records(self, rel: str, log: object, shown: str) -> np.ndarray:
        name = sidecar_name(rel, log, shown)
        data = self.revision.read(name)
        shown_log = self.shown(name)
        if data is None:
            raise RingLogError(
                "ring log does not exist",
                place=shown_log,
                fix="commit the .vrrl next to its cassette",
            )
        with tempfile.TemporaryDirectory(prefix="pytest-replay-") as tmp:
            path = os.path.join(tmp, posixpath.basename(name))
            with open(path, "wb") as fh:
                fh.write(data)
            try:
                return read_records(path)
            except RingLogError as err:
                err.place = (err.place or "").replace(path, shown_log)
                err.fix = (err.fix or "").replace(path, shown_log)
                raise

    def close(self) -> None:
        self.revision.close()


class GitBlobStore(BlobStore):
    """The blob store of a cassette at a revision: blobs read from git, digests verified."""

    def __init__(self, revision: Revision, folder: str) -> None:
        super().__init__(Path(folder), shown=f"{folder} (at {revision.commit[:12]})")
        self.revision = revision
        self.folder = folder

    def get(self, name: str) -> bytes:
        self.path_for(name)  # validates the name
        data = self.revision.read(posixpath.join(self.folder, name))
        if data is None:
            raise BlobError(
                f"blob {name} is not in the revision",
                place=f"{self.shown}/{name}",
                fix="commit the .blobs directory with the cassettes",
            )
        return verified(name, data, self.shown)

    def verify(self, name: str) -> None:
        self.get(name)  # in git, not on disk: read it to check it

    def open(self, name: str) -> BinaryIO:
        return io.BytesIO(self.get(name))

    def exists(self, name: str) -> bool:
        return self.revision.read(posixpath.join(self.folder, name)) is not None

    def put(self, data: bytes, ext: str) -> str:
        raise BlobError("a revision is read-only", fix="this is a bug in pytest_replay")


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
