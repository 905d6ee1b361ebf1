"""replay.tool end to end: served on replay, input parity, redaction, idempotency, resume plan."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from pytest_replay import Redacted
from pytest_replay.errors import RecordedToolError
from pytest_replay.tools import (
    EFFECT,
    Inputs,
    ResumePlan,
    Scope,
    _Effect,
    classify,
    rebuild_error,
)


def expect(result: pytest.RunResult, *patterns: str) -> None:
    """fnmatch_lines, with brackets taken literally (fnmatch reads [0] as a character class)."""
    result.stdout.fnmatch_lines([p.replace("[", "[[]") for p in patterns])


def cassette_bytes(root) -> bytes:
    """Every file under cassettes/ (YAML and blobs) as one byte string."""
    return b"".join(p.read_bytes() for p in sorted((root / "cassettes").rglob("*")) if p.is_file())


COMMENT = """
import os

SENT = []

def comment(repo, *, body):
    SENT.append(body)
    return {"id": 41, "url": f"https://example.test/{repo}/41"}

def agent(replay):
    body = os.environ.get("BODY", "LGTM")
    out = replay.tool("github.comment", comment, "acme/app", body=body,
                      provider="github", target="acme/app", idempotency_key="c-1")
    return {"comment": out["id"], "tokens": 7}

def test_agent(replay):
    assert replay.step("agent", agent, replay) == {"comment": 41, "tokens": 7}
    print("SENT", len(SENT))
