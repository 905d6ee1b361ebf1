"""Integrity of cassettes on disk: schema, safe YAML, payloads, records, blobs and ring logs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CassetteError, ReplayError
from ..http.interaction import check_blobs as check_http
from ..ring import stream_digest
from .sources import looks_like_cassette

_BLOB_NAME = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,8}")


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def find_cassettes(paths: Iterable[Path], skipped: list[Path] | None = None) -> Iterator[Path]:
    """Cassettes under the given files/directories.

    A file named on the command line is always checked; in a directory only
    ``*.yaml`` files with a top-level ``pytest_replay:`` header count (other
    YAML is appended to ``skipped``), and ``.blobs`` is not entered.
    """
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            for found in sorted(path.rglob("*.yaml")):
                if ".blobs" in found.parts or not found.is_file():
                    continue
                if looks_like_cassette(_read(found)):
                    yield found
                elif skipped is not None:
                    skipped.append(found)


def blob_root_for(path: Path) -> Path:
    """The ``.blobs`` directory serving a cassette: the nearest one above it."""
    for parent in path.parents:
        if (parent / ".blobs").is_dir():
            return parent / ".blobs"
    return path.parent / ".blobs"


def blob_refs(value: Any) -> set[str]:
    """Blob names a document points at: values of ``blob`` and ``*_blob`` keys, any depth."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if (
                    isinstance(key, str)
                    and (key == "blob" or key.endswith("_blob"))
                    and isinstance(child, str)
                    and _BLOB_NAME.fullmatch(child)
                ):
                    found.add(child)
                else:
                    stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _bad(path: Path, summary: str, place: str) -> CassetteError:
    return CassetteError(
        summary,
        cassette=str(path),
        place=place,
        fix="restore the files from version control, or re-record: pytest --replay=record {test}",
    )


def check_cassette(path: Path) -> Problem | None:
    """Load a cassette the way a replay would, decoding every payload and side file."""
    from .view import View, load_path

    view: View | None = None
    try:
        view = load_path(path)
        for pid in view.log.payload_ids() if view.log else ():
            view.value(pid)
        check_http(view.doc.get("http"), view.blobs, str(path))
        for name, entry in view.rings.items():
            records = view.ring_records(name)
            count = entry["records"]
            if count != len(records):
                raise _bad(
                    path,
                    f"ring {name!r}: {entry['log']} holds {len(records)} records, "
                    f"the cassette says {count}",
                    f"rings.{name}.records",
                )
            if stream_digest(records) != entry["digest"]:
                raise _bad(
                    path,
                    f"ring {name!r}: {entry['log']} does not match its digest",
                    f"rings.{name}",
                )
        for i, entry in enumerate(view.arrays):
            array = view.array(entry)
            shape = entry.get("shape")
            if shape is not None and list(array.shape) != shape:
                raise _bad(
                    path,
                    f"array {entry['name']!r}: blob holds shape {list(array.shape)}, "
                    f"the cassette says {shape}",
                    f"arrays[{i}]",
                )
            dtype = entry.get("dtype")
            if dtype is not None and array.dtype.kind != "V" and str(array.dtype) != dtype:
                raise _bad(
                    path,
                    f"array {entry['name']!r}: blob holds dtype {array.dtype}, "
                    f"the cassette says {dtype}",
                    f"arrays[{i}]",
                )
        assert view.blobs is not None
        for name in sorted(blob_refs(view.doc)):
            view.blobs.get(name)
    except ReplayError as err:
        if view is not None:
            err.with_context(test=view.test or None)
        return Problem(path, err.render())
    return None
