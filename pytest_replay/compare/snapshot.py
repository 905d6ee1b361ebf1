"""Field-level snapshot diff: paths, FieldChange records from deepdiff, and their table."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from deepdiff import DeepDiff
from deepdiff.helper import notpresent

from ..canonical import NotCanonical, jsonable

Part = str | int

ROOT_LABEL = "(root)"
TABLE_LIMIT = 20
DEFAULT_ARTIFACT = "the diff artifact"
_VALUE_WIDTH = 48
_PATH_WIDTH = 48

# --- field paths: `output.items[0].name`, `output.items.0.name`, `meta["a.b"]` ----

_INDEX = re.compile(r"\[([0-9]+)\]")
_QUOTED = re.compile(r'\[("(?:[^"\\]|\\.)*")\]')
_NAME = re.compile(r"[^.\[\]]+")
_BARE = re.compile(r'[^.\[\]"\s]+')
_DIGITS = re.compile(r"[0-9]+")


def parse_path(text: str) -> tuple[Part, ...]:
    """Split a dotted field path into keys (str) and list indices (int); "" is the root.

    A dotted all-digit segment is an index into a list (or the key "0" of a
    mapping), so ``items.0`` and ``items[0]`` name the same field.
    """
    parts: list[Part] = []
    pos = 0
    while pos < len(text):
        bracket = _INDEX.match(text, pos) or _QUOTED.match(text, pos)
        if bracket:
            raw = bracket.group(1)
            parts.append(int(raw) if raw[0] != '"' else json.loads(raw))
            pos = bracket.end()
            continue
        start = pos if pos == 0 else pos + 1
        name = _NAME.match(text, start) if (pos == 0 or text[pos] == ".") else None
        if name is None:
            raise ValueError(f"bad field path {text!r}: unexpected text at column {pos}")
        segment = name.group()
        parts.append(int(segment) if _DIGITS.fullmatch(segment) else segment)
        pos = name.end()
    return tuple(parts)


def format_path(parts: tuple[Part, ...] | list[Part]) -> str:
    """The inverse of parse_path: ``a.b[0]``, quoting keys that are not plain names."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out.append(f"[{part}]")
            continue
        key = str(part)  # non-JSON keys (never in a cassette) still get a readable path
        if _BARE.fullmatch(key) and not _DIGITS.fullmatch(key):
            out.append(key if not out else f".{key}")
        else:
            out.append(f"[{json.dumps(key, ensure_ascii=False)}]")
    return "".join(out)


def lookup(value: Any, parts: tuple[Part, ...]) -> tuple[bool, Any]:
    """(found, value) at ``parts`` inside a plain JSON-like value."""
    for part in parts:
        if isinstance(value, dict):
            key = str(part)
            if key not in value:
                return False, None
            value = value[key]
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return False, None
    return True, value


# --- changes ---------------------------------------------------------------------


class ChangeType(str, Enum):
    """How one field differs between the recorded and the current output."""

    ADDED = "Added"
    REMOVED = "Removed"
    MODIFIED = "Modified"


_REPORT_CHANGE = {
    "dictionary_item_added": ChangeType.ADDED,
    "iterable_item_added": ChangeType.ADDED,
    "attribute_added": ChangeType.ADDED,
    "set_item_added": ChangeType.ADDED,
    "dictionary_item_removed": ChangeType.REMOVED,
    "iterable_item_removed": ChangeType.REMOVED,
    "attribute_removed": ChangeType.REMOVED,
    "set_item_removed": ChangeType.REMOVED,
    "values_changed": ChangeType.MODIFIED,
    "type_changes": ChangeType.MODIFIED,
}


@dataclass(frozen=True)
class FieldChange:
    """One changed field; ``old`` is None when Added, ``new`` is None when Removed."""

    path: str
    old: Any
    new: Any
    change: ChangeType

    @property
    def parts(self) -> tuple[Part, ...]:
        return parse_path(self.path)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"path": self.path, "change": self.change.value}
        if self.change is not ChangeType.ADDED:
            body["old"] = _to_json(self.old)
        if self.change is not ChangeType.REMOVED:
            body["new"] = _to_json(self.new)
        return body

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FieldChange:
        return cls(data["path"], data.get("old"), data.get("new"), ChangeType(data["change"]))


def _sort_key(parts: list[Part]) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in parts)


def diff_snapshot(recorded: Any, current: Any) -> list[FieldChange]:
    """Every changed field between two plain values, sorted by path.

    Lists are compared in order; NaN equals NaN; 1, 1.0 and True differ, as in
    the strict structure check. Dicts are always walked into (no "replaced
    whole" shortcut), so each row names one field.
    """
    tree = DeepDiff(
        recorded,
        current,
        view="tree",
        ignore_nan_inequality=True,
        threshold_to_diff_deeper=0,
    )
    found: list[tuple[list[Part], FieldChange]] = []
    for report, levels in tree.items():
        change = _REPORT_CHANGE.get(report)
        if change is None:
            continue  # bookkeeping reports (repetition, unprocessed) carry no field change
        for level in levels:
            parts = list(level.path(output_format="list"))
            old = None if level.t1 is notpresent else level.t1
            new = None if level.t2 is notpresent else level.t2
            found.append((parts, FieldChange(format_path(parts), old, new, change)))
    found.sort(key=lambda item: (_sort_key(item[0]), item[1].change.value))
    return [change for _, change in found]


# --- the table -------------------------------------------------------------------


def _to_json(value: Any) -> Any:
    try:
        return jsonable(value)
    except NotCanonical:
        return repr(value)


def _cell(value: Any, present: bool) -> str:
    if not present:
        return "-"
    try:
        text = json.dumps(_to_json(value), ensure_ascii=False, sort_keys=True)
    except ValueError:
        text = repr(value)
    if len(text) > _VALUE_WIDTH:
        text = text[: _VALUE_WIDTH - 3] + "..."
    return text


def _clip_path(path: str) -> str:
    path = path or ROOT_LABEL
    if len(path) > _PATH_WIDTH:
        path = "..." + path[-(_PATH_WIDTH - 3) :]
    return path


def render_changes(
    changes: list[FieldChange], *, limit: int = TABLE_LIMIT, artifact: str = DEFAULT_ARTIFACT
) -> list[str]:
    """Readable table lines: the first ``limit`` changes, then "N more in <artifact>"."""
    if not changes:
        return []
    shown = changes[:limit]
    rows = [("change", "path", "recorded", "current")] + [
        (
            c.change.value,
            _clip_path(c.path),
            _cell(c.old, c.change is not ChangeType.ADDED),
            _cell(c.new, c.change is not ChangeType.REMOVED),
        )
        for c in shown
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"field changes ({len(changes)}):"]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(3)] + [row[3]]
        lines.append("  " + "  ".join(cells).rstrip())
    if len(changes) > limit:
        lines.append(f"  ... {len(changes) - limit} more in {artifact}")
    return lines
