"""A cassette decoded for reading: facts, steps, tool events, HTTP, rings and arrays."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..blobs import BlobStore
from ..cassette import HEADER_KEYS, is_count, parse_document, strip_volatile_section
from ..compare.arrays import npy_bytes_to_array
from ..errors import CassetteError, ReplayError
from ..facts import FactLog
from ..http.interaction import parse_section
from ..modes import Mode
from ..ring import read_records
from ..ring.section import rings_section_problem
from ..steps import StepRecord, load_steps
from ..tools import ValueStore, load_events
from ..usage import header_line_test
from .sources import sidecar_name

# Sections this module decodes; anything else is shown as plain data.
KNOWN_SECTIONS = frozenset(
    {*HEADER_KEYS, "facts", "payloads", "steps", "tools", "http", "rings", "arrays"}
)
AMBIENT_PREFIXES = ("now|", "now_millis|", "random_bytes|", "uuid4|")
# The ambient recorder's start values (ambient/recorder.py CLOCK_KEY, SEED_KEY;
# not imported: that module loads the patching code).
AMBIENT_KEYS = frozenset({"ambient|clock", "ambient|seed"})

RingReader = Callable[[str], np.ndarray]


def _fix() -> str:
    return "restore the cassette from version control, or re-record: pytest --replay=record {test}"


@dataclass(frozen=True)
class Interaction:
    """One recorded HTTP exchange, whatever the exact shape of the ``http:`` section."""

    index: int
    method: str
    uri: str
    status: Any
    raw: Any


@dataclass
class View:
    """Everything one cassette recorded, decoded and validated, blobs verified."""

    shown: str
    doc: dict[str, Any] = field(default_factory=dict)  # the parsed document
    test: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)  # (key, payload id), call order
    log: FactLog | None = None
    steps: list[StepRecord] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)  # test-body tool events
    http: list[Interaction] = field(default_factory=list)
    rings: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrays: list[dict[str, Any]] = field(default_factory=list)
    other: dict[str, Any] = field(default_factory=dict)  # unknown sections, volatile keys dropped
    blobs: BlobStore | None = None
    read_ring: RingReader | None = None

    def value(self, pid: str) -> Any:
        assert self.log is not None
        return self.log.payloads.value(pid)

    def ring_records(self, name: str) -> np.ndarray:
        assert self.read_ring is not None
        return self.read_ring(str(self.rings[name].get("log", "")))

    def array(self, entry: dict[str, Any]) -> np.ndarray:
        assert self.blobs is not None
        try:
            return npy_bytes_to_array(self.blobs.get(entry["blob"]))
        except ValueError as exc:
            raise CassetteError(
                f"array {entry.get('name')!r}: {exc}", cassette=self.shown, fix=_fix()
            ) from None


def parse(data: bytes, shown: str) -> dict[str, Any]:
    """``parse_document`` (which refuses YAML aliases, as cassettes never hold them).

    An error's Fix names the test of the ``test:`` header line when that line
    can still be read on its own.
    """
    try:
        return parse_document(data, Path(shown), shown)
    except ReplayError as err:
        raise err.with_context(test=header_test(data)) from None


def header_test(data: bytes) -> str | None:
    """The node id on the ``test:`` header line of a cassette the YAML parser refused."""
    for line in data[:4096].splitlines()[:8]:
        if line.startswith(b"test:"):
            return header_line_test(line)
    return None


def doc_test(doc: dict[str, Any]) -> str | None:
    """The document's ``test:`` node id, if it has a usable one."""
    test = doc.get("test")
    return test if isinstance(test, str) and test else None


def load_view(data: bytes, shown: str, blobs: BlobStore, read_ring: RingReader) -> View:
    """Parse and validate one cassette; any problem is a CassetteError naming it."""
    return view_of(parse(data, shown), shown, blobs, read_ring)


def view_of(doc: dict[str, Any], shown: str, blobs: BlobStore, read_ring: RingReader) -> View:
    """The decoded view of a parsed document; a ReplayError's Fix names its test."""
    try:
        return _view_of(doc, shown, blobs, read_ring)
    except ReplayError as err:
        raise err.with_context(test=doc_test(doc)) from None


def _view_of(doc: dict[str, Any], shown: str, blobs: BlobStore, read_ring: RingReader) -> View:
    log = FactLog(
        mode=Mode.STRICT, blobs=blobs, threshold=0, retryable=False, recorded=doc, shown=shown
    )
    store = ValueStore(blobs, 0, write=False)
    view = View(
        shown=shown,
        doc=doc,
        test=str(doc.get("test", "")),
        facts=log.recorded_facts(),
        log=log,
        steps=load_steps(doc.get("steps"), shown, store),
        tools=load_events(doc.get("tools"), "tools", shown, store),
        blobs=blobs,
        read_ring=read_ring,
    )
    view.rings = _rings(doc.get("rings"), shown)
    view.arrays = _arrays(doc.get("arrays"), shown)
    view.http = interactions(doc.get("http"), shown)
    for key, value in doc.items():
        if key not in KNOWN_SECTIONS:
            view.other[key] = strip_volatile_section(key, value)
    return view


def load_path(path: Path) -> View:
    """A cassette file on disk, with the nearest ``.blobs`` and its .vrrl sidecars."""
    from .integrity import blob_root_for

    shown = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CassetteError(
            f"cassette cannot be read: {exc.strerror or exc}", cassette=shown
        ) from None

    def read_ring(log: str) -> np.ndarray:
        return read_records(path.parent / sidecar_name(path.name, log, shown))

    return load_view(data, shown, BlobStore(blob_root_for(path)), read_ring)


def _rings(section: Any, shown: str) -> dict[str, dict[str, Any]]:
    if section is None:
        return {}
    problem = rings_section_problem(section)
    if problem is not None:
        summary, place = problem
        raise CassetteError(summary, cassette=shown, place=place, fix=_fix())
    return section


def _arrays(section: Any, shown: str) -> list[dict[str, Any]]:
    if section is None:
        return []
    if not isinstance(section, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("name"), str)
        and isinstance(e.get("blob"), str)
        and is_count(e.get("ordinal", 0))
        for e in section
    ):
        raise CassetteError(
            "section 'arrays' must be a list of {name, ordinal, blob, shape, dtype}",
            cassette=shown,
            fix=_fix(),
        )
    return section


def interactions(section: Any, shown: str) -> list[Interaction]:
    """The ``http:`` block as interactions, read and checked by the replay's own parser.

    A block a replay could not load (a line that is not JSON, a request
    without its response, wrong field types) is a CassetteError naming it.
    """
    out = []
    for index, item in enumerate(parse_section(section, shown)):
        request, response = item["request"], item["response"]
        out.append(
            Interaction(
                index=index,
                method=request["method"].upper(),
                uri=request["uri"],
                status=response["status"],
                raw=strip_volatile_section("http", item, item=True),
            )
        )
    return out


def is_ambient(key: str) -> bool:
    """Clock and randomness facts (``now``, ``uuid4``, ``ambient|clock``...).

    They change on every re-record.
    """
    return key in AMBIENT_KEYS or (key.startswith(AMBIENT_PREFIXES) and "|state:" in key)


def preview(value: Any, width: int = 80) -> str:
    """One short line for a value: JSON text, bytes as hex, arrays by shape."""
    if isinstance(value, (bytes, bytearray)):
        text = f"<{len(value)} bytes {bytes(value[:16]).hex()}{'...' if len(value) > 16 else ''}>"
        return text
    if isinstance(value, np.ndarray):
        return f"<array {value.dtype} {list(value.shape)}>"
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."
