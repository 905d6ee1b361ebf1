"""The review as text, as a markdown PR comment (bounded in size), or as JSON."""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any

from .semantic import OPS, SECTIONS, Change
from .tree import CassetteReview, Review

MAX_CHARS = 60_000  # GitHub refuses comments over 65536 characters
MAX_ITEMS = 20  # changes shown per section of one cassette
MAX_DETAILS = 8  # detail lines shown per change
MAX_ROWS = 200  # rows of the markdown summary table
_SIGN = {"added": "+", "removed": "-", "changed": "!"}
_NOUN = {
    "facts": "fact",
    "steps": "step",
    "tools": "tool event",
    "http": "HTTP interaction",
    "rings": "ring",
    "arrays": "array",
    "other": "other change",
}


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _cut(items: list[Any], limit: int) -> tuple[list[Any], int]:
    if limit <= 0 or len(items) <= limit:
        return items, 0
    return items[:limit], len(items) - limit


def _totals_line(review: Review) -> str:
    totals = review.totals()
    return ", ".join(f"{totals[k]} {k}" for k in ("changed", "removed", "added", "unchanged"))


def _by_section(cassette: CassetteReview) -> dict[str, list[Change]]:
    out: dict[str, list[Change]] = {}
    for change in cassette.changes:
        out.setdefault(change.section, []).append(change)
    return {s: out[s] for s in SECTIONS if s in out}


def _section_counts(changes: list[Change]) -> str:
    counts = {op: sum(c.op == op for c in changes) for op in OPS}
    return ", ".join(f"{n} {op}" for op, n in counts.items() if n)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _change_lines(change: Change, max_details: int) -> list[str]:
    head = f"{_SIGN[change.op]} {change.item}"
    if change.summary:
        head += f": {change.summary}"
    details, more = _cut(change.details, max_details)
    lines = [_one_line(head), *(f"    {_one_line(d)}" for d in details)]
    if more:
        lines.append(f"    ... {more} more line(s)")
    return lines


def _section_lines(
    section: str, changes: list[Change], max_items: int, max_details: int
) -> list[str]:
    shown, more = _cut(changes, max_items)
    lines = [line for change in shown for line in _change_lines(change, max_details)]
    if more:
        lines.append(f"... {more} more {_NOUN[section]}(s) not shown")
    return lines


# --- text ------------------------------------------------------------------------------


def render_text(review: Review, *, max_items: int = MAX_ITEMS) -> str:
    """Plain text for a terminal; ``max_items`` <= 0 shows every change."""
    out = [
        f"pytest-replay review: {review.head_label} vs {review.base[:12]} ({review.base_label})",
        _totals_line(review),
    ]
    if not review.cassettes:
        out.append("No cassette changed.")
    for cassette in review.cassettes:
        out.append("")
        test = f"  ({cassette.test})" if cassette.test else ""
        out.append(f"{cassette.status:<8} {cassette.path}{test}")
        for section, changes in _by_section(cassette).items():
            out.append(f"  {section}: {_section_counts(changes)}")
            out.extend(
                f"    {line}" for line in _section_lines(section, changes, max_items, MAX_DETAILS)
            )
    return "\n".join(out) + "\n"


# --- JSON ------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def render_json(review: Review) -> str:
    """Every change, untruncated (infinite numbers as the strings 'inf', 'nan')."""
    return (
        json.dumps(_json_safe(review.to_json()), indent=2, ensure_ascii=False, default=str) + "\n"
    )


# --- markdown --------------------------------------------------------------------------


def _code(text: str) -> str:
    # '|' would end a table cell even inside <code>.
    return f"<code>{html.escape(_one_line(text)).replace('|', '&#124;')}</code>"


def _cell_counts(changes: list[Change]) -> str:
    counts = {op: sum(c.op == op for c in changes) for op in OPS}
    return " ".join(f"{_SIGN[op]}{n}" for op, n in counts.items() if n)


def _fence(lines: list[str]) -> str:
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    ticks = "`" * max(3, longest + 1)
    return "\n".join([f"{ticks}diff", *lines, ticks])


def _details_block(cassette: CassetteReview, max_items: int, max_details: int) -> str:
    sections = _by_section(cassette)
    counts = ", ".join(f"{s} {_cell_counts(c)}" for s, c in sections.items())
    title = f"<b>{cassette.status}</b> {_code(cassette.path)}: {html.escape(counts)}"
    parts = ["<details>", f"<summary>{title}</summary>", ""]
    if cassette.test:
        parts += [f"Test: {_code(cassette.test)}", ""]
    for section, changes in sections.items():
        parts.append(f"**{section}** ({_section_counts(changes)})")
        parts.append("")
        parts.append(_fence(_section_lines(section, changes, max_items, max_details)))
        parts.append("")
    parts.append("</details>")
    return "\n".join(parts)


def _table(columns: list[str], rows: list[CassetteReview]) -> list[str]:
    lines = [
        "| cassette | status | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for cassette in rows:
        sections = _by_section(cassette)
        cells = [_cell_counts(sections[c]) if c in sections else "" for c in columns]
        lines.append(f"| {_code(cassette.path)} | {cassette.status} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(
    review: Review,
    *,
    max_chars: int = MAX_CHARS,
    max_items: int = MAX_ITEMS,
    base_arg: str | None = None,
) -> str:
    """A ready PR comment: summary table first, then one ``<details>`` block per cassette.

    The result stays under ``max_chars``: sections longer than ``max_items``
    are cut with a count, and cassettes whose details do not fit are named
    in a closing line with how many were left out.
    """
    rerun = f"pytest-replay review {base_arg or review.base[:12]}".replace("`", "")
    head = [
        "### pytest-replay: cassette review",
        "",
        f"{review.head_label.capitalize()} compared with `{review.base[:12]}` "
        f"({html.escape(review.base_label)}): {_totals_line(review)}.",
        "",
    ]
    if not review.cassettes:
        return "\n".join([*head, "No cassette changed."]) + "\n"
    columns = [
        s for s in SECTIONS if any(c.section == s for r in review.cassettes for c in r.changes)
    ]
    legend = "<sub>+ added, - removed, ! changed: items per section</sub>"
    reserve = 400  # room for the closing note
    fit = min(len(review.cassettes), MAX_ROWS)
    while True:  # only when even the table is too long: fewer rows, with a count
        table = _table(columns, review.cassettes[:fit])
        hidden = len(review.cassettes) - fit
        if hidden:
            table.append(f"| {hidden} more cassette(s) |  |" + "  |" * len(columns))
        text = "\n".join([*head, *table, "", legend])
        if len(text) + reserve <= max_chars or fit == 0:
            break
        fit = fit // 2 if fit > 8 else fit - 1
    blocks: list[str] = []
    left_out = 0
    for cassette in review.cassettes:
        if left_out:
            left_out += 1
            continue
        for items, details in ((max_items, MAX_DETAILS), (min(max_items, 3) or 3, 2)):
            block = _details_block(cassette, items, details)
            if len(text) + sum(len(b) + 2 for b in blocks) + len(block) + reserve <= max_chars:
                blocks.append(block)
                break
        else:
            left_out = 1
    parts = [text, *blocks]
    if left_out:
        parts.append(
            f"_{left_out} more cassette(s) not detailed here to stay under {max_chars} "
            f"characters; run `{rerun}` for the full report._"
        )
    return "\n\n".join(parts).rstrip("\n") + "\n"