"""


def test_a_tool_is_served_on_replay_and_its_inputs_must_match(rt, monkeypatch):
    rt.module(COMMENT)
    rt.record("-s").stdout.fnmatch_lines(["*SENT 1*"])
    doc = yaml.safe_load(rt.cassette("test_agent").read_text())
    (event,) = doc["steps"][0]["attempts"][0]["tool_events"]
    assert event["kind"] == EFFECT and event["status"] == "succeeded"
    assert event["operation"] == "github.comment" and event["provider"] == "github"
    assert event["inputs"] == {"args": ["acme/app"], "kwargs": {"body": "LGTM"}}
    assert event["output"] == {"id": 41, "url": "https://example.test/acme/app/41"}
    assert event["id"] == "agent#0/1/0" and event["idempotency_key"] == "c-1"
    result = rt.run("-s", "--replay=strict")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SENT 0*"])  # the external call is not made
    monkeypatch.setenv("BODY", "needs work")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    expect(
        result,
        "*replay_input_diff: inputs of tool call 'github.comment' changed since the recording: "
        "kwargs.body",
        "*at:*step agent attempt 1, tool call #0: kwargs.body",
        "*recorded:  LGTM",
        "*current:   needs work",
        "*Fix: a tool effect replays only for the inputs it was recorded with*",
    )


def test_metadata_only_keeps_payloads_out_and_replays_a_redacted_placeholder(rt):
    rt.module(
        """
        from pytest_replay import Redacted

        SECRET_IN = "sk-live-INPUT-7f3a9c"
        SECRET_OUT = "tok-OUTPUT-51be02" * 300  # large: would be a blob if it were stored

        def vault(key):
            return {"token": SECRET_OUT}

        def test_vault(replay):
            out = replay.tool("vault.read", vault, SECRET_IN, redaction="metadata_only")
            if replay.mode.value == "record":
                assert out == {"token": SECRET_OUT}
            else:
                assert isinstance(out, Redacted) and out.operation == "vault.read"
                print("DIGEST", out.digest)
        """
    )
    rt.record().assert_outcomes(passed=1)
    data = cassette_bytes(rt.root)
    assert b"sk-live-INPUT-7f3a9c" not in data and b"tok-OUTPUT-51be02" not in data
    assert not list((rt.root / "cassettes").rglob("*.json"))  # no blob either
    (event,) = yaml.safe_load(rt.cassette("test_vault").read_text())["tools"]
    assert event["redaction"] == "metadata_only" and "output" not in event
    assert set(event["arg_digests"]) == {"args[0]"}
    result = rt.run("-s", "--replay=strict")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*DIGEST {event['output_digest']}*"])


def test_a_step_returning_a_redacted_output_says_to_use_full(rt):
    rt.module(
        """
        def read(key):
            return {"token": "t"}

        def test_leak(replay):
            replay.step("leak", lambda: replay.tool("vault.read", read, "k",
                                                  redaction="metadata_only"))
        """
    )
    rt.record().assert_outcomes(passed=1)
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_record: the output of step leak cannot be stored: Redacted has no JSON form; "
            "it holds a Redacted placeholder from a metadata_only tool: use redaction='full'*",
        ]
    )


def test_an_idempotency_key_dispatches_once_even_under_concurrency(rt):
    rt.module(
        """
        import threading
        import time

        SENT = []
        LOCK = threading.Lock()

        def send(n):
            with LOCK:
                SENT.append(n)
            time.sleep(0.05)
            return {"sent": n}

        def test_once(replay):
            first = replay.tool("mail.send", send, 1, idempotency_key="welcome")
            second = replay.tool("mail.send", send, 1, idempotency_key="welcome")
            assert first == second == {"sent": 1}
            results, stats = replay.step_batch(
                "notify", lambda i: replay.tool("push.send", send, 0, idempotency_key="push"),
                range(4), concurrency=4)
            assert results == [{"sent": 0}] * 4 and stats.successful == 4
            print("SENT", len(SENT))
        """
    )
    rt.record("-s").stdout.fnmatch_lines(["*SENT 2*"])
    doc = yaml.safe_load(rt.cassette("test_once").read_text())
    first, second = doc["tools"]
    assert "duplicate_of" not in first and second["duplicate_of"] == "test/0"
    assert second["output_digest"] == first["output_digest"] and "output" not in second
    pushes = [s["attempts"][0]["tool_events"][0] for s in doc["steps"]]
    assert sum("duplicate_of" not in e for e in pushes) == 1
    result = rt.run("-s", "--replay=strict")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SENT 0*"])


def test_tool_calls_the_recording_does_not_have_fail_as_tool_diffs(rt, monkeypatch):
    rt.module(
        """
        import os

        def call(name):
            return name

        def test_calls(replay):
            replay.tool(os.environ.get("OP", "a.get"), call, "x")
            for _ in range(int(os.environ.get("EXTRA", "0"))):
                replay.tool("b.get", call, "y")
            replay.tool_event("note", {"n": int(os.environ.get("NOTE", "1"))})
        """
    )
    rt.record().assert_outcomes(passed=1)
    monkeypatch.setenv("EXTRA", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    expect(
        result,
        "*replay_tool_diff: tool call 'b.get' in the test body was not recorded",
        "*at:*the test body, tool call #1",
        "*recorded:  1 tool effect(s) here: a.get",
        "*current:   call #2: b.get",
    )
    monkeypatch.setenv("EXTRA", "0")
    monkeypatch.setenv("OP", "c.get")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*replay_tool_diff: tool call #0 in the test body is 'c.get'; the recording has 'a.get'*"]
    )
    monkeypatch.setenv("OP", "a.get")
    monkeypatch.setenv("NOTE", "2")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    expect(
        result,
        "*replay_tool_diff: tool events diverged during replay for step (test body) "
        "(kind=replay_tool_diff, diff_blake3=*)",
        "*first differing event: tool_events[1]",
    )


PARTIAL = """
import os
import pytest

class ProviderTimeout(Exception):
    pass

LOG = []
REFUNDS = []

def refund(charge_id):
    REFUNDS.append(charge_id)  # an operator's runbook; pytest_replay never calls it

def charge(amount):
    LOG.append("charge")
    return {"charge": "ch_1", "amount": amount}

def notify(user):
    LOG.append("notify")
    if LOG.count("notify") == 1:
        raise ProviderTimeout("slack did not answer in 5s")
    return {"ok": True}

def ship(order):
    LOG.append("ship")
    raise ConnectionRefusedError("warehouse offline")

def email(user):
    LOG.append("email")
    raise ProviderTimeout("smtp timed out")

