"""Pair the cassettes at BASE with those of the working tree and review each pair."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..cassette import strip_volatile
from ..errors import CassetteError, ReplayError, RingLogError
from ..ring.section import rings_section_problem
from .semantic import OPS, SECTIONS, Change, diff_views
from .sources import Side, sidecar_name
from .view import View, parse, view_of

STATUSES = ("changed", "removed", "added")


@dataclass
class CassetteReview:
    """One cassette that differs: its status and every semantic change."""

    path: str
    test: str
    status: str  # changed | removed | added
    changes: list[Change] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """section -> op -> number of changes (sections without changes left out)."""
        out: dict[str, dict[str, int]] = {}
        for change in self.changes:
            out.setdefault(change.section, dict.fromkeys(OPS, 0))[change.op] += 1
        return {s: out[s] for s in SECTIONS if s in out}

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "test": self.test,
            "status": self.status,
            "counts": self.counts(),
            "changes": [c.to_json() for c in self.changes],
        }


@dataclass
class Review:
    """What changed between BASE and the working tree, cassette by cassette."""

    base: str  # commit id
    base_label: str  # how it was chosen ('merge base of HEAD and origin/main', 'v1.2')
    head_label: str
    cassettes: list[CassetteReview]
    unchanged: int

    def totals(self) -> dict[str, int]:
        counts = Counter(c.status for c in self.cassettes)
        return {**{s: counts[s] for s in STATUSES}, "unchanged": self.unchanged}

    def to_json(self) -> dict[str, Any]:
        return {
            "base": {"commit": self.base, "label": self.base_label},
            "head": self.head_label,
            "totals": self.totals(),
            "cassettes": [c.to_json() for c in self.cassettes],
        }


_FIX = "restore it from version control, or re-record: pytest --replay=record {test}"


def _unreadable(err: ReplayError, shown: str, test: str | None) -> ReplayError:
    if err.fix is None:
        err.fix = _FIX
    return err.with_context(test=test, cassette=shown)


def _view(side: Side, rel: str, doc: dict[str, Any]) -> View:
    shown = side.shown(rel)
    try:
        return view_of(
            doc,
            shown,
            side.blob_store(rel),
            lambda log: side.ring_records(rel, log, shown),
        )
    except ReplayError as err:
        raise _unreadable(err, shown, _test_of(doc)) from None


def _parse(side: Side, rel: str, data: bytes) -> dict[str, Any]:
    shown = side.shown(rel)
    try:
        return parse(data, shown)
    except ReplayError as err:
        raise _unreadable(err, shown, None) from None


_RINGS_KEY = re.compile(rb"^rings:", re.MULTILINE)


def _check_ring_logs(side: Side, rel: str, data: bytes) -> dict[str, Any] | None:
    """Raise RingLogError when a ring log the cassette names is not on ``side``.

    Pairs are compared by their YAML bytes, so a deleted .vrrl next to an
    unchanged cassette would pass unseen; strict replay would then fail.
    Returns the parsed document when it had to be parsed, for reuse.
    """
    if not _RINGS_KEY.search(data):
        return None
    shown = side.shown(rel)
    doc = _parse(side, rel, data)
    rings = doc.get("rings")
    problem = rings_section_problem(rings) if rings is not None else None
    if problem is not None:
        summary, place = problem
        raise _unreadable(CassetteError(summary, place=place), shown, _test_of(doc))
    for entry in (rings or {}).values():
        log = sidecar_name(rel, entry["log"], shown)
        if not side.has_file(log):
            err = RingLogError("ring log does not exist", place=side.shown(log))
            raise _unreadable(err, shown, _test_of(doc))
    return doc


def _test_of(doc: dict[str, Any]) -> str | None:
    return str(doc.get("test") or "") or None


def review_sides(base: Side, head: Side, *, commit: str, base_label: str) -> Review:
    """Compare every cassette of ``base`` with ``head``; unreadable ones raise ReplayError."""
    old, new = base.cassettes(), head.cassettes()
    # Parsed here only when they have rings; reused below for a changed pair.
    head_docs = {rel: _check_ring_logs(head, rel, data) for rel, data in new.items()}
    reviews: list[CassetteReview] = []
    unchanged = 0
    for rel in sorted(set(old) | set(new)):
        a, b = old.get(rel), new.get(rel)
        if a == b:
            unchanged += 1
            continue
        doc_a = _parse(base, rel, a) if a is not None else None
        doc_b = head_docs.get(rel) or (_parse(head, rel, b) if b is not None else None)
        if (
            doc_a is not None
            and doc_b is not None
            and strip_volatile(doc_a) == strip_volatile(doc_b)
        ):
            unchanged += 1  # durations or timestamps only
            continue
        view_a = _view(base, rel, doc_a) if doc_a is not None else None
        view_b = _view(head, rel, doc_b) if doc_b is not None else None
        changes = diff_views(view_a, view_b)
        status = "added" if view_a is None else "removed" if view_b is None else "changed"
        if status == "changed" and not changes:
            unchanged += 1
            continue
        test = (view_b or view_a).test  # type: ignore[union-attr]
        reviews.append(CassetteReview(rel, test, status, changes))
    reviews.sort(key=lambda r: (STATUSES.index(r.status), r.path))
    return Review(commit, base_label, head.label, reviews, unchanged)
