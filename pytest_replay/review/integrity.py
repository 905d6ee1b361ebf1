"""Integrity of cassettes on disk: schema, safe YAML, facts, steps, HTTP and blobs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..blobs import BlobStore
from ..cassette import Cassette
from ..errors import ReplayError
from ..facts import FactLog
from ..http.interaction import check_blobs as check_http
from ..modes import Mode
from ..ring import read_records, stream_digest
from ..steps import check_sections


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str


def find_cassettes(paths: Iterable[Path]) -> Iterator[Path]:
    """Every ``*.yaml`` cassette under the given files/directories (blobs skipped)."""
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            for found in sorted(path.rglob("*.yaml")):
                if ".blobs" not in found.parts:
                    yield found


def blob_root_for(path: Path) -> Path:
    """The ``.blobs`` directory serving a cassette: the nearest one above it."""
    for parent in path.parents:
        if (parent / ".blobs").is_dir():
            return parent / ".blobs"
    return path.parent / ".blobs"


def check_cassette(path: Path) -> Problem | None:
    """Load a cassette the way a replay would, decoding every payload."""
    try:
        cassette = Cassette.load(path, blobs=BlobStore(blob_root_for(path)), shown=str(path))
        log = FactLog(
            mode=Mode.STRICT,
            blobs=cassette.blobs,
            threshold=0,
            retryable=False,
            recorded=cassette.doc,
            shown=str(path),
        )
        for pid in log.payload_ids():
            log.payloads.value(pid)
        check_sections(cassette.doc, cassette.blobs, str(path))
        check_http(cassette.section("http"), cassette.blobs, str(path))
        for name, entry in (cassette.section("rings") or {}).items():
            records = read_records(path.parent / str(entry.get("log", "")))
            if "digest" in entry and stream_digest(records) != entry["digest"]:
                return Problem(path, f"ring {name!r}: {entry['log']} does not match its digest")
    except ReplayError as err:
        return Problem(path, err.render())
    return None
