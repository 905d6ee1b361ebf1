"""replay.step end to end: live and mocked replay, drift, attestations, tool events, batches."""

from __future__ import annotations

import json
import re

import blake3
import pytest
import yaml

from pytest_replay.review.integrity import check_cassette

PLANNER = """
import os
import pytest

CALLS = []

def planner(prompt, *, replay):
    CALLS.append(prompt)
    replay.tool_event("search", {"query": prompt, "hits": int(os.environ.get("HITS", "3"))})
    bump = float(os.environ.get("BUMP", "0"))
    return {
        "answer": "ship it",
        "usage": {"tokens": 1000 * (1 + bump), "cost_usd": 0.02},
        "attestation_ids": os.environ.get("ATT", "att-1,att-2").split(","),
    }

def test_plan(replay):
    tol = float(os.environ.get("TOL", "0"))
    out = replay.step("plan", planner, os.environ.get("PROMPT", "release notes"),
                      replay=replay, tolerance=replay.Drift(tokens=tol, cost=tol))
    assert out["answer"] == "ship it"
    print("CALLS", len(CALLS))
"""


def failure(result: pytest.RunResult) -> str:
    return result.stdout.str()


def expect(result: pytest.RunResult, *patterns: str) -> None:
    """fnmatch_lines, with brackets taken literally (fnmatch reads [0] as a character class)."""
    result.stdout.fnmatch_lines([p.replace("[", "[[]") for p in patterns])


def test_identical_rerun_passes_and_rerecording_keeps_the_bytes(rt):
    rt.module(PLANNER)
    rt.record("-s").stdout.fnmatch_lines(["*CALLS 1*"])
    path = rt.cassette("test_plan")
    first = path.read_bytes()
    doc = yaml.safe_load(first)
    (step,) = doc["steps"]
    assert step["name"] == "plan" and step["ordinal"] == 0
    assert step["inputs"]["args"] == ["release notes"]
    assert step["inputs"]["kwargs"]["replay"]["$opaque"]["type"].endswith("ReplaySession")
    (attempt,) = step["attempts"]
    assert attempt["status"] == "succeeded" and attempt["duration_ms"] >= 0
    assert attempt["output"]["attestation_ids"] == ["att-1", "att-2"]
    assert attempt["tool_events"] == [
        {"kind": "search", "payload": {"hits": 3, "query": "release notes"}}
    ]
    # live replay runs the step again and its output matches the recording
    result = rt.run("-s", "--replay=strict")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CALLS 1*"])
    rt.record().stdout.fnmatch_lines(["*1 unchanged*"])
    assert path.read_bytes() == first


def test_one_percent_drift_passes_at_one_percent_and_fails_at_zero(rt, monkeypatch):
    rt.module(PLANNER)
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("BUMP", "0.01")
    monkeypatch.setenv("TOL", "0.01")
    rt.run("--replay=strict").assert_outcomes(passed=1)
    monkeypatch.setenv("TOL", "0")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_drift: output of step plan drifted during replay: tokens +10 (+1%) "
            "exceeds tolerance 0% (kind=replay_drift, diff_blake3=*)",
            "*at:*plan: tokens",
            "*recorded:  1000.0",
            "*current:   1010.0",
            "*tokens: recorded=1000 current=1010 delta=+10 relative=+1%*EXCEEDED",
            "*Fix: if the new output is right, re-record: pytest --replay=record 'test_mod.py::test_plan'*",
        ]
    )


