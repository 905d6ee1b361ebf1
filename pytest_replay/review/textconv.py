"""Stable text of a cassette or .vrrl for ``git diff``, read from that one file alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..blobs import BlobStore
from ..cassette import Block, dump_document, strip_volatile
from ..errors import ReplayError
from ..facts import PayloadTable, parse_index
from ..ring import read_records
from .show import ring_line, ring_row
from .sources import looks_like_cassette
from .view import parse

VRRL_MAGIC = b"VRRL0001"


def ring_text(path: Path) -> str:
    """One record per line (timestamps left out); an unreadable log is one comment line."""
    try:
        records = read_records(path)
    except ReplayError as err:
        return f"# {path.name}: unreadable ring log: {err.summary}\n"
    lines = [f"# {path.name}: {len(records)} record(s), VRRL0001 (timestamps not shown)"]
    lines.extend(ring_line(ring_row(i, r)) for i, r in enumerate(records))
    return "\n".join(lines) + "\n"


def _fact_lines(doc: dict[str, Any], shown: str) -> Block | None:
    """``"key"#k = <value>`` per fact: json as stored, bytes as hex, blobs by name."""
    table = PayloadTable(BlobStore(Path("."), shown), 0)
    table.load_yaml(doc.get("payloads"), shown, decode=False)
    pairs = parse_index(doc.get("facts"), shown)
    if not pairs:
        return None
    ordinals: dict[str, int] = {}
    lines = []
    for key, pid in pairs:
        k = ordinals.get(key, 0)
        ordinals[key] = k + 1
        stored = table.stored(pid)
        if stored is None:
            value = f"<missing payload {pid}>"
        elif stored[0] == "json":
            value = stored[1]
        else:
            value = f"{stored[0]} {stored[1]}"
        lines.append(f"{json.dumps(key, ensure_ascii=False)}#{k} = {value}\n")
    return Block("".join(lines))


def cassette_text(data: bytes, shown: str) -> bytes:
    """The cassette with facts joined to their values and durations dropped.

    Anything that does not parse as a cassette is returned unchanged, so
    ``git diff`` still shows it.
    """
    if not looks_like_cassette(data):
        return data
    try:
        doc = parse(data, shown)
        facts = _fact_lines(doc, shown)
    except ReplayError:
        return data
    out = {k: v for k, v in strip_volatile(doc).items() if k not in ("facts", "payloads")}
    if facts is not None:
        out["facts"] = facts
    try:
        return dump_document(out)
    except (TypeError, ValueError, RecursionError):  # data PyYAML cannot write back
        return data


def textconv(path: Path) -> bytes:
    """What ``git diff`` shows for ``path``."""
    data = path.read_bytes()
    if path.suffix == ".vrrl" or data.startswith(VRRL_MAGIC):
        return ring_text(path).encode("utf-8")
    return cassette_text(data, str(path))