def checkout(replay):
    replay.tool("stripe.charge", charge, 42, idempotency_key="charge-1", compensation=refund)
    replay.tool("slack.notify", notify, "ann", idempotency_key="notify-1")
    return {"ok": True}

def fulfil(replay):
    replay.tool("stripe.charge", charge, 7, idempotency_key="charge-2", compensation=refund)
    try:
        replay.tool("mail.send", email, "ann", compensation="resend_manually")
    except ProviderTimeout:
        pass  # best effort: the order ships without its email
    replay.tool("warehouse.ship", ship, "o-1", idempotency_key="ship-1")

def test_partial(replay):
    assert replay.step("checkout", checkout, replay, retries=1) == {"ok": True}
    with pytest.raises(ConnectionRefusedError) as info:
        replay.step("fulfil", fulfil, replay)
    print("NOTES", getattr(info.value, "__notes__", "(python < 3.11)"))
    plan = replay.resume_plan()
    print("COUNTS", plan.counts)
    print("CHOICES", plan.choices, [c["automatic_dispatch"] for c in plan.operator_choices])
    print("DEAD", [d["effect"] for d in plan.dead_letters])
    print("OWED", [p["effect"] for p in plan.pending_compensations])
    print("LIMIT", len(replay.resume_plan(limit=1).dead_letters),
          replay.resume_plan(limit=1).counts["dead_letters"])
    print("REFUNDS", REFUNDS)
    if os.environ.get("FAIL_AFTER"):
        replay.step("fulfil", fulfil, replay)
