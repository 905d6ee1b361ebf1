"""Snapshot diff: FieldChange rows from deepdiff, field paths, and the readable table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_replay.compare import (
    ChangeType,
    FieldChange,
    diff_snapshot,
    format_path,
    parse_path,
    render_changes,
)
from pytest_replay.compare.snapshot import lookup


def test_added_removed_and_modified_fields():
    recorded = {"answer": "Paris", "sources": ["a"], "meta": {"model": "m1"}}
    current = {"answer": "Lyon", "sources": ["a", "b"], "meta": {}, "extra": 1}
    changes = diff_snapshot(recorded, current)
    assert changes == [
        FieldChange("answer", "Paris", "Lyon", ChangeType.MODIFIED),
        FieldChange("extra", None, 1, ChangeType.ADDED),
        FieldChange("meta.model", "m1", None, ChangeType.REMOVED),
        FieldChange("sources[1]", None, "b", ChangeType.ADDED),
    ]


def test_equal_values_have_no_changes():
    value = {"a": [1, {"b": None}], "n": float("nan")}
    assert diff_snapshot(value, {"a": [1, {"b": None}], "n": float("nan")}) == []


def test_type_changes_are_modifications():
    changes = diff_snapshot({"x": 1, "y": 1}, {"x": 1.0, "y": True})
    assert [(c.path, c.change) for c in changes] == [
        ("x", ChangeType.MODIFIED),
        ("y", ChangeType.MODIFIED),
    ]


def test_dicts_with_few_shared_keys_are_still_diffed_field_by_field():
    changes = diff_snapshot({"a": {"x": 1, "y": 2, "z": 3}}, {"a": {"p": 1, "q": 2, "z": 4}})
    assert [c.path for c in changes] == ["a.p", "a.q", "a.x", "a.y", "a.z"]


def test_root_change_has_the_empty_path():
    [change] = diff_snapshot("a", "b")
    assert change.path == "" and change.parts == ()
    assert "(root)" in render_changes([change])[2]


def test_to_dict_omits_the_absent_side_and_round_trips():
    added = FieldChange("a[0]", None, {"k": 1}, ChangeType.ADDED)
    removed = FieldChange("b", 2, None, ChangeType.REMOVED)
    assert added.to_dict() == {"path": "a[0]", "change": "Added", "new": {"k": 1}}
    assert removed.to_dict() == {"path": "b", "change": "Removed", "old": 2}
    for change in (added, removed):
        assert FieldChange.from_dict(change.to_dict()) == change


def test_table_has_a_header_and_one_row_per_change():
    changes = diff_snapshot({"answer": "Paris"}, {"answer": "Lyon", "n": None})
    lines = render_changes(changes)
    assert lines[0] == "field changes (2):"
    assert lines[1].split() == ["change", "path", "recorded", "current"]
    assert lines[2].split() == ["Modified", "answer", '"Paris"', '"Lyon"']
    assert lines[3].split() == ["Added", "n", "-", "null"]


def test_table_shows_twenty_rows_then_names_the_artifact():
    recorded = {f"k{i:02d}": i for i in range(25)}
    current = {f"k{i:02d}": i + 1 for i in range(25)}
    lines = render_changes(diff_snapshot(recorded, current), artifact="diffs/abc.json")
    rows = [line for line in lines if line.strip().startswith("Modified")]
    assert len(rows) == 20
    assert lines[-1].strip() == "... 5 more in diffs/abc.json"
    assert render_changes([]) == []


def test_long_values_are_clipped_in_the_table():
    [line] = render_changes([FieldChange("t", "x" * 500, "y", ChangeType.MODIFIED)])[2:]
    assert "..." in line and len(line) < 120


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("", ()),
        ("output.answer", ("output", "answer")),
        ("items[0].name", ("items", 0, "name")),
        ("items.0.name", ("items", 0, "name")),
        ('meta["a.b"][2]', ("meta", "a.b", 2)),
        ("[1][2]", (1, 2)),
    ],
)
def test_parse_path(text, parts):
    assert parse_path(text) == parts


@pytest.mark.parametrize("bad", [".a", "a.", "a..b", "a[x]", "a[0]b", "a[-1]"])
def test_malformed_paths_are_rejected(bad):
    with pytest.raises(ValueError, match="bad field path"):
        parse_path(bad)


def test_format_path_quotes_keys_that_are_not_plain_names():
    assert format_path(["a", 0, "b"]) == "a[0].b"
    assert format_path(["a.b", "has space", "0", ""]) == '["a.b"]["has space"]["0"][""]'


@given(st.lists(st.one_of(st.integers(0, 99), st.text(max_size=6)), max_size=5))
def test_format_then_parse_round_trips(parts):
    assert parse_path(format_path(parts)) == tuple(parts)


def test_lookup_walks_keys_and_indices():
    value = {"a": [{"b": 1}], "0": "zero"}
    assert lookup(value, ("a", 0, "b")) == (True, 1)
    assert lookup(value, (0,)) == (True, "zero")
    assert lookup(value, ("a", 1)) == (False, None)
    assert lookup(value, ("a", "x")) == (False, None)
    assert lookup(value, ()) == (True, value)
