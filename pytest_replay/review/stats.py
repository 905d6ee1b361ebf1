"""Counts and sizes over cassettes: items per section, side files, blob usage."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..blobs import BlobStore
from ..errors import ReplayError
from ..facts import PayloadTable, parse_index
from ..ring.section import is_sidecar_name
from .integrity import blob_refs, blob_root_for, find_cassettes
from .view import KNOWN_SECTIONS, interactions, parse

SECTIONS = ("facts", "steps", "tools", "http", "rings", "arrays")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _blob_names(doc: dict[str, Any], table: PayloadTable) -> set[str]:
    """Every blob a parsed cassette points at: ``*_blob`` keys and blob payloads."""
    return blob_refs(doc) | {
        data
        for kind, data in map(table.stored, table.ids())
        if kind == "blob"  # type: ignore[misc]
    }


def _payloads(doc: dict[str, Any], shown: str) -> PayloadTable:
    table = PayloadTable(BlobStore(Path("."), shown), 0)
    table.load_yaml(doc.get("payloads"), shown, decode=False)
    return table


def _one(path: Path, totals: dict[str, Any], refs: dict[Path, set[str]]) -> None:
    """Add one cassette's counts to ``totals`` (parsed only, no blob is read)."""
    shown = str(path)
    doc = parse(path.read_bytes(), shown)
    table = _payloads(doc, shown)
    facts = parse_index(doc.get("facts"), shown)
    sections = totals["sections"]
    found = set()
    if facts:
        found.add("facts")
        sections["facts"]["facts"] += len(facts)
        for pid in {p for _, p in facts}:
            kind = (table.stored(pid) or ("missing", ""))[0]
            sections["facts"][f"{kind} payloads"] += 1
    steps = doc.get("steps")
    if isinstance(steps, list) and steps:
        found.add("steps")
        sections["steps"]["steps"] += len(steps)
        for step in steps:
            attempts = step.get("attempts") if isinstance(step, dict) else None
            for attempt in attempts if isinstance(attempts, list) else []:
                sections["steps"]["attempts"] += 1
                events = attempt.get("tool_events") if isinstance(attempt, dict) else None
                sections["steps"]["tool events"] += len(events) if isinstance(events, list) else 0
    tools = doc.get("tools")
    if isinstance(tools, list) and tools:
        found.add("tools")
        sections["tools"]["events"] += len(tools)
    http = interactions(doc.get("http"), shown)
    if http:
        found.add("http")
        sections["http"]["interactions"] += len(http)
    rings = doc.get("rings")
    if isinstance(rings, dict) and rings:
        found.add("rings")
        for entry in rings.values():
            sections["rings"]["rings"] += 1
            if isinstance(entry, dict):
                count = entry.get("records")
                sections["rings"]["records"] += count if isinstance(count, int) else 0
                log = entry.get("log")
                if is_sidecar_name(log):
                    totals["vrrl_bytes"] += _size(path.parent / log)
    arrays = doc.get("arrays")
    if isinstance(arrays, list) and arrays:
        found.add("arrays")
        for entry in arrays:
            sections["arrays"]["arrays"] += 1
            shape = entry.get("shape") if isinstance(entry, dict) else None
            if isinstance(shape, list) and all(isinstance(d, int) for d in shape):
                n = 1
                for d in shape:
                    n *= d
                sections["arrays"]["elements"] += n
    for name in found:
        totals["cassettes_with"][name] += 1
    for key in doc:
        if key not in KNOWN_SECTIONS:
            totals["other"][str(key)] = totals["other"].get(str(key), 0) + 1
    refs.setdefault(blob_root_for(path), set()).update(_blob_names(doc, table))


def _other_users(root: Path, seen: set[Path], names: set[str]) -> tuple[int, int]:
    """Add the references of the store's cassettes outside PATH to ``names``.

    A store serves every cassette below its parent folder that has no nearer
    ``.blobs``: a blob only those reference is not unreferenced. Returns
    (cassettes using the store, those of them that could not be read).
    """
    users = unread = 0
    for path in find_cassettes([root.parent]):
        if blob_root_for(path) != root:
            continue
        users += 1
        if path.resolve() in seen:
            continue
        shown = str(path)
        try:
            doc = parse(path.read_bytes(), shown)
            names.update(_blob_names(doc, _payloads(doc, shown)))
        except (ReplayError, OSError):
            unread += 1
    return users, unread