"""


def test_the_resume_plan_counts_partial_failure_and_dispatches_nothing(rt, monkeypatch):
    rt.module(PARTIAL)
    result = rt.record("-s")
    result.assert_outcomes(passed=1)
    if sys.version_info >= (3, 11):  # exception notes
        expect(
            result,
            "*NOTES ['pytest_replay: step fulfil failed after 1 attempt(s); resume plan: "
            "3 completed, 1 uncertain, 2 dead letter(s), 2 pending compensation(s); operator "
            "choices: resume_from_checkpoint, retry_failed_effect, compensate_pending_effects "
            "(none dispatched automatically)']*",
        )
    expect(
        result,
        "*COUNTS {'completed': 3, 'uncertain': 1, 'dead_letters': 2, 'pending_compensations': 2}*",
        "*CHOICES ['resume_from_checkpoint', 'retry_failed_effect', "
        "'compensate_pending_effects'] [False, False, False]*",
        # the first slack.notify timed out, then succeeded with its key: superseded
        "*DEAD ['fulfil#0/1/1', 'fulfil#0/1/2']*",
        "*OWED ['fulfil#0/1/0', 'fulfil#0/1/1']*",
        "*LIMIT 1 2*",
        "*REFUNDS []*",
    )
    resume = yaml.safe_load(rt.cassette("test_partial").read_text())["resume"]
    assert resume["counts"] == {
        "completed": 3,
        "uncertain": 1,
        "dead_letters": 2,
        "pending_compensations": 2,
    }
    owed = {p["effect"]: p for p in resume["pending_compensations"]}
    assert owed["fulfil#0/1/0"]["compensation"] == "test_mod.refund"
    assert owed["fulfil#0/1/1"]["compensation"] == "resend_manually"
    assert "checkout#0/1/1" not in json.dumps(resume)  # superseded: filtered out
    # replay serves every effect, failures included, and reaches the same plan
    result = rt.run("-s", "--replay=strict")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*COUNTS {'completed': 3, 'uncertain': 1, 'dead_letters': 2, *"])
    monkeypatch.setenv("FAIL_AFTER", "1")
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*replay_missing_step: step fulfil#1 was not recorded*", "*resume plan: 3 completed*"]
    )


def test_async_tools_inside_async_steps(rt):
    rt.module(
        """
        import asyncio

        SENT = []

        async def post(text):
            await asyncio.sleep(0)
            SENT.append(text)
            return {"posted": text}

        async def agent(replay):
            return await replay.atool("chat.post", post, "hi")

        def test_async(replay):
            async def main():
                return await replay.astep("agent", agent, replay)
            assert asyncio.run(main()) == {"posted": "hi"}
            print("SENT", len(SENT))
        """
    )
    rt.record("-s").stdout.fnmatch_lines(["*SENT 1*"])
    result = rt.run("-s", "--replay=strict")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SENT 0*"])


# --- units: no inner pytest run ---------------------------------------------------------


def test_the_uncertain_rule():
    class ReadTimeout(OSError):
        pass

    class Rejected(Exception):
        pass

    assert classify(TimeoutError()) == "uncertain"
    assert classify(ConnectionResetError()) == "uncertain"
    assert classify(ReadTimeout()) == "uncertain"  # named *Timeout*, like requests/httpx
    assert classify(ConnectionRefusedError()) == "failed"  # never reached the provider
    assert classify(ValueError()) == "failed"
    assert classify(Rejected(), uncertain_on=(Rejected,)) == "uncertain"


def test_inputs_digest_leaves_reprs_out_but_keeps_types_bytes_and_arrays():
    np = pytest.importorskip("numpy")

    class Client:
        def __init__(self, n):
            self.n = n

        def __repr__(self):
            return f"<Client {self.n}>"

    a = Inputs.of(("q", Client(1), b"\x00\x01"), {"arr": np.arange(3)})
    b = Inputs.of(("q", Client(2), b"\x00\x01"), {"arr": np.arange(3)})
    assert a.digest == b.digest  # only the opaque value's repr differs
    assert a.stored["args"][1]["$opaque"]["repr"] == "<Client 1>"
    assert a.stored["args"][2] == {
        "$bytes": {"blake3": a.stored["args"][2]["$bytes"]["blake3"], "len": 2}
    }
    assert Inputs.of(("q", Client(1), b"\x00\x02"), {"arr": np.arange(3)}).digest != a.digest
    assert Inputs.of(("q", Client(1), b"\x00\x01"), {"arr": np.arange(4)}).digest != a.digest
    assert Inputs.of(("q", object(), b"\x00\x01"), {"arr": np.arange(3)}).digest != a.digest


def test_recorded_errors_are_rebuilt_only_from_loaded_modules():
    err = rebuild_error({"type": "TimeoutError", "message": "slow"})
    assert type(err) is TimeoutError and str(err) == "slow"
    err = rebuild_error({"type": "json.JSONDecodeError", "message": "x"})  # needs 3 args
    assert isinstance(err, RecordedToolError) and err.type == "json.JSONDecodeError"
    err = rebuild_error({"type": "not_imported_pkg.Boom", "message": "m"})
    assert isinstance(err, RecordedToolError) and str(err) == "not_imported_pkg.Boom: m"


def _effect(order, id, status, key=None, compensation=None, failed_scope=False):
    event = {"kind": EFFECT, "id": id, "operation": "op", "status": status}
    if key:
        event["idempotency_key"] = key
    if compensation:
        event["compensation"] = compensation
    scope = Scope("s#0", 1, order, failed=failed_scope)
    return _Effect((order, 1, 0), event, scope)


def test_superseded_effects_are_filtered_before_the_limit():
    effects = [
        _effect(3, "late-success", "succeeded", key="k"),
        _effect(1, "superseded", "failed", key="k", compensation="undo"),
        _effect(2, "active", "uncertain", compensation="undo"),
    ]
    plan = ResumePlan.build(effects, limit=1)
    assert plan.counts == {
        "completed": 1,
        "uncertain": 1,
        "dead_letters": 1,
        "pending_compensations": 1,
    }
    assert [d["effect"] for d in plan.dead_letters] == ["active"]
    assert [p["effect"] for p in plan.pending_compensations] == ["active"]
    assert ResumePlan.build([_effect(1, "ok", "succeeded")]).operator_choices == ()


def test_redacted_repr_shows_operation_and_digest():
    assert repr(Redacted("vault.read", "ab" * 32)) == (
        "<Redacted output of vault.read blake3=abababababababab>"
    )
