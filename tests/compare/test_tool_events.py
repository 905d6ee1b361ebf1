"""Tool-event parity: canonical comparison, first differing index, and its deepdiff."""

from __future__ import annotations

from pytest_replay.compare import canonical_events, compare_tool_events, events_identical


def test_the_reference_mismatch_is_a_tool_diff_at_index_0():
    recorded = [{"kind": "tool.run", "payload": {"stdout": "hello"}, "trace": {"span_id": "abc"}}]
    current = [{"kind": "tool.run", "payload": {"stdout": "goodbye"}, "trace": {"span_id": "def"}}]
    result = compare_tool_events(recorded, current, step="run")
    assert not result.ok
    assert result.kind == "replay_tool_diff"
    assert result.summary == "tool events diverged during replay for step run"
    assert result.place == "run: tool_events[0]"
    assert result.payload["index"] == 0
    assert "first differing event: tool_events[0]" in result.details
    rows = [line.split() for line in result.details if line.startswith("  Modified")]
    assert rows == [
        ["Modified", "tool_events[0].payload.stdout", '"hello"', '"goodbye"'],
        ["Modified", "tool_events[0].trace.span_id", '"abc"', '"def"'],
    ]
    assert [c["path"] for c in result.payload["changes"]] == [
        "tool_events[0].payload.stdout",
        "tool_events[0].trace.span_id",
    ]


def test_key_order_does_not_matter_at_any_depth():
    a = [{"kind": "k", "payload": {"x": 1, "y": {"p": 1, "q": 2}}}]
    b = [{"payload": {"y": {"q": 2, "p": 1}, "x": 1}, "kind": "k"}]
    assert compare_tool_events(a, b, step="s").ok
    assert list(canonical_events(b)[0]) == ["kind", "payload"]
    assert list(canonical_events(b)[0]["payload"]["y"]) == ["p", "q"]


def test_absent_events_equal_only_absent_events():
    assert events_identical(None, None)
    assert not events_identical(None, [])
    assert not events_identical([], None)
    result = compare_tool_events(None, [{"kind": "k"}], step="s")
    assert not result.ok
    assert "recorded none captured, current 1 event(s)" in result.details[0]
    assert result.payload["recorded"] is None


def test_a_none_value_differs_from_a_missing_key():
    result = compare_tool_events([{"kind": "k", "error": None}], [{"kind": "k"}], step="s")
    assert not result.ok
    assert result.payload["changes"] == [
        {"path": "tool_events[0].error", "change": "Removed", "old": None}
    ]


def test_first_differing_index_is_reported():
    base = [{"kind": "a"}, {"kind": "b"}, {"kind": "c"}]
    changed = [{"kind": "a"}, {"kind": "B"}, {"kind": "C"}]
    result = compare_tool_events(base, changed, step="s")
    assert result.payload["index"] == 1
    assert (result.recorded, result.current) == ({"kind": "b"}, {"kind": "B"})


def test_an_extra_event_is_added_at_the_end():
    result = compare_tool_events([{"kind": "a"}], [{"kind": "a"}, {"kind": "b"}], step="s")
    assert result.payload["index"] == 1
    assert result.payload["changes"] == [
        {"path": "tool_events[1]", "change": "Added", "new": {"kind": "b"}}
    ]
    assert (result.recorded, result.current) == (None, {"kind": "b"})


def test_a_missing_event_is_removed():
    result = compare_tool_events([{"kind": "a"}, {"kind": "b"}], [{"kind": "a"}], step="s")
    assert result.payload["changes"][0]["change"] == "Removed"


def test_tuples_compare_like_lists_and_types_matter():
    assert compare_tool_events([{"args": (1, 2)}], [{"args": [1, 2]}], step="s").ok
    assert not compare_tool_events([{"n": 1}], [{"n": 1.0}], step="s").ok


def test_passing_payload_counts_events():
    assert compare_tool_events([{"k": 1}], [{"k": 1}], step="s").payload == {
        "step": "s",
        "tool_events": 1,
    }
