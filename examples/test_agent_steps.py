"""Step outputs and tool effects: a small agent pipeline, recorded once and replayed.

``FakeLLM`` stands in for a language model and ``FakeGitHub`` for an API
with side effects (no network). On replay the ``plan`` step runs again
(``strategy="live"``) and its output is checked against the recording:
tokens and cost within 5%, attestation ids equal, tool events identical.
The GitHub comment is a tool effect: served from the cassette, never
posted again.

    pytest examples/test_agent_steps.py --replay=record -p no:cacheprovider
    pytest examples/test_agent_steps.py --replay=strict -p no:cacheprovider

A real model's usage moves a little from run to run; ``AGENT_TOKEN_DRIFT``
makes the fake do that: ``AGENT_TOKEN_DRIFT=0.03`` (3% more tokens) still
passes the 5% tolerance, ``AGENT_TOKEN_DRIFT=0.08`` fails with
``replay_drift``.
"""

from __future__ import annotations

import os

import blake3
import pytest


class FakeLLM:
    """Answers deterministically; its token usage can be made to drift (see above)."""

    def __init__(self) -> None:
        self.calls = 0
        self.drift = float(os.environ.get("AGENT_TOKEN_DRIFT", "0"))

    def complete(self, prompt: str) -> dict:
        self.calls += 1
        steps = [w.strip(".,") for w in prompt.split() if len(w) > 4][:3]
        tokens = round((40 + 3 * len(prompt.split())) * (1 + self.drift))
        return {"text": "Plan: " + " -> ".join(steps), "tokens": tokens}


class FakeGitHub:
    """Records what would have been posted (no network)."""

    def __init__(self) -> None:
        self.posted: list[str] = []

    def comment(self, repo: str, *, body: str) -> dict:
        self.posted.append(body)
        return {"id": 1000 + len(self.posted), "url": f"https://github.test/{repo}/issues/7"}


class ProviderTimeout(Exception):
    """What the fake deploy API raises when it gives up waiting."""


def attest(text: str) -> str:
    """A content id for what the agent produced: replay must reproduce it exactly."""
    return "att-" + blake3.blake3(text.encode()).hexdigest()[:16]


def plan_issue(issue: str, *, replay, llm: FakeLLM, github: FakeGitHub) -> dict:
    """The code under test: one agent step that thinks, then acts through a tool."""
    answer = llm.complete(issue)
    comment = replay.tool(
        "github.comment",
        github.comment,
        "acme/app",
        body=answer["text"],
        provider="github",
        target="acme/app#7",
        idempotency_key="plan-comment-7",
        redaction="metadata_only",  # the body stays out of the cassette
    )
    replay.tool_event("plan.posted", {"chars": len(answer["text"])})
    return {
        "plan": answer["text"],
        "usage": {"tokens": answer["tokens"], "cost_usd": answer["tokens"] * 2e-6},
        "attestation_ids": [attest(answer["text"])],
        "posted": comment is not None,
    }


def replaying(replay) -> bool:
    return replay.mode.value in ("replay", "strict")


def test_plan_and_comment(replay):
    llm, github = FakeLLM(), FakeGitHub()
    out = replay.step(
        "plan",
        plan_issue,
        "Upgrade the database driver, rerun migrations, then notify the oncall.",
        replay=replay,
        llm=llm,
        github=github,
        tolerance=replay.Drift(tokens=0.05, cost=0.05),
    )
    assert out["plan"] == "Plan: Upgrade -> database -> driver"
    assert llm.calls == 1  # live strategy: the step runs on every replay
    assert github.posted == ([] if replaying(replay) else [out["plan"]])


def review(plan: str, *, llm: FakeLLM) -> dict:
    answer = llm.complete("Review this plan carefully: " + plan)
    return {"verdict": "approve", "notes": answer["text"], "tokens": answer["tokens"]}


def test_mocked_review(replay):
    """An expensive step replayed ``mocked``: the recorded output, and the model is not called."""
    llm = FakeLLM()
    out = replay.step(
        "review", review, "Plan: Upgrade -> database -> driver", llm=llm, strategy="mocked"
    )
    assert out["verdict"] == "approve"
    assert llm.calls == (0 if replaying(replay) else 1)


def triage(title: str) -> dict:
    label = "bug" if "crash" in title or "error" in title else "feature"
    return {"title": title, "label": label, "tokens": 10 + len(title.split())}


def test_batch_triage(replay):
    """Many inputs, one step name: each item is its own step record (ordinal = index)."""
    titles = ["crash on login", "dark mode", "error 500 on save", "export to csv"]
    results, stats = replay.step_batch("triage", triage, titles, concurrency=4)
    assert [r["label"] for r in results] == ["bug", "feature", "bug", "feature"]
    assert (stats.total, stats.successful, stats.failed) == (4, 4, 0)
    assert stats.exact_matches == (4 if replay.mode.checks_outputs else 0)  # compared


def deploy(replay, *, version: str) -> dict:
    replay.tool("deploy.lock", lambda: {"locked": True}, idempotency_key=f"lock-{version}")
    replay.tool(
        "deploy.rollout",
        _rollout,
        version,
        idempotency_key=f"rollout-{version}",
        compensation="deploy.rollback",
    )
    return {"version": version, "status": "live"}


def _rollout(version: str) -> dict:
    raise ProviderTimeout(f"rollout of {version} did not finish in 300s")


def test_partial_failure_leaves_a_resume_plan(replay):
    """A step that fails after some effects: the plan says what an operator must decide."""
    with pytest.raises(ProviderTimeout):
        replay.step("deploy", deploy, replay, version="2.4.1")
    plan = replay.resume_plan()
    assert plan.counts == {
        "completed": 1,
        "uncertain": 1,
        "dead_letters": 1,
        "pending_compensations": 1,
    }
    assert plan.choices == [
        "resume_from_checkpoint",
        "retry_failed_effect",
        "compensate_pending_effects",
    ]
    assert not any(choice["automatic_dispatch"] for choice in plan.operator_choices)


def summarise(report: str, *, llm: FakeLLM) -> dict:
    answer = llm.complete("Summarise for the changelog: " + report)
    return {
        "answer": "ship",
        "summary": answer["text"],
        "metrics": {"latency_ms": 120, "score": 0.92, "temperature": 0.2},
        "tokens": answer["tokens"],
    }


def test_policy_rules(replay):
    """Fields that may move get a rule; everything else must match exactly."""
    policy = (
        replay.Policy("changelog")
        .exact("answer")
        .similar("summary", 0.8)
        .max_increase("metrics.latency_ms", 20)
        .max_decrease("metrics.score", 5)
        .within("metrics.temperature", 0.0, 1.0)
    )
    out = replay.step(
        "summarise",
        summarise,
        "Driver upgrade rolled out to all regions without incidents.",
        llm=FakeLLM(),
        policy=policy,
        tolerance=replay.Drift(tokens=0.05),
    )
    assert out["answer"] == "ship"
