"""Semantic diff of one cassette at two revisions: what behaviour changed, section by section."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compare.attestation import attestation_ids, diff_ids
from ..compare.drift import COST_KEYS, METRIC_KEYS, TOKEN_KEYS, find_metric
from ..compare.snapshot import ChangeType, FieldChange, diff_snapshot
from ..errors import ReplayError
from ..ring import diff_streams
from ..steps import StepRecord
from ..tools import EFFECT, arg_paths, differing_args
from .view import Interaction, View, is_ambient, preview

SECTIONS = ("facts", "steps", "tools", "http", "rings", "arrays", "other")
OPS = ("added", "removed", "changed")
_NONE: Any = object()


@dataclass
class Change:
    """One item that differs: a fact, a step, a tool event, an interaction, a ring, an array."""

    section: str  # one of SECTIONS
    op: str  # added | removed | changed
    item: str  # readable name: 'quote#1', 'plan', 'GET https://...', 'dispatch'
    summary: str = ""  # one line: 'old -> new', '3 records', ...
    details: list[str] = field(default_factory=list)  # further lines (field changes, drift)
    data: dict[str, Any] = field(default_factory=dict)  # numbers for scripts (JSON output)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "section": self.section,
            "op": self.op,
            "item": self.item,
            "summary": self.summary,
        }
        if self.details:
            out["details"] = list(self.details)
        if self.data:
            out["data"] = self.data
        return out


def diff_views(old: View | None, new: View | None) -> list[Change]:
    """Every semantic change from ``old`` to ``new`` (None: the cassette is absent there)."""
    before = old if old is not None else View(shown="")
    after = new if new is not None else View(shown="")
    step_changes, tool_changes = diff_steps(before, after)
    return [
        *diff_facts(before, after),
        *step_changes,
        *tool_changes,
        *diff_http(before.http, after.http),
        *diff_rings(before, after),
        *diff_arrays(before, after),
        *diff_other(before, after, both=old is not None and new is not None),
    ]


# --- facts ---------------------------------------------------------------------------


def _by_key(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, pid in pairs:
        out.setdefault(key, []).append(pid)
    return out


def diff_facts(old: View, new: View) -> list[Change]:
    """Facts by key: a key only on one side is added/removed, else each ordinal compared."""
    a, b = _by_key(old.facts), _by_key(new.facts)
    changes = []
    for key in dict.fromkeys([*b, *a]):
        xs, ys = a.get(key, []), b.get(key, [])
        if xs == ys and all(_same_payload(old, new, pid) for pid in xs):
            continue
        data = {"key": key, "ambient": True} if is_ambient(key) else {"key": key}
        if not xs or not ys:
            side, pids = (new, ys) if ys else (old, xs)
            changes.append(
                Change("facts", "added" if ys else "removed", key, _values(side, pids), data=data)
            )
            continue
        multi = max(len(xs), len(ys)) > 1
        for k in range(max(len(xs), len(ys))):
            x = xs[k] if k < len(xs) else None
            y = ys[k] if k < len(ys) else None
            if x == y and _same_payload(old, new, x):
                continue
            label = f"{key}#{k}" if multi else key
            item_data = {**data, "ordinal": k}
            if x is None or y is None:
                side, pid = (new, y) if y is not None else (old, x)
                op = "added" if y is not None else "removed"
                changes.append(Change("facts", op, label, preview(side.value(pid)), data=item_data))
                continue
            before, after = old.value(x), new.value(y)
            details = []
            if isinstance(before, (dict, list)) and isinstance(after, (dict, list)):
                details = [field_line(c) for c in _field_changes(before, after)]
            summary = f"{preview(before, 60)} -> {preview(after, 60)}"
            if is_ambient(key):
                summary += " (clock/randomness)"
            changes.append(Change("facts", "changed", label, summary, details, item_data))
    return changes


def _same_payload(old: View, new: View, pid: str | None) -> bool:
    """Equal ids hold equal text, unless a file was edited by hand: compare the lines too."""
    if pid is None or old.log is None or new.log is None:
        return True
    return old.log.payloads.stored(pid) == new.log.payloads.stored(pid)


def _values(view: View, pids: list[str]) -> str:
    if len(pids) == 1:
        return preview(view.value(pids[0]))
    shown = ", ".join(preview(view.value(p), 30) for p in pids[:3])
    return f"{len(pids)} values: {shown}{', ...' if len(pids) > 3 else ''}"


# --- steps and tool events -----------------------------------------------------------


def diff_steps(old: View, new: View) -> tuple[list[Change], list[Change]]:
    """(step changes, tool-event changes): steps paired by (name, ordinal)."""
    a = {(s.name, s.ordinal): s for s in old.steps}
    b = {(s.name, s.ordinal): s for s in new.steps}
    steps: list[Change] = []
    tools: list[Change] = []
    for key in dict.fromkeys([*b, *a]):
        x, y = a.get(key), b.get(key)
        label = (y or x).label  # type: ignore[union-attr]
        if x is None or y is None:
            record = y if y is not None else x
            assert record is not None
            steps.append(
                Change(
                    "steps",
                    "added" if y is not None else "removed",
                    label,
                    _step_summary(record),
                    data=_step_data(record),
                )
            )
        else:
            change = _step_change(x, y)
            if change is not None:
                steps.append(change)
        tools.extend(diff_events(label, _events(x), _events(y)))
    tools.extend(diff_events("(test body)", old.tools, new.tools))
    return steps, tools


def _events(record: StepRecord | None) -> list[dict[str, Any]]:
    if record is None:
        return []
    return [e for attempt in record.attempts for e in attempt.tool_events]


def _output(record: StepRecord) -> Any:
    with_output = [a for a in record.attempts if a.has_snapshot]
    return with_output[-1].output if with_output else _NONE


def _status(record: StepRecord) -> str:
    return record.attempts[-1].status if record.attempts else "not run"


def _error(record: StepRecord) -> str | None:
    error = record.attempts[-1].error if record.attempts else None
    return f"{error.get('type')}: {error.get('message')}" if error else None


def _step_summary(record: StepRecord) -> str:
    parts = [_status(record), f"{len(record.attempts)} attempt(s)"]
    output = _output(record)
    if output is not _NONE:
        for name, keys in (("tokens", TOKEN_KEYS), ("cost", COST_KEYS)):
            value = find_metric(output, keys)
            if value is not None:
                parts.append(f"{name} {value:.12g}")
        parts.append(f"output {preview(output, 60)}")
    error = _error(record)
    if error:
        parts.append(f"error {error}")
    return ", ".join(parts)


def _step_data(record: StepRecord) -> dict[str, Any]:
    output = _output(record)
    data: dict[str, Any] = {"status": _status(record), "attempts": len(record.attempts)}
    if output is not _NONE:
        for name, keys in (("tokens", TOKEN_KEYS), ("cost", COST_KEYS)):
            value = find_metric(output, keys)
            if value is not None:
                data[name] = value
        data["attestation_ids"] = attestation_ids(output)
    return data


def metric_drift(old: Any, new: Any, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """{old, new, delta, pct} of one metric, None when equal or absent on both sides."""
    a, b = find_metric(old, keys), find_metric(new, keys)
    if a == b:
        return None
    out: dict[str, Any] = {"old": a, "new": b}
    if a is not None and b is not None:
        out["delta"] = b - a
        out["pct"] = (b - a) / abs(a) * 100 if a else None
    return out


def drift_text(name: str, drift: dict[str, Any]) -> str:
    old, new = drift["old"], drift["new"]
    text = f"{name} {_num(old)} -> {_num(new)}"
    if "delta" in drift:
        pct = drift["pct"]
        text += f" ({drift['delta']:+.6g}, {'n/a' if pct is None else f'{pct:+.1f}%'})"
    return text


def _num(value: float | None) -> str:
    return "absent" if value is None else f"{value:.12g}"


def _step_change(x: StepRecord, y: StepRecord) -> Change | None:
    details: list[str] = []
    data: dict[str, Any] = {}
    headline: list[str] = []
    if x.input_digest != y.input_digest:
        names = _changed_inputs(x.inputs, y.inputs)
        details.append(f"inputs changed: {', '.join(names) or '(digest only)'}")
        data["inputs"] = names
        headline.append("inputs")
    if len(x.attempts) != len(y.attempts):
        details.append(f"attempts {len(x.attempts)} -> {len(y.attempts)}")
        data["attempts"] = {"old": len(x.attempts), "new": len(y.attempts)}
    if _status(x) != _status(y):
        details.append(f"status {_status(x)} -> {_status(y)}")
        data["status"] = {"old": _status(x), "new": _status(y)}
        headline.append(f"{_status(x)} -> {_status(y)}")
    if _error(x) != _error(y) and (_error(x) or _error(y)):
        details.append(f"error {_error(x) or '(none)'} -> {_error(y) or '(none)'}")
    ox, oy = _output(x), _output(y)
    if ox is not _NONE and oy is not _NONE:
        for name, keys in (("tokens", TOKEN_KEYS), ("cost", COST_KEYS)):
            drift = metric_drift(ox, oy, keys)
            if drift is not None:
                details.append(drift_text(name, drift))
                data.setdefault("drift", {})[name] = drift
                pct = drift.get("pct")
                headline.append(f"{name} {pct:+.1f}%" if pct is not None else f"{name} changed")
        ids_x, ids_y = attestation_ids(ox), attestation_ids(oy)
        if ids_x != ids_y:
            missing, unexpected = diff_ids(ids_x, ids_y)
            details.append(
                f"attestation ids missing: {', '.join(missing) or '(none)'}; "
                f"unexpected: {', '.join(unexpected) or '(none)'}"
            )
            data["attestation"] = {"missing": missing, "unexpected": unexpected}
            headline.append("attestation ids")
        fields = [
            c
            for c in _field_changes(ox, oy)
            if not any(p in METRIC_KEYS or p == "attestation_ids" for p in _str_parts(c))
        ]
        if fields:
            details.extend(field_line(c) for c in fields)
            data["fields"] = [c.to_dict() for c in fields]
            headline.append(f"{len(fields)} output field(s)")
    elif (ox is _NONE) != (oy is _NONE):
        details.append("output: none -> recorded" if ox is _NONE else "output: recorded -> none")
    if not details:
        return None
    return Change("steps", "changed", y.label, ", ".join(headline) or "changed", details, data)


def _changed_inputs(old: Any, new: Any) -> list[str]:
    """Argument paths that differ (``args[0]``, ``kwargs.body``)."""
    try:
        return differing_args(arg_paths(old), arg_paths(new))
    except (TypeError, ValueError, AttributeError):  # edited by hand: not call arguments
        return ["inputs"] if _canonical(old) != _canonical(new) else []


def _str_parts(change: FieldChange) -> list[str]:
    try:
        return [p for p in change.parts if isinstance(p, str)]
    except ValueError:
        return []


def _event_key(event: dict[str, Any]) -> tuple[Any, ...]:
    if event.get("kind") == EFFECT:
        return ("effect", event.get("operation"), event.get("idempotency_key"))
    return ("event", event.get("kind"))


def _event_label(event: dict[str, Any]) -> str:
    if event.get("kind") == EFFECT:
        label = f"{event.get('operation')} [{event.get('status')}]"
        key = event.get("idempotency_key")
        return f"{label} key={key}" if key else label
    return f"{event.get('kind')} {preview(event.get('payload'), 50)}"


def _canonical(value: Any) -> str:
    """One text per value, for equality and counting (keys of any YAML type)."""
    return json.dumps(_str_keys(value), sort_keys=True, default=repr)


def _str_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {f"{type(k).__name__}:{k}": _str_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_str_keys(v) for v in value]
    return value


def diff_events(owner: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[Change]:
    """Tool events only one side has; a pair with the same operation/kind is 'changed'."""
    ca, cb = Counter(map(_canonical, old)), Counter(map(_canonical, new))
    if ca == cb:
        return []
    only_old, only_new = ca - cb, cb - ca
    removed = _take(old, only_old)
    added = _take(new, only_new)
    pending: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for event in removed:
        pending.setdefault(_event_key(event), []).append(event)
    out = []
    for event in added:
        twins = pending.get(_event_key(event))
        if twins:
            before = twins.pop(0)
            fields = _field_changes(before, event)
            status = (
                f"{before.get('status')} -> {event.get('status')}"
                if before.get("status") != event.get("status")
                else f"{len(fields)} field(s) changed"
            )
            name = event.get("operation") if event.get("kind") == EFFECT else event.get("kind")
            out.append(
                Change(
                    "tools",
                    "changed",
                    f"{owner}: {name}",
                    status,
                    [field_line(c) for c in fields],
                    {"owner": owner},
                )
            )
        else:
            out.append(
                Change("tools", "added", f"{owner}: {_event_label(event)}", data={"owner": owner})
            )
    for rest in pending.values():
        out.extend(
            Change("tools", "removed", f"{owner}: {_event_label(e)}", data={"owner": owner})
            for e in rest
        )
    return out


def _take(events: list[dict[str, Any]], wanted: Counter[str]) -> list[dict[str, Any]]:
    left = Counter(wanted)
    out = []
    for event in events:
        key = _canonical(event)
        if left[key] > 0:
            left[key] -= 1
            out.append(event)
    return out


# --- HTTP ----------------------------------------------------------------------------


def diff_http(old: list[Interaction], new: list[Interaction]) -> list[Change]:
    """Interactions paired by method + URL (the k-th of each), compared whole."""
    a, b = _keyed(old), _keyed(new)
    counts = Counter((i.method, i.uri) for i in [*old, *new])
    out = []
    for key in dict.fromkeys([*b, *a]):
        x, y = a.get(key), b.get(key)
        method, uri, k = key
        label = f"{method} {uri}" + (f" #{k}" if counts[(method, uri)] > 2 or k else "")
        if x is None or y is None:
            it = y if y is not None else x
            assert it is not None
            out.append(
                Change(
                    "http",
                    "added" if y is not None else "removed",
                    label,
                    f"status {it.status}",
                    data={"method": method, "uri": uri, "status": it.status},
                )
            )
            continue
        if _canonical(x.raw) == _canonical(y.raw):
            continue
        fields = _field_changes(x.raw, y.raw)
        summary = (
            f"status {x.status} -> {y.status}"
            if x.status != y.status
            else f"status {y.status}, {len(fields)} field(s) changed"
        )
        out.append(
            Change(
                "http",
                "changed",
                label,
                summary,
                [field_line(c) for c in fields],
                {"method": method, "uri": uri, "status": {"old": x.status, "new": y.status}},
            )
        )
    return out


def _keyed(items: list[Interaction]) -> dict[tuple[str, str, int], Interaction]:
    seen: Counter[tuple[str, str]] = Counter()
    out = {}
    for it in items:
        k = seen[(it.method, it.uri)]
        seen[(it.method, it.uri)] += 1
        out[(it.method, it.uri, k)] = it
    return out


# --- rings ---------------------------------------------------------------------------


def diff_rings(old: View, new: View) -> list[Change]:
    """Rings by name; a changed digest reads both .vrrl logs and diffs them record by record."""
    out = []
    for name in dict.fromkeys([*new.rings, *old.rings]):
        x, y = old.rings.get(name), new.rings.get(name)
        if x is None or y is None:
            entry = y if y is not None else x
            assert entry is not None
            out.append(
                Change(
                    "rings",
                    "added" if y is not None else "removed",
                    name,
                    f"{entry.get('records', '?')} record(s)",
                    data={"records": entry.get("records")},
                )
            )
            continue
        if {k: v for k, v in x.items() if k != "log"} == {k: v for k, v in y.items() if k != "log"}:
            continue
        out.append(_ring_change(name, old, new, x, y))
    return out


def _ring_change(name: str, old: View, new: View, x: dict[str, Any], y: dict[str, Any]) -> Change:
    counts = {"old": x.get("records"), "new": y.get("records")}
    details = []
    if x.get("capacity") != y.get("capacity"):
        details.append(f"capacity {x.get('capacity')} -> {y.get('capacity')}")
    try:
        result = diff_streams(old.ring_records(name), new.ring_records(name), name)
    except ReplayError as err:
        return Change(
            "rings",
            "changed",
            name,
            f"{counts['old']} -> {counts['new']} record(s); logs not compared: {err.summary}",
            details,
            {"records": counts},
        )
    if result.ok:
        return Change(
            "rings", "changed", name, "entry changed, records equal", details, {"records": counts}
        )
    payload = result.payload
    counts = {"old": payload["records"]["recorded"], "new": payload["records"]["current"]}
    diffs = payload["diffs"]
    first = diffs[0]["index"] if diffs else min(counts["old"], counts["new"])
    if counts["old"] == counts["new"]:
        summary = (
            f"{payload['differing']} of {counts['new']} record(s) differ, first at index {first}"
        )
    else:
        summary = (
            f"{payload['differing']} record(s) differ, first at index {first}; "
            f"{counts['old']} -> {counts['new']} record(s)"
        )
    for item in diffs:
        changed = ", ".join(
            f"{f} {item['recorded'][f]} -> {item['current'][f]}" for f in item["fields"]
        )
        details.append(f"record {item['index']}: {changed}")
    extra = payload.get("extra") or []
    if extra:
        side = "new" if counts["new"] > counts["old"] else "old"
        details.append(f"{abs(counts['new'] - counts['old'])} record(s) only in the {side} log")
    return Change(
        "rings",
        "changed",
        name,
        summary,
        details,
        {
            "records": counts,
            "differing": payload["differing"],
            "first_index": first,
            "first_fields": diffs[0]["fields"] if diffs else [],
        },
    )


# --- arrays --------------------------------------------------------------------------


def diff_arrays(old: View, new: View) -> list[Change]:
    """Array checks by (name, ordinal); a changed blob is loaded and its error measured."""
    a = {(e["name"], e.get("ordinal", 0)): e for e in old.arrays}
    b = {(e["name"], e.get("ordinal", 0)): e for e in new.arrays}
    counts = Counter(name for name, _ in [*a, *b])
    out = []
    for key in dict.fromkeys([*b, *a]):
        x, y = a.get(key), b.get(key)
        name, k = key
        label = f"{name}#{k}" if k or counts[name] > 2 else str(name)
        if x is None or y is None:
            entry = y if y is not None else x
            assert entry is not None
            out.append(
                Change(
                    "arrays",
                    "added" if y is not None else "removed",
                    label,
                    f"{entry.get('dtype')} {entry.get('shape')}",
                    data={"dtype": entry.get("dtype"), "shape": entry.get("shape")},
                )
            )
            continue
        if x["blob"] == y["blob"]:
            continue
        try:
            stats = array_error(old.array(x), new.array(y))
        except ReplayError as err:
            out.append(
                Change("arrays", "changed", label, f"blob changed; not compared: {err.summary}")
            )
            continue
        out.append(Change("arrays", "changed", label, _array_summary(stats), data=stats))
    return out


def array_error(old: np.ndarray, new: np.ndarray) -> dict[str, Any]:
    """Shape/dtype changes, or how many elements differ and the max abs/rel error."""
    out: dict[str, Any] = {"size": int(new.size)}
    if old.shape != new.shape:
        out["shape"] = {"old": list(old.shape), "new": list(new.shape)}
        return out
    if old.dtype != new.dtype:
        out["dtype"] = {"old": str(old.dtype), "new": str(new.dtype)}
    numeric = old.dtype.kind in "biufc" and new.dtype.kind in "biufc"
    if not numeric:
        try:
            differ = np.asarray(old != new, dtype=bool).reshape(old.shape)
        except (TypeError, ValueError):
            differ = np.ones(old.shape, dtype=bool)
        out["differing"] = int(differ.sum())
        if differ.any():
            out["first_index"] = [int(i) for i in np.unravel_index(int(differ.argmax()), old.shape)]
        return out
    wide = np.complex128 if "c" in (old.dtype.kind, new.dtype.kind) else np.float64
    x, y = old.astype(wide), new.astype(wide)
    with np.errstate(all="ignore"):
        nan_x, nan_y = np.isnan(x), np.isnan(y)
        err = np.abs(y - x)
        err = np.where(x == y, 0.0, err)  # equal infinities
        err = np.where(nan_x & nan_y, 0.0, err)
        err = np.where(nan_x ^ nan_y, np.inf, err)
        err = np.where(np.isnan(err), np.inf, err)
        scale = np.abs(x)
        rel = np.where(err == 0, 0.0, np.where(scale == 0, np.inf, err / scale))
    differ = err != 0
    out["differing"] = int(differ.sum())
    out["max_abs"] = float(err.max()) if err.size else 0.0
    out["max_rel"] = float(rel.max()) if rel.size else 0.0
    if int((nan_x ^ nan_y).sum()):
        out["nan_mismatch"] = int((nan_x ^ nan_y).sum())
    if differ.any():
        out["first_index"] = [int(i) for i in np.unravel_index(int(differ.argmax()), old.shape)]
    return out


def _array_summary(stats: dict[str, Any]) -> str:
    if "shape" in stats:
        return f"shape {stats['shape']['old']} -> {stats['shape']['new']}"
    parts = []
    if "dtype" in stats:
        parts.append(f"dtype {stats['dtype']['old']} -> {stats['dtype']['new']}")
    parts.append(f"{stats['differing']} of {stats['size']} element(s) differ")
    if "max_abs" in stats:
        parts.append(f"max abs error {stats['max_abs']:.3g}, max rel error {stats['max_rel']:.3g}")
    if "first_index" in stats:
        parts.append(f"first at {tuple(stats['first_index'])}")
    return "; ".join(parts)


# --- everything else -----------------------------------------------------------------


def diff_other(old: View, new: View, *, both: bool) -> list[Change]:
    """Sections this version does not decode (``resume``...) and the header's test id."""
    out = []
    if both and old.test != new.test:
        out.append(Change("other", "changed", "test", f"{old.test} -> {new.test}"))
    for key in dict.fromkeys([*new.other, *old.other]):
        x, y = old.other.get(key, _NONE), new.other.get(key, _NONE)
        if x is _NONE or y is _NONE:
            value = y if y is not _NONE else x
            out.append(
                Change("other", "added" if y is not _NONE else "removed", str(key), preview(value))
            )
            continue
        if _canonical(x) == _canonical(y):
            continue
        fields = _field_changes(x, y)
        out.append(
            Change(
                "other",
                "changed",
                str(key),
                f"{len(fields)} field(s) changed",
                [field_line(c) for c in fields],
            )
        )
    return out


# --- field changes -------------------------------------------------------------------


def _field_changes(old: Any, new: Any) -> list[FieldChange]:
    try:
        return diff_snapshot(old, new)
    except (TypeError, ValueError, RecursionError):  # data deepdiff cannot walk
        return [FieldChange("", old, new, ChangeType.MODIFIED)]


def field_line(change: FieldChange) -> str:
    """``path: old -> new``, ``+ path = new``, ``- path (was old)``."""
    path = change.path or "(root)"
    if change.change is ChangeType.ADDED:
        return f"+ {path} = {preview(change.new, 60)}"
    if change.change is ChangeType.REMOVED:
        return f"- {path} (was {preview(change.old, 60)})"
    return f"{path}: {preview(change.old, 60)} -> {preview(change.new, 60)}"
