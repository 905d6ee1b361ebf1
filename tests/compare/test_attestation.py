"""Attestation ids: equal and in order, or a diff naming missing and unexpected ids."""

from __future__ import annotations

import uuid

from pytest_replay.compare import attestation_ids, compare_attestations


def test_equal_ids_pass():
    output = {"result": "ok", "attestation_ids": ["a1", "a2"]}
    result = compare_attestations(output, dict(output), step="sign")
    assert result.ok
    assert result.payload == {"step": "sign", "attestation_ids": ["a1", "a2"]}


def test_mismatch_names_missing_and_unexpected_ids():
    recorded_id, current_id = str(uuid.uuid4()), str(uuid.uuid4())
    result = compare_attestations(
        {"result": "ok", "attestation_ids": [recorded_id]},
        {"result": "ok", "attestation_ids": [current_id]},
        step="sign",
    )
    assert not result.ok
    assert result.kind == "replay_attestation_diff"
    assert result.summary == "attestation ids diverged during replay for step sign"
    assert result.payload == {
        "step": "sign",
        "recorded": [recorded_id],
        "current": [current_id],
        "missing": [recorded_id],
        "unexpected": [current_id],
    }
    assert result.details[0] == f"missing (recorded, not produced now): {recorded_id}"
    assert result.details[1] == f"unexpected (produced now, not recorded): {current_id}"
    assert result.place == "sign: attestation_ids"


def test_partial_overlap_lists_only_the_differences():
    result = compare_attestations(
        {"attestation_ids": ["a", "b", "c"]}, {"attestation_ids": ["a", "c", "d"]}, step="s"
    )
    assert result.payload["missing"] == ["b"]
    assert result.payload["unexpected"] == ["d"]


def test_order_matters():
    result = compare_attestations(
        {"attestation_ids": ["a", "b"]}, {"attestation_ids": ["b", "a"]}, step="s"
    )
    assert not result.ok
    assert result.payload["missing"] == [] and result.payload["unexpected"] == []
    assert "different order or number" in result.details[-1]
    assert "(none)" in result.details[0]


def test_ids_only_at_top_level_and_only_strings():
    assert attestation_ids({"attestation_ids": ["a", 1, None, "b"]}) == ["a", "b"]
    assert attestation_ids({"inner": {"attestation_ids": ["a"]}}) == []
    assert attestation_ids({"attestation_ids": "a"}) == []
    assert attestation_ids(["a"]) == []
    assert attestation_ids(None) == []


def test_absent_and_empty_lists_are_equal():
    assert compare_attestations({"r": 1}, {"r": 1, "attestation_ids": []}, step="s").ok


def test_ids_appearing_where_none_were_recorded_are_unexpected():
    result = compare_attestations({}, {"attestation_ids": ["new"]}, step="s")
    assert not result.ok and result.payload["unexpected"] == ["new"]