def test_attestation_mismatch_names_the_ids_and_the_persisted_diff(rt, monkeypatch):
    rt.module(PLANNER)
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("ATT", "att-1,att-3")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    out = failure(result)
    found = re.search(
        r"attestation ids diverged during replay for step plan "
        r"\(kind=replay_attestation_diff, diff_blake3=([0-9a-f]{64})\)",
        out,
    )
    assert found, out
    assert "missing (recorded, not produced now): att-2" in out
    assert "unexpected (produced now, not recorded): att-3" in out
    artifact = rt.root / ".pytest_cache" / "replay" / "diffs" / f"{found.group(1)}.json"
    data = artifact.read_bytes()
    assert blake3.blake3(data).hexdigest() == found.group(1)
    payload = json.loads(data)
    assert payload["test"] == "test_mod.py::test_plan" and payload["step"] == "plan"
    assert payload["recorded"] == ["att-1", "att-2"] and payload["current"] == ["att-1", "att-3"]
    assert payload["missing"] == ["att-2"] and payload["unexpected"] == ["att-3"]


def test_a_tool_event_mismatch_shows_the_first_differing_event(rt, monkeypatch):
    rt.module(PLANNER)
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("HITS", "4")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    expect(
        result,
        "*replay_tool_diff: tool events diverged during replay for step plan "
        "(kind=replay_tool_diff, diff_blake3=*)",
        "*first differing event: tool_events[0]",
        "*Modified  tool_events[0].payload.hits  3 * 4",
    )


MOCKED = """
import os
import pytest

CALLS = []

class Client:
    def __repr__(self):
        return f"<Client {len(CALLS)} at 0x7f00deadbeef>"

def expensive(prompt, client, *, replay):
    CALLS.append(prompt)
    replay.now_millis()
    replay.fact("llm", lambda: "a fine answer")
    return {"answer": replay.fact("llm2", lambda: "ok"), "tokens": 12}

@pytest.mark.replay(strategy="mocked")
def test_mocked(replay):
    out = replay.step("llm", expensive, os.environ.get("PROMPT", "hi"), Client(), replay=replay)
    assert out == {"answer": "ok", "tokens": 12}
    out["answer"] = "mutated"
    print("CALLS", len(CALLS))
"""


def test_mocked_replay_returns_the_recording_without_running_after_checking_inputs(rt, monkeypatch):
    rt.module(MOCKED)
    rt.record("-s").stdout.fnmatch_lines(["*CALLS 1*"])
    text = rt.cassette("test_mocked").read_text()
    assert "0x7f00deadbeef" not in text  # addresses are scrubbed from reprs
    assert "type: test_mod.Client" in text
    # not run: its facts are accounted for, so strict finds nothing unused
    result = rt.run("-s", "--replay=strict")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CALLS 0*"])
    monkeypatch.setenv("PROMPT", "hello")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    expect(
        result,
        "*replay_input_diff: inputs of step llm changed since the recording: args[0]",
        "*at:*step llm: args[0]",
        "*recorded:  hi",
        "*current:   hello",
        "*Fix: a mocked step returns the output recorded for the recorded inputs*",
    )


def test_mocked_replay_without_snapshots_fails_with_the_seed_message(rt):
    rt.module(
        """
        import pytest

        def flaky():
            raise ConnectionError("upstream down")

        def test_flaky(replay):
            with pytest.raises(ConnectionError):
                replay.step("fetch", flaky, strategy="mocked", retries=1)
        """
    )
    rt.record().assert_outcomes(passed=1)
    attempts = yaml.safe_load(rt.cassette("test_flaky").read_text())["steps"][0]["attempts"]
    assert [a["status"] for a in attempts] == ["failed", "failed"]
    assert attempts[1]["error"] == {"type": "ConnectionError", "message": "upstream down"}
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_missing_step: step fetch missing output snapshots; cannot run mocked replay",
            "*recorded:  2 attempt(s), none with an output; last error ConnectionError: upstream down",
            "*Fix: replay this step live (strategy='live'), or re-record it*",
        ]
    )


