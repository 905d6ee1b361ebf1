"""One cassette as pages of items: tenant scoping, a time bound and an after-id cursor."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..compare.attestation import attestation_ids
from ..compare.drift import COST_KEYS, TOKEN_KEYS, find_metric
from .view import View, preview

COLLECTIONS = ("facts", "steps", "tools", "http", "arrays", "ring/<name>")


@dataclass(frozen=True)
class Query:
    """What to list: ``after`` pages within one collection; the other filters hold on every page."""

    tenant: int | None = None
    after: str | None = None
    before_ms: int | None = None
    limit: int | None = None


class CursorError(ValueError):
    """An ``--after`` id that names no collection of this cassette."""


def ring_row(index: int, record: Any) -> dict[str, Any]:
    """One .vrrl record as plain fields (the timestamp kept in ms, for the time bound)."""
    return {
        "index": index,
        "slot": int(record["slot_idx"]),
        "tenant": int(record["tenant_id"]),
        "opcode": int(record["opcode"]),
        "args": [int(a) for a in record["args"]],
        "epoch": int(record["epoch"]),
        "status": int(record["slot_status"]),
        "failure": int(record["failure_class"]),
        "backend": int(record["backend_code"]),
        "digest": f"{int(record['output_digest']):016x}",
        "created_ms": int(record["timestamp_ns"]) // 1_000_000,
    }


def ring_line(row: dict[str, Any]) -> str:
    """A record as one line (no timestamp: it changes on every re-record)."""
    return (
        f"{row['index']:>7} slot={row['slot']} tenant={row['tenant']} opcode={row['opcode']} "
        f"args=[{','.join(map(str, row['args']))}] epoch={row['epoch']} status={row['status']} "
        f"failure={row['failure']} backend={row['backend']} digest={row['digest']}"
    )


def _fact_items(view: View) -> Iterator[dict[str, Any]]:
    ordinals: dict[str, int] = {}
    for key, pid in view.facts:
        k = ordinals.get(key, 0)
        ordinals[key] = k + 1
        yield {
            "id": f"facts/{key}#{k}",
            "key": key,
            "ordinal": k,
            "payload": pid,
            "value": view.value(pid),
        }


def _step_items(view: View) -> Iterator[dict[str, Any]]:
    for record in view.steps:
        last = record.attempts[-1] if record.attempts else None
        outputs = [a.output for a in record.attempts if a.has_snapshot]
        item: dict[str, Any] = {
            "id": f"steps/{record.key}",
            "name": record.name,
            "ordinal": record.ordinal,
            "status": last.status if last else "not run",
            "attempts": len(record.attempts),
            "tool_events": sum(len(a.tool_events) for a in record.attempts),
        }
        if outputs:
            item["tokens"] = find_metric(outputs[-1], TOKEN_KEYS)
            item["cost"] = find_metric(outputs[-1], COST_KEYS)
            item["attestation_ids"] = attestation_ids(outputs[-1])
            item["output"] = outputs[-1]
        if last is not None and last.error:
            item["error"] = last.error
        yield item


def _tool_items(view: View) -> Iterator[dict[str, Any]]:
    for index, event in enumerate(view.tools):
        yield {"id": f"tools/{index}", **event}


def _http_items(view: View) -> Iterator[dict[str, Any]]:
    for it in view.http:
        yield {"id": f"http/{it.index}", "method": it.method, "uri": it.uri, "status": it.status}


def _array_items(view: View) -> Iterator[dict[str, Any]]:
    for entry in view.arrays:
        yield {"id": f"arrays/{entry['name']}#{entry.get('ordinal', 0)}", **entry}


def _ring_page(view: View, name: str, query: Query) -> tuple[list[dict[str, Any]], int]:
    """Ring records filtered on whole columns; only the page becomes Python rows."""
    records = view.ring_records(name)
    keep = np.ones(len(records), dtype=bool)
    if query.tenant is not None:
        keep &= records["tenant_id"] == query.tenant
    if query.before_ms is not None:
        keep &= (records["timestamp_ns"] // 1_000_000).astype(np.int64) < query.before_ms
    visible = np.flatnonzero(keep)
    if query.after is not None:
        text = query.after.rpartition("/")[2]
        anchor = int(text) if text.isdigit() else -1
        pos = int(np.searchsorted(visible, anchor))
        found = pos < len(visible) and int(visible[pos]) == anchor
        visible = visible[pos + 1 :] if found else visible[:0]
    rows = [
        {"id": f"ring/{name}/{int(i)}", **ring_row(int(i), records[int(i)])}
        for i in _head(visible, query.limit)
    ]
    return rows, len(visible)


def _head(items: Any, limit: int | None) -> Any:
    return items if limit is None else items[:limit]


def _item_page(items: Iterator[dict[str, Any]], query: Query) -> tuple[list[dict[str, Any]], int]:
    rows = list(items)
    if query.after is not None:
        ids = [row["id"] for row in rows]
        rows = rows[ids.index(query.after) + 1 :] if query.after in ids else []
    return _head(rows, query.limit), len(rows)


ITEM_COLLECTIONS = {
    "facts": _fact_items,
    "steps": _step_items,
    "tools": _tool_items,
    "http": _http_items,
    "arrays": _array_items,
}


def _collection_of(cursor: str, view: View) -> str:
    if cursor.startswith("ring/"):
        collection = cursor.rpartition("/")[0]
        if collection.startswith("ring/") and collection[len("ring/") :] in view.rings:
            return collection
        raise CursorError(
            f"cursor {cursor!r} names no ring of this cassette "
            f"(rings: {', '.join(sorted(view.rings)) or 'none'})"
        )
    collection, sep, _ = cursor.partition("/")
    if sep and collection in ITEM_COLLECTIONS:
        return collection
    raise CursorError(
        f"cursor {cursor!r} is not '<collection>/<id>' (collections: {', '.join(COLLECTIONS)})"
    )


def page(view: View, query: Query) -> dict[str, Any]:
    """A page: per collection its items (filters first, then the cursor, then the limit).

    Tenant scoping keeps only records that carry a tenant, and the time
    bound only records that carry a time: both are ring records, so with
    either the other collections are not listed. With ``after`` only the
    cursor's collection is listed, from the item after it; a cursor naming
    no visible item (stale, or another tenant's) gives an empty page.
    ``pagination.next`` holds, per collection with more items, the cursor
    for the next page with the same tenant, time bound and limit.
    """
    chosen = _collection_of(query.after, view) if query.after is not None else None
    names: list[str] = []
    if query.tenant is None and query.before_ms is None:
        names += list(ITEM_COLLECTIONS)
    names += [f"ring/{name}" for name in sorted(view.rings)]
    out: dict[str, Any] = {
        "cassette": view.shown,
        "test": view.test,
        "query": {
            "tenant": query.tenant,
            "after": query.after,
            "before_ms": query.before_ms,
            "limit": query.limit,
        },
        "counts": {},
        "totals": {},
        "pagination": {"after_collection": chosen, "next": {}},
        "collections": {},
    }
    for name in names:
        if chosen is not None and name != chosen:
            continue
        if name.startswith("ring/"):
            rows, total = _ring_page(view, name[len("ring/") :], query)
        else:
            rows, total = _item_page(ITEM_COLLECTIONS[name](view), query)
        out["collections"][name] = rows
        out["counts"][name] = len(rows)
        out["totals"][name] = total
        if total > len(rows):
            out["pagination"]["next"][name] = {
                "after_id": rows[-1]["id"],
                "after_collection": name,
                "tenant": query.tenant,
                "before_ms": query.before_ms,
                "limit": query.limit,
            }
    return out


def load_page(view: View, query: Query) -> dict[str, Any]:
    """``page`` with the legacy top-level ``facts`` and ``rings`` keys kept for scripts."""
    data = page(view, query)
    data["facts"] = data["collections"].get("facts", [])
    data["rings"] = {
        name.removeprefix("ring/"): rows
        for name, rows in data["collections"].items()
        if name.startswith("ring/")
    }
    return data


def next_command(path: str, cursor: dict[str, Any]) -> str:
    """The command line that shows the next page of one collection."""
    parts = ["pytest-replay", "show", path, "--after", cursor["after_id"]]
    if cursor["tenant"] is not None:
        parts += ["--tenant", str(cursor["tenant"])]
    if cursor["before_ms"] is not None:
        parts += ["--before-ms", str(cursor["before_ms"])]
    if cursor["limit"] is not None:
        parts += ["--limit", str(cursor["limit"])]
    return shlex.join(parts)


def _item_line(name: str, item: dict[str, Any]) -> str:
    if name == "facts":
        return f"{item['key']}#{item['ordinal']}  {preview(item['value'])}"
    if name == "steps":
        parts = [
            f"{item['name']}#{item['ordinal']}",
            item["status"],
            f"{item['attempts']} attempt(s)",
        ]
        for key in ("tokens", "cost"):
            if item.get(key) is not None:
                parts.append(f"{key}={item[key]:.12g}")
        if item.get("attestation_ids"):
            parts.append(f"attestations={','.join(item['attestation_ids'])}")
        if item["tool_events"]:
            parts.append(f"tool_events={item['tool_events']}")
        if item.get("error"):
            parts.append(f"error={item['error'].get('type')}")
        return "  ".join(parts)
    if name == "tools":
        if item.get("kind") == "tool_effect":
            return f"{item['id']}  {item.get('operation')} [{item.get('status')}]"
        return f"{item['id']}  {item.get('kind')} {preview(item.get('payload'), 60)}"
    if name == "http":
        return f"{item['id']}  {item['method']} {item['uri']} -> {item['status']}"
    if name == "arrays":
        return f"{item['name']}#{item.get('ordinal', 0)}  {item.get('dtype')} {item.get('shape')}"
    return ring_line(item)


def render_page(data: dict[str, Any], path: str) -> str:
    """The page as readable text, with the command for each next page."""
    query = data["query"]
    lines = [f"{data['cassette']}  ({data['test']})"]
    scope = []
    if query["tenant"] is not None:
        scope.append(f"tenant {query['tenant']}")
    if query["before_ms"] is not None:
        scope.append(f"before {query['before_ms']} ms")
    if query["after"] is not None:
        scope.append(f"after {query['after']}")
    if query["tenant"] is not None or query["before_ms"] is not None:
        lines.append("(facts, steps, tools, http and arrays carry no tenant or time: not listed)")
    listed = {n: r for n, r in data["collections"].items() if r or n == data["query"]["after"]}
    if not listed:
        lines.append("nothing to show" + (f" ({', '.join(scope)})" if scope else ""))
    for name, rows in listed.items():
        label = name.replace("ring/", "ring ", 1)
        suffix = f" ({', '.join(scope)})" if scope else ""
        noun = "record(s)" if name.startswith("ring/") else "item(s)"
        total = data["totals"].get(name, len(rows))
        shown = f", showing {len(rows)}" if total > len(rows) else ""
        lines.append(f"{label}{suffix}: {total} {noun}{shown}")
        lines.extend(f"  {_item_line(name, row)}" for row in rows)
        cursor = data["pagination"]["next"].get(name)
        if cursor:
            lines.append(f"  next page: {next_command(path, cursor)}")
    return "\n".join(lines) + "\n"
