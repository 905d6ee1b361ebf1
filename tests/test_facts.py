"""IO facts: sequences, payload ids, derived keys, errors, blobs, threads and async."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pytest_replay.blobs import BlobStore
from pytest_replay.canonical import canonical_json, digest
from pytest_replay.errors import FactPayloadInvalid, MissingFact, MissingFactKey
from pytest_replay.facts import FactLog, scope
from pytest_replay.modes import Mode


def record_then_replay(tmp_path, body, mode=Mode.REPLAY, retryable=False):
    """Run ``body(log)`` in record mode, then again in ``mode`` over what it recorded."""
    blobs = BlobStore(tmp_path / ".blobs")
    rec = FactLog(mode=Mode.RECORD, blobs=blobs, threshold=64, retryable=False)
    first = body(rec)
    doc = rec.to_yaml()
    blobs.flush()
    rep = FactLog(
        mode=mode,
        blobs=BlobStore(tmp_path / ".blobs"),  # a fresh store: read back from disk
        threshold=64,
        retryable=retryable,
        recorded=doc,
    )
    return first, rep, doc


def test_a_repeated_key_is_a_sequence_and_keys_do_not_shift_each_other(tmp_path):
    counter = iter(range(100))

    def body(log):
        return [
            log.fact("a", next, counter),
            log.fact("b", next, counter),
            log.fact("a", next, counter),
        ]

    first, rep, _ = record_then_replay(tmp_path, body)
    assert first == [0, 1, 2]
    # replay asks in another interleaving: per-key ordinals, not one global counter
    assert rep.fact("b", next, counter) == 1
    assert rep.fact("a", next, counter) == 0
    assert rep.fact("a", next, counter) == 2
    assert rep.unused_facts() == []


def test_equal_values_share_one_payload(tmp_path):
    _, _, doc = record_then_replay(
        tmp_path, lambda log: [log.fact(k, lambda: {"v": 1}) for k in "abc"]
    )
    assert doc["facts"].count("\n") == 3
    assert doc["payloads"].count("\n") == 1


def test_record_value_is_idempotent_and_returns_the_payload_id(tmp_path):
    def body(log):
        return log.record_value("cfg", {"b": 2, "a": 1}), log.record_value("cfg", {"other": 1})

    (pid, again), rep, _ = record_then_replay(tmp_path, body)
    assert pid == again == digest(canonical_json({"a": 1, "b": 2}))
    assert rep.record_value("cfg", {"whatever": 0}) == pid
    with pytest.raises(MissingFact) as info:
        rep.record_value("nope", 1)
    assert info.value.code == "missing_fact"


def test_derived_keys_follow_the_seed_shape(tmp_path):
    def body(log):
        log.now_millis()
        log.now_millis()
        with scope("plan", 2):
            log.uuid4()
        return log.derived_key("random_bytes")

    key, _rep, doc = record_then_replay(tmp_path, body)
    assert key == "random_bytes|state:test|attempt:0|ord:0"
    lines = doc["facts"].splitlines()
    assert lines[0].startswith('"now_millis|state:test|attempt:0|ord:0" ')
    assert lines[1].startswith('"now_millis|state:test|attempt:0|ord:1" ')
    assert lines[2].startswith('"uuid4|state:plan|attempt:2|ord:0" ')


def test_clock_randomness_and_uuids_replay_exactly(tmp_path):
    def body(log):
        return log.now_millis(), log.now(), log.random_bytes(16), log.uuid4(), log.random_bytes(200)

    first, rep, _ = record_then_replay(tmp_path, body)
    assert body(rep) == first
    assert isinstance(first[0], int) and first[1].tzinfo is not None


def test_random_bytes_of_another_length_is_fact_payload_invalid(tmp_path):
    _, rep, _ = record_then_replay(tmp_path, lambda log: log.random_bytes(16))
    with pytest.raises(FactPayloadInvalid) as info:
        rep.random_bytes(32)
    assert info.value.code == "fact_payload_invalid"
    assert "16 bytes" in str(info.value) and "32 bytes requested" in str(info.value)


def test_now_millis_that_is_not_an_integer_is_fact_payload_invalid(tmp_path):
    def body(log):
        return log.fact(log.derived_key("now_millis"), lambda: "yesterday")

    _, rep, _ = record_then_replay(tmp_path, body)
    with pytest.raises(FactPayloadInvalid, match="not a non-negative integer"):
        rep.now_millis()


@pytest.mark.parametrize("key", ["", None, 3])
def test_a_missing_key_is_missing_fact_key(tmp_path, key):
    _, rep, _ = record_then_replay(tmp_path, lambda log: None)
    with pytest.raises(MissingFactKey) as info:
        rep.fact(key, lambda: 1)
    assert info.value.code == "missing_fact_key"
    assert "missing fact key for deterministic IO in replay mode" in str(info.value)


def test_missing_fact_names_the_nearest_keys_and_follows_retryable(tmp_path):
    _, rep, _ = record_then_replay(tmp_path, lambda log: log.fact("quote_acme", lambda: 1))
    with pytest.raises(MissingFact) as info:
        rep.fact("quote_acne", lambda: 2)
    assert "nearest recorded keys: 'quote_acme'" in str(info.value)
    assert info.value.retryable is False
    _, rep, _ = record_then_replay(tmp_path, lambda log: None, mode=Mode.STRICT, retryable=True)
    with pytest.raises(MissingFact) as info:
        rep.fact("x", lambda: 2)
    assert info.value.retryable is True and "strict never fetches live" in str(info.value)


def test_retryable_missing_fact_in_replay_is_fetched_and_appended(tmp_path):
    _, rep, _ = record_then_replay(tmp_path, lambda log: log.fact("a", lambda: 1), retryable=True)
    assert rep.fact("a", lambda: 9) == 1
    assert rep.fact("a", lambda: 2) == 2  # fetched live
    doc = rep.to_yaml()
    assert doc["facts"].count('"a" ') == 2 and rep.new_count == 1


def test_bulky_and_binary_payloads_go_to_verified_blobs(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)

    def body(log):
        return (
            log.fact("big", lambda: "x" * 500),
            log.fact("bin", lambda: bytes(range(256))),
            log.fact("arr", lambda: arr),
        )

    _first, rep, _doc = record_then_replay(tmp_path, body)
    exts = sorted(p.suffix for p in (tmp_path / ".blobs").iterdir())
    assert exts == [".bin", ".json", ".npy"]
    big, binary, array = body(rep)
    assert big == "x" * 500 and binary == bytes(range(256))
    np.testing.assert_array_equal(array, arr)
    assert array.dtype == np.float32


def test_replayed_containers_are_fresh_copies(tmp_path):
    _, rep, _ = record_then_replay(
        tmp_path, lambda log: [log.fact(k, lambda: {"a": [1]}) for k in "xy"]
    )
    first = rep.fact("x", dict)
    first["a"].append(2)
    assert rep.fact("y", dict) == {"a": [1]}


def test_threads_with_their_own_keys_replay_their_own_values(tmp_path):
    def body(log):
        out = {}

        def worker(i):
            out[i] = [log.fact(f"k{i}", lambda i=i, j=j: i * 100 + j) for j in range(50)]

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    first, rep, _ = record_then_replay(tmp_path, body)
    assert body(rep) == first
    assert rep.unused_facts() == []


def test_values_with_unicode_line_separators_replay(rt):
    # U+2028/U+2029/U+0085 are line breaks to str.splitlines(), not to our format.
    rt.module(
        """
        import pytest
        @pytest.mark.parametrize("text", ["a\\u2028b", "c\\u2029d", "e\\x85f"])
        def test_t(replay, text):
            assert replay.fact("k" + text, lambda: text) == text
        """
    )
    rt.record().assert_outcomes(passed=3)
    rt.run("--replay=strict").assert_outcomes(passed=3)


def test_afact_with_a_bad_key_fails_like_fact(tmp_path):
    import asyncio

    async def fetch():
        return 1

    _, rep, _ = record_then_replay(tmp_path, lambda log: None)
    rec = FactLog(mode=Mode.RECORD, blobs=BlobStore(tmp_path / ".b"), threshold=64, retryable=False)
    for log in (rec, rep):
        for bad in (["unhashable"], "", 7):
            with pytest.raises(MissingFactKey):
                asyncio.run(log.afact(bad, fetch))