def test_steps_repeat_as_sequences_missing_and_unused_ones_fail(rt, monkeypatch):
    rt.module(
        """
        import os

        def test_loop(replay):
            for i in range(int(os.environ.get("N", "2"))):
                replay.step("plan", lambda i: {"i": i}, i)
        """
    )
    rt.record().assert_outcomes(passed=1)
    steps = yaml.safe_load(rt.cassette("test_loop").read_text())["steps"]
    assert [(s["name"], s["ordinal"]) for s in steps] == [("plan", 0), ("plan", 1)]
    monkeypatch.setenv("N", "1")
    rt.run().assert_outcomes(passed=1)  # replay: unused items are reported, not failed
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*replay_unused: 1 recorded item(s) were never used by the test", "*at:*step 'plan'#1"]
    )
    monkeypatch.setenv("N", "3")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_missing_step: step plan#2 was not recorded",
            "*at:*step 'plan' ordinal 2",
            "*recorded:  2 call(s) of step 'plan'",
            "*Fix: re-record this test: pytest --replay=record 'test_mod.py::test_loop'",
        ]
    )


def test_retries_keep_every_attempt_and_replay_the_same_way(rt, monkeypatch):
    rt.module(
        """
        import os
        TRIES = []

        def flaky(replay):
            TRIES.append(replay.now_millis())
            if len(TRIES) < 2 or os.environ.get("ALWAYS"):
                raise TimeoutError("slow upstream")
            return {"tries": len(TRIES)}

        def test_retry(replay):
            assert replay.step("flaky", flaky, replay, retries=1) == {"tries": 2}
        """
    )
    rt.record().assert_outcomes(passed=1)
    doc = yaml.safe_load(rt.cassette("test_retry").read_text())
    first, second = doc["steps"][0]["attempts"]
    assert first["status"] == "failed" and second["status"] == "succeeded"
    assert first["error"] == {"type": "TimeoutError", "message": "slow upstream"}
    assert first["facts"] == {"now_millis|state:flaky#0|attempt:1|ord:0": 1}
    assert "now_millis|state:flaky#0|attempt:2|ord:0" in doc["facts"]
    rt.run("--replay=strict").assert_outcomes(passed=1)
    monkeypatch.setenv("ALWAYS", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_drift: step flaky raised TimeoutError: slow upstream, "
            "but its recording returned an output",
            "*at:*step flaky attempt 2",
        ]
    )


def test_async_steps_and_a_coroutine_passed_to_step(rt):
    rt.module(
        """
        import asyncio
        import pytest

        async def fetch(x):
            await asyncio.sleep(0)
            return {"x": x, "tokens": 5}

        def test_async(replay):
            async def main():
                return await replay.astep("fetch", fetch, 2)
            assert asyncio.run(main()) == {"x": 2, "tokens": 5}
            with pytest.raises(TypeError, match=r"use: await replay.astep\\('bad', fn, ...\\)"):
                replay.step("bad", fetch, 1)
        """
    )
    rt.record().assert_outcomes(passed=1)
    assert yaml.safe_load(rt.cassette("test_async").read_text())["steps"][0]["attempts"][0][
        "output"
    ] == {"tokens": 5, "x": 2}
    rt.run("--replay=strict").assert_outcomes(passed=1)


BATCH = """
import os
import threading
import time

ACTIVE = [0, 0]
LOCK = threading.Lock()

def score(item, *, fail=()):
    with LOCK:
        ACTIVE[0] += 1
        ACTIVE[1] = max(ACTIVE[1], ACTIVE[0])
    time.sleep(0.05)
    with LOCK:
        ACTIVE[0] -= 1
    if item in fail:
        raise ValueError(f"bad item {item}")
    bump = 0.01 if item == int(os.environ.get("DRIFT", "-1")) else 0
    return {"item": item, "tokens": 100 * (1 + bump)}

def test_batch(replay):
    results, stats = replay.step_batch("score", score, range(6), concurrency=3,
                                       tolerance=replay.Drift(tokens=0.05))
    assert [r["item"] for r in results] == list(range(6))
    assert ACTIVE[1] == 3, ACTIVE
    print("STATS", stats.total, stats.successful, stats.failed, stats.exact_matches,
          stats.mismatches, stats.total_ms > 0, abs(stats.average_ms * 6 - stats.total_ms) < 1e-6)
    results, stats = replay.step_batch("odd", lambda i: score(i, fail=(1, 3)), range(4),
                                       return_exceptions=True)
    print("FAILED", stats.successful, stats.failed, [type(r).__name__ for r in results])
"""