def stats(paths: Iterable[Path]) -> dict[str, Any]:
    """Totals over every cassette under ``paths``; unreadable ones are listed, not counted."""
    totals: dict[str, Any] = {
        "cassettes": 0,
        "yaml_bytes": 0,
        "vrrl_bytes": 0,
        "cassettes_with": dict.fromkeys(SECTIONS, 0),
        "sections": {
            "facts": {"facts": 0, "json payloads": 0, "hex payloads": 0, "blob payloads": 0},
            "steps": {"steps": 0, "attempts": 0, "tool events": 0},
            "tools": {"events": 0},
            "http": {"interactions": 0},
            "rings": {"rings": 0, "records": 0},
            "arrays": {"arrays": 0, "elements": 0},
        },
        "other": {},
        "largest": [],
        "unreadable": [],
        "blobs": [],
    }
    refs: dict[Path, set[str]] = {}
    sizes = []
    seen: set[Path] = set()
    for path in find_cassettes(paths):
        seen.add(path.resolve())
        try:
            _one(path, totals, refs)
        except (ReplayError, OSError) as err:
            summary = err.summary if isinstance(err, ReplayError) else str(err)
            totals["unreadable"].append({"path": str(path), "problem": summary})
            continue
        totals["cassettes"] += 1
        size = _size(path)
        totals["yaml_bytes"] += size
        sizes.append((size, str(path)))
    totals["sections"]["facts"].pop("missing payloads", None)
    totals["largest"] = [{"path": p, "bytes": s} for s, p in sorted(sizes, reverse=True)[:5]]
    for root, names in sorted(refs.items()):
        users, unread = _other_users(root, seen, names)
        files = sorted(root.glob("*")) if root.is_dir() else []
        on_disk = {f.name: _size(f) for f in files if f.is_file() and not f.name.startswith(".")}
        used = set(on_disk) & names
        totals["blobs"].append(
            {
                "dir": str(root),
                "files": len(on_disk),
                "bytes": sum(on_disk.values()),
                "referenced": len(used),
                "unreferenced": len(on_disk) - len(used),
                "unreferenced_bytes": sum(s for n, s in on_disk.items() if n not in used),
                "missing": len(names - set(on_disk)),
                "cassettes": users,
                "unreadable_cassettes": unread,
            }
        )
    return totals


def render_stats(data: dict[str, Any]) -> str:
    lines = [
        f"{data['cassettes']} cassette(s), {human(data['yaml_bytes'])} of YAML, "
        f"{human(data['vrrl_bytes'])} of .vrrl ring logs"
    ]
    for section in SECTIONS:
        counts = data["sections"][section]
        items = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        lines.append(
            f"  {section:<7} in {data['cassettes_with'][section]:>5} cassette(s)"
            + (f": {items}" if items else "")
        )
    if data["other"]:
        other = ", ".join(f"{k} ({n})" for k, n in sorted(data["other"].items()))
        lines.append(f"  other sections: {other}")
    for blobs in data["blobs"]:
        line = (
            f"blobs {blobs['dir']}: {blobs['files']} file(s), {human(blobs['bytes'])}; "
            f"{blobs['referenced']} referenced, {blobs['unreferenced']} unreferenced "
            f"({human(blobs['unreferenced_bytes'])}) by the {blobs['cassettes']} cassette(s) "
            "using it"
        )
        if blobs["unreadable_cassettes"]:
            line += (
                f"; {blobs['unreadable_cassettes']} of them outside PATH unreadable "
                "(their blobs may be counted as unreferenced)"
            )
        if blobs["missing"]:
            line += f"; {blobs['missing']} referenced but missing (run pytest-replay check)"
        lines.append(line)
    if data["largest"]:
        lines.append("largest:")
        lines.extend(f"  {human(e['bytes']):>10}  {e['path']}" for e in data["largest"])
    for bad in data["unreadable"]:
        lines.append(f"unreadable: {bad['path']}: {bad['problem']}")
    return "\n".join(lines) + "\n"