def test_step_batch_runs_concurrently_in_input_order_with_real_stats(rt, monkeypatch):
    rt.module(BATCH)
    result = rt.record("-s")
    result.assert_outcomes(passed=1)
    expect(
        result,
        "*STATS 6 6 0 0 0 True True*",
        "*FAILED 2 2 ['dict', 'ValueError', 'dict', 'ValueError']*",
    )
    steps = yaml.safe_load(rt.cassette("test_batch").read_text())["steps"]
    assert [(s["name"], s["ordinal"]) for s in steps[:6]] == [("score", i) for i in range(6)]
    assert [s["inputs"]["args"] for s in steps[:6]] == [[i] for i in range(6)]
    monkeypatch.setenv("DRIFT", "4")
    result = rt.run("-s", "--replay=strict")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*STATS 6 6 0 5 1 True True*", "*FAILED 2 2*"])


def test_policy_rules_use_the_similarity_hook(rt, monkeypatch):
    rt.pytester.makeconftest(
        """
        import os

        def pytest_replay_similarity(a, b):
            score = os.environ.get("SIMILARITY")
            return float(score) if score else None
        """
    )
    rt.module(
        """
        import os

        def summarise():
            return {"summary": os.environ.get("SUMMARY", "the build is green"), "tokens": 3}

        def test_policy(replay):
            policy = replay.Policy("quality").similar("summary", 0.8)
            replay.step("summarise", summarise, policy=policy)
        """
    )
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("SUMMARY", "green is the build")  # same words: default similarity 1.0
    rt.run("--replay=strict").assert_outcomes(passed=1)
    monkeypatch.setenv("SIMILARITY", "0.5")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_policy: step summarise broke replay policy 'quality': 1 violation(s) in "
            "summary (kind=replay_policy, diff_blake3=*)",
        ]
    )


def test_an_output_that_is_not_json_fails_clearly(rt):
    rt.module(
        """
        def test_set(replay):
            replay.step("tags", lambda: {"tags": {"a", "b"}})
        """
    )
    result = rt.record()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_record: the output of step tags cannot be stored: set has no JSON form",
            "*Fix: return JSON-able data from the step function*",
        ]
    )


def test_nested_steps_of_a_mocked_step_are_not_unused(rt):
    rt.module(
        """
        def inner(x):
            return {"inner": x}

        def outer(replay):
            return {"outer": replay.step("inner", inner, 1)["inner"]}

        def test_nested(replay):
            assert replay.step("outer", outer, replay, strategy="mocked") == {"outer": 1}
            assert replay.step("inner", inner, 2) == {"inner": 2}
        """
    )
    rt.record().assert_outcomes(passed=1)
    steps = yaml.safe_load(rt.cassette("test_nested").read_text())["steps"]
    assert [(s["name"], s["ordinal"]) for s in steps] == [("outer", 0), ("inner", 0), ("inner", 1)]
    assert steps[0]["attempts"][0]["steps"] == ["inner#0"]
    rt.run("--replay=strict").assert_outcomes(passed=1)


def test_check_validates_the_steps_section(rt):
    rt.module(PLANNER)
    rt.record().assert_outcomes(passed=1)
    path = rt.cassette("test_plan")
    assert check_cassette(path) is None
    path.write_text(path.read_text().replace("status: succeeded", "status: maybe"))
    problem = check_cassette(path)
    assert problem is not None
    assert "steps[0].attempts[0] 'status' must be one of succeeded, failed" in problem.message


def test_large_outputs_and_inputs_go_to_the_blob_store(rt):
    rt.module(
        """
        import pytest

        def fetch(n):
            return {"rows": list(range(n))}

        @pytest.mark.replay(blob_threshold=64)
        def test_big(replay):
            def job(n):
                return {"copy": replay.tool("db.read", fetch, n)["rows"][-1]}
            assert replay.step("big", fetch, 100)["rows"][-1] == 99
            assert replay.step("job", job, 50) == {"copy": 49}
        """
    )
    rt.record().assert_outcomes(passed=1)
    path = rt.cassette("test_big")
    steps = yaml.safe_load(path.read_text())["steps"]
    assert "output" not in steps[0]["attempts"][0] and "output_blob" in steps[0]["attempts"][0]
    (effect,) = steps[1]["attempts"][0]["tool_events"]
    blobs = {p.name for p in (rt.root / "cassettes" / ".blobs").iterdir()}
    assert {steps[0]["attempts"][0]["output_blob"], effect["output_blob"]} <= blobs
    assert check_cassette(path) is None
    rt.run("--replay=strict").assert_outcomes(passed=1)


def test_numpy_scalars_in_outputs_tools_and_events_are_saved_and_replayed(rt):
    # np.float64 and np.str_ subclass float/str; the cassette holds them as plain values.
    rt.module(
        """
        import numpy as np

        def run(replay):
            score = replay.tool("score", lambda: {"score": np.float64(0.5)})
            replay.tool_event("seen", {"word": np.str_("hi"), "n": np.int64(3)})
            return {"mean": np.arange(4).mean(), "score": score["score"], "label": np.str_("ok")}

        def test_t(replay):
            out = replay.step("s", run, replay=replay)
            assert out["mean"] == 1.5 and out["label"] == "ok"
        """
    )
    rt.record().assert_outcomes(passed=1)
    text = rt.cassette("test_t").read_text()
    assert "mean: 1.5" in text and "!!python" not in text
    rt.run("--replay=strict").assert_outcomes(passed=1)


def test_set_arguments_are_stored_sorted_so_re_records_are_stable():
    from pytest_replay.tools import SET, capture

    words = {f"w{i:02d}" for i in range(20)}
    assert capture(words) == {SET: sorted(words)}
    assert capture(frozenset({3, 1, 2})) == {SET: [1, 2, 3]}


BATCH_WITH_FACTS = """
import asyncio, random, time

def quote(symbol):
    time.sleep(random.random() / 200)  # items finish in a different order every run
    return {"symbol": symbol, "px": ord(symbol) / 8}

def price(replay, symbol):
    first = replay.fact("quote", quote, symbol)
    second = replay.fact("quote", quote, symbol)
    assert first["symbol"] == second["symbol"] == symbol
    return {"px": first["px"] + second["px"]}

def test_threads(replay):
    out = replay.step_batch("price", lambda s: price(replay, s), "ABCDEFGH", concurrency=8)
    assert [r["px"] for r in out.results] == [r["px"] for r in out.results]

async def aprice(replay, symbol):
    await asyncio.sleep(random.random() / 200)
    return price(replay, symbol)

def test_tasks(replay):
    async def fn(s):
        return await aprice(replay, s)
    replay.step_batch("aprice", fn, "ABCDEFGH", concurrency=8)
"""


def test_facts_inside_a_concurrent_batch_replay_per_item_and_re_record_byte_stable(rt):
    rt.module(BATCH_WITH_FACTS)
    rt.record().assert_outcomes(passed=2)
    first = {p: p.read_bytes() for p in rt.cassettes()}
    assert b'"price#3/quote"' in first[rt.cassette("test_threads")]
    for _ in range(3):  # each item must get its own values back, whatever the schedule
        rt.run("--replay=strict").assert_outcomes(passed=2)
    rt.record().stdout.fnmatch_lines(["*2 unchanged*"])
    assert {p: p.read_bytes() for p in rt.cassettes()} == first
