"""pytest-replay review: cassettes recorded by real runs, committed, re-recorded, compared."""

from __future__ import annotations

import json

import pytest

from pytest_replay.cassette import Block, Cassette, save_document
from pytest_replay.http.interaction import dump_section
from pytest_replay.review.cli import main
from pytest_replay.review.render import render_markdown
from pytest_replay.review.semantic import Change
from pytest_replay.review.tree import CassetteReview, Review

from .gitrepo import commit_all, git, init

# One module whose behaviour moves with REVIEW_V: run once with 1, commit, re-record with 2.
BEHAVIOUR = """
import os
import numpy as np
import pytest

V = int(os.environ.get("REVIEW_V", "1"))


def test_facts(replay):
    replay.fact("price", lambda: 1.5 if V == 1 else 2.5)
    replay.fact("stable", lambda: "same")
    if V == 1:
        replay.fact("old_only", lambda: 1)
    else:
        replay.fact("new_only", lambda: {"a": 1})
    replay.fact("seq", lambda: 1)
    replay.fact("seq", lambda: 2 if V == 1 else 3)
    replay.fact("quote", lambda: {"symbol": "ACME", "price": 10.0 if V == 1 else 12.0})


def agent(task, *, replay):
    replay.tool_event("search", {"q": task, "hits": 3})
    if V == 2:
        replay.tool_event("cache.miss", {"key": task})
    else:
        replay.tool_event("cache.hit", {"key": task})
    replay.tool("ticket.create", lambda: {"id": 7}, idempotency_key="t-1",
                redaction="metadata_only")
    tokens = 100 if V == 1 else 120
    return {
        "answer": "a" if V == 1 else "b",
        "usage": {"tokens": tokens, "cost_usd": tokens * 1e-5},
        "attestation_ids": ["att-1", "att-2"] if V == 1 else ["att-1", "att-3"],
    }


def test_steps(replay):
    replay.step("plan", agent, "task", replay=replay)
    replay.tool_event("body.done", {"v": V})


def test_ring(replay):
    ring = replay.ring("dispatch", capacity=16)
    for i in range(6):
        ring.publish(opcode=7 if (V == 2 and i == 2) else 1, tenant=i % 2, args=(i,))
    if V == 2:
        ring.publish(opcode=9, tenant=0)


def test_arrays(replay):
    a = np.linspace(0, 1, 8, dtype=np.float64)
    if V == 2:
        a[3] += 0.5
    replay.check_array("probs", a)


@pytest.mark.skipif(V == 2, reason="the test is deleted in the change")
def test_gone(replay):
    replay.fact("x", lambda: 1)


@pytest.mark.skipif(V == 1, reason="the test is new in the change")
def test_new(replay):
    replay.fact("y", lambda: 2)
"""


@pytest.fixture
def changed_repo(rt, monkeypatch):
    """A repository whose last commit has v1 cassettes and whose working tree has v2."""
    monkeypatch.delenv("REVIEW_V", raising=False)
    rt.module(BEHAVIOUR)
    rt.record().assert_outcomes(passed=5, skipped=1)
    init(rt.root)
    commit_all(rt.root, "v1")
    monkeypatch.setenv("REVIEW_V", "2")
    rt.record().assert_outcomes(passed=5, skipped=1)
    rt.cassette("test_gone").unlink()  # a deleted test's cassette goes with it
    return rt.root


def review(root, *args, capsys):
    capsys.readouterr()
    code = main(["review", "-C", str(root), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_review_reports_each_section_kind(changed_repo, capsys):
    code, out, err = review(changed_repo, "HEAD", capsys=capsys)
    assert code == 0, err
    assert out.splitlines()[1] == "4 changed, 1 removed, 1 added, 0 unchanged"
    # facts: by key, each ordinal of a sequence, fields of a changed mapping
    assert "! price: 1.5 -> 2.5" in out
    assert '+ new_only: {"a": 1}' in out
    assert "- old_only: 1" in out
    assert "! seq#1: 2 -> 3" in out and "seq#0" not in out
    assert "price: 10.0 -> 12.0" in out  # the field line under quote
    assert "stable" not in out
    # steps: drift in tokens and cost, attestation ids, output fields (deepdiff)
    assert "tokens 100 -> 120 (+20, +20.0%)" in out
    assert "cost 0.001 -> 0.0012 (+0.0002, +20.0%)" in out
    assert "attestation ids missing: att-2; unexpected: att-3" in out
    assert 'answer: "a" -> "b"' in out
    # tool events added/removed, in the step and in the test body
    assert "+ plan: cache.miss" in out and "- plan: cache.hit" in out
    assert "! (test body): body.done: 1 field(s) changed\n        payload.v: 1 -> 2" in out
    assert "ticket.create" not in out  # unchanged effect
    # rings: how many records differ and where the first one is
    assert "! dispatch: 2 record(s) differ, first at index 2; 6 -> 7 record(s)" in out
    assert "record 2: opcode 1 -> 7" in out and "1 record(s) only in the new log" in out
    # arrays: max abs / rel error
    assert (
        "! probs: 1 of 8 element(s) differ; max abs error 0.5, max rel error 1.17; first at (3,)"
        in out
    )
    # whole cassettes
    assert "removed  cassettes/test_mod/test_gone.yaml" in out
    assert "added    cassettes/test_mod/test_new.yaml" in out


def test_review_json_carries_numbers_for_scripts(changed_repo, capsys):
    code, out, _ = review(changed_repo, "HEAD", "--format", "json", capsys=capsys)
    assert code == 0
    data = json.loads(out)
    assert data["totals"] == {"changed": 4, "removed": 1, "added": 1, "unchanged": 0}
    by_path = {c["path"].rsplit("/", 1)[1]: c for c in data["cassettes"]}
    steps = by_path["test_steps.yaml"]
    assert steps["counts"] == {
        "steps": {"added": 0, "removed": 0, "changed": 1},
        "tools": {"added": 1, "removed": 1, "changed": 1},
    }
    (plan,) = [c for c in steps["changes"] if c["section"] == "steps"]
    assert plan["data"]["drift"]["tokens"] == {"old": 100, "new": 120, "delta": 20, "pct": 20.0}
    assert plan["data"]["attestation"] == {"missing": ["att-2"], "unexpected": ["att-3"]}
    assert plan["data"]["fields"] == [
        {"path": "answer", "change": "Modified", "old": "a", "new": "b"}
    ]
    (ring,) = by_path["test_ring.yaml"]["changes"]
    assert ring["data"]["first_index"] == 2 and ring["data"]["records"] == {"old": 6, "new": 7}
    (array,) = by_path["test_arrays.yaml"]["changes"]
    assert array["data"]["max_abs"] == pytest.approx(0.5)
    assert array["data"]["first_index"] == [3]
    assert by_path["test_gone.yaml"]["status"] == "removed"
    assert by_path["test_new.yaml"]["changes"][0]["op"] == "added"


def test_fail_on_gates_by_status(changed_repo, capsys):
    assert review(changed_repo, "HEAD", "--fail-on", "changed", capsys=capsys)[0] == 1
    code, _, err = review(changed_repo, "HEAD", "--fail-on", "removed", capsys=capsys)
    assert code == 1 and "1 cassette(s) removed (--fail-on)" in err
    git(changed_repo, "checkout", "-q", "HEAD", "--", "cassettes/test_mod/test_gone.yaml")
    assert review(changed_repo, "HEAD", "--fail-on", "removed", capsys=capsys)[0] == 0
    assert review(changed_repo, "HEAD", "--fail-on", "added,removed", capsys=capsys)[0] == 1
    code, _, err = review(changed_repo, "HEAD", "--fail-on", "renamed", capsys=capsys)
    assert code == 2 and "Fix:" in err
    commit_all(changed_repo, "v2")
    assert review(changed_repo, "HEAD", "--fail-on", "any", capsys=capsys)[0] == 0


def test_markdown_is_a_bounded_pr_comment(changed_repo, capsys, tmp_path):
    report = tmp_path / "review.md"
    code, out, _ = review(
        changed_repo, "HEAD", "--format", "markdown", "--output", str(report), capsys=capsys
    )
    assert code == 0 and out == ""
    text = report.read_text(encoding="utf-8")
    lines = text.splitlines()
    table = lines.index("| cassette | status | facts | steps | tools | rings | arrays |")
    assert table < text.index("<details>")  # summary table first
    assert "| <code>cassettes/test_mod/test_ring.yaml</code> | changed |  |  |  | !1 |  |" in text
    assert text.count("<details>") == text.count("</details>") == 6
    assert "```diff\n! price: 1.5 -> 2.5\n" in text
    # long sections are cut with a count
    code, out, _ = review(
        changed_repo, "HEAD", "--format", "markdown", "--max-items", "1", capsys=capsys
    )
    assert "... 4 more fact(s) not shown" in out
    # and the whole comment stays under the size bound, naming what it left out
    code, out, _ = review(
        changed_repo, "HEAD", "--format", "markdown", "--max-chars", "1500", capsys=capsys
    )
    assert len(out) <= 1500
    assert "more cassette(s) not detailed here to stay under 1500 characters" in out
    assert "run `pytest-replay review HEAD` for the full report" in out


def test_default_base_is_the_merge_base_with_main(rt, capsys, monkeypatch):
    rt.module("def test_t(replay):\n    replay.fact('k', lambda: 1)\n")
    rt.record()
    init(rt.root)
    commit_all(rt.root, "base")
    git(rt.root, "checkout", "-q", "-b", "feature")
    rt.module("def test_t(replay):\n    replay.fact('k', lambda: 2)\n")
    rt.record()
    commit_all(rt.root, "feature")  # committed: HEAD itself would show nothing
    code, out, _ = review(rt.root, capsys=capsys)
    assert code == 0
    assert "(merge base of HEAD and main)" in out.splitlines()[0]
    assert "! k: 1 -> 2" in out
    # origin/HEAD, when a clone has it, names the default branch instead
    git(rt.root, "update-ref", "refs/remotes/origin/trunk", "feature")
    git(rt.root, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/trunk")
    code, out, _ = review(rt.root, capsys=capsys)
    assert "merge base of HEAD and origin/trunk" in out and "No cassette changed." in out


def test_base_blobs_are_read_from_git_without_a_checkout(rt, capsys):
    rt.module("def test_t(replay):\n    replay.fact('doc', lambda: 'a' * 9000)\n")
    rt.record()
    init(rt.root)
    base = commit_all(rt.root)
    blobs = rt.root / "cassettes" / ".blobs"
    (old_blob,) = blobs.iterdir()
    rt.module("def test_t(replay):\n    replay.fact('doc', lambda: 'b' * 9000)\n")
    rt.record()
    old_blob.unlink()  # gone from the working tree: only git has it
    status = git(rt.root, "status", "--porcelain")
    code, out, err = review(rt.root, base, capsys=capsys)
    assert code == 0, err
    assert '! doc: "aaaaaaa' in out and '-> "bbbbbbb' in out
    assert git(rt.root, "status", "--porcelain") == status  # nothing checked out or written


def test_a_deleted_ring_log_next_to_an_unchanged_cassette_is_not_unchanged(rt, capsys):
    rt.module(
        "def test_r(replay):\n"
        "    ring = replay.ring('alpha', capacity=4)\n"
        "    ring.publish(opcode=1)\n"
    )
    rt.record().assert_outcomes(passed=1)
    init(rt.root)
    commit_all(rt.root)
    code, out, _ = review(rt.root, "HEAD", capsys=capsys)
    assert code == 0 and "0 changed, 0 removed, 0 added, 1 unchanged" in out
    log = rt.cassette("test_r").with_name("test_r.alpha.vrrl")
    log.unlink()
    code, out, err = review(rt.root, "HEAD", capsys=capsys)
    assert code == 2 and out == ""
    assert "cassettes/test_mod/test_r.yaml: ring log does not exist" in err
    assert "(at cassettes/test_mod/test_r.alpha.vrrl)" in err
    assert "Fix: restore it from version control, or re-record: " in err
    assert "pytest --replay=record 'test_mod.py::test_r'" in err


def test_unchanged_behaviour_and_paths_restrict_the_review(rt, capsys):
    rt.module(
        "def test_a(replay):\n    replay.fact('k', lambda: 1)\n"
        "def test_b(replay):\n    replay.fact('k', lambda: 1)\n"
    )
    rt.record()
    init(rt.root)
    commit_all(rt.root)
    a, b = rt.cassette("test_a"), rt.cassette("test_b")
    a.write_text(a.read_text() + "recorded_at: '2031-01-01'\n")  # volatile only
    b.write_text(b.read_text().replace("test_mod.py::test_b", "test_mod.py::test_b2"))
    code, out, _ = review(rt.root, "HEAD", capsys=capsys)
    assert code == 0 and "1 changed, 0 removed, 0 added, 1 unchanged" in out
    assert "! test: test_mod.py::test_b -> test_mod.py::test_b2" in out
    code, out, _ = review(rt.root, "HEAD", str(a), capsys=capsys)
    assert code == 0 and "0 changed, 0 removed, 0 added, 1 unchanged" in out
    code, out, _ = review(rt.root, "HEAD", "cassettes/test_mod/test_b.yaml", capsys=capsys)
    assert code == 0 and "1 changed, 0 removed, 0 added, 0 unchanged" in out
    code, _, err = review(rt.root, "HEAD", "/", capsys=capsys)
    assert code == 2 and "is outside the repository" in err


def test_http_interactions_by_method_url_and_status(tmp_path, capsys):
    """The http: block is reviewed by method + URL + status."""

    def interaction(method, uri, status, body="ok"):
        return {
            "request": {"method": method, "uri": uri},
            "response": {"status": status, "reason": "x", "body": body},
        }

    path = tmp_path / "cassettes" / "test_http" / "test_api.yaml"
    path.parent.mkdir(parents=True)
    before = [
        interaction("GET", "http://api.test/a", 200),
        interaction("GET", "http://api.test/b", 200),
        interaction("POST", "http://api.test/c", 201),
    ]
    after = [
        interaction("GET", "http://api.test/a", 500),
        interaction("GET", "http://api.test/b", 200, body="changed"),
        interaction("DELETE", "http://api.test/d", 204),
    ]
    doc = Cassette.new_document("test_http.py::test_api", {"http": dump_section(before)})
    save_document(path, doc)
    init(tmp_path)
    commit_all(tmp_path)
    doc = Cassette.new_document("test_http.py::test_api", {"http": dump_section(after)})
    save_document(path, doc)
    code, out, _ = review(tmp_path, "HEAD", capsys=capsys)
    assert code == 0
    assert "! GET http://api.test/a: status 200 -> 500" in out
    assert "! GET http://api.test/b: status 200, 1 field(s) changed" in out
    assert 'response.body: "ok" -> "changed"' in out
    assert "- POST http://api.test/c: status 201" in out
    assert "+ DELETE http://api.test/d: status 204" in out


@pytest.mark.parametrize(
    ("setup", "args", "message", "fix"),
    [
        (
            "none",
            ["HEAD"],
            "is not inside a git repository",
            "run pytest-replay review from a clone",
        ),
        ("repo", ["no-such-branch"], "'no-such-branch' is not a commit", "fetch-depth: 0"),
        ("repo", ["--", "-x"], "'-x' is not a commit", "name an existing branch"),
        ("empty", [], "has no commits yet", "pytest-replay review BASE"),
        ("branchless", [], "no default branch found", "pytest-replay review origin/"),
        ("broken", ["HEAD"], "cassettes/t.yaml: cassette is not valid YAML", "re-record"),
        ("broken_base", ["HEAD"], "(at ", "pytest --replay=record 't'"),
    ],
)
def test_errors_are_one_line_and_a_fix(tmp_path, capsys, setup, args, message, fix):
    if setup != "none":
        init(tmp_path, branch="trunk" if setup == "branchless" else "main")
    if setup in ("repo", "branchless", "broken", "broken_base"):
        (tmp_path / "cassettes").mkdir()
        (tmp_path / "cassettes" / "t.yaml").write_text("pytest_replay: 1\ntest: t\n")
        if setup == "broken_base":
            (tmp_path / "cassettes" / "t.yaml").write_text("pytest_replay: 1\ntest: t\nfacts: 3\n")
        commit_all(tmp_path)
    if setup == "broken":
        (tmp_path / "cassettes" / "t.yaml").write_text("pytest_replay: 1\ntest: [unclosed\n")
    if setup == "broken_base":
        (tmp_path / "cassettes" / "t.yaml").write_text("pytest_replay: 1\ntest: t2\n")
    code, out, err = review(tmp_path, *args, capsys=capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("pytest-replay review: ") and message in lines[0]
    assert lines[1].startswith("  Fix: ") and fix in lines[1]
    assert "Traceback" not in err


def test_a_payload_edited_by_hand_under_the_same_id_is_still_a_change(tmp_path, capsys):
    pid = "ab" * 32
    path = tmp_path / "cassettes" / "m" / "t.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        f'pytest_replay: 1\ntest: t\nfacts: |\n  "k" {pid}\npayloads: |\n  {pid} json 1\n'
    )
    init(tmp_path)
    commit_all(tmp_path)
    path.write_text(path.read_text().replace("json 1", "json 2"))
    code, out, _ = review(tmp_path, "HEAD", capsys=capsys)
    assert code == 0 and "! k: 1 -> 2" in out


def test_review_reads_many_base_files_by_object_id(tmp_path, capsys):
    folder = tmp_path / "cassettes" / "m"
    folder.mkdir(parents=True)
    for i in range(300):
        (folder / f"t{i}.yaml").write_text(f"pytest_replay: 1\ntest: t{i}\nresume: {{n: {i}}}\n")
    (tmp_path / "ci.yaml").write_text("jobs: {}\n")  # not a cassette: never counted
    init(tmp_path)
    commit_all(tmp_path)
    (folder / "t7.yaml").write_text("pytest_replay: 1\ntest: t7\nresume: {n: 70}\n")
    code, out, _ = review(tmp_path, "HEAD", capsys=capsys)
    assert code == 0 and "1 changed, 0 removed, 0 added, 299 unchanged" in out
    assert "! resume: 1 field(s) changed\n        n: 7 -> 70" in out


def test_markdown_keeps_hostile_names_inside_their_cell_and_fence():
    change = Change("facts", "changed", "k\n```\n# injected", "1 -> 2", ["a\nb"])
    review_ = Review(
        "f" * 40,
        "main",
        "working tree",
        [CassetteReview("c|d/<x>.yaml", "t", "changed", [change])],
        0,
    )
    text = render_markdown(review_)
    assert "| <code>c&#124;d/&lt;x&gt;.yaml</code> | changed | !1 |" in text
    fence = text[text.index("````diff") :]
    assert fence.startswith("````diff\n! k\\n```\\n# injected: 1 -> 2\n    a\\nb\n````")


GOOD_HTTP = '> {"method": "GET", "uri": "http://api.test/a"}\n< {"status": 200, "reason": "OK"}\n'


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        (GOOD_HTTP.replace('"status": 200', '"status": 200,,'), "line 2 is not JSON"),
        (GOOD_HTTP.replace("200", '"200"'), "'status' must be an HTTP status code"),
        (GOOD_HTTP.split("\n")[0] + "\n", "a request line has no response line"),
        ([{"request": {"method": "GET", "uri": "x"}}], "section 'http' must be a text block"),
    ],
)
def test_a_malformed_http_block_is_an_unreadable_cassette(tmp_path, capsys, block, problem):
    """Not 'interactions removed' and exit 0: the replay could not load it, so no report."""
    path = tmp_path / "cassettes" / "m" / "t.yaml"
    path.parent.mkdir(parents=True)
    good = Block(GOOD_HTTP)
    save_document(path, Cassette.new_document("tests/m.py::t", {"http": good}))
    init(tmp_path)
    commit_all(tmp_path)
    save_document(path, Cassette.new_document("tests/m.py::t", {"http": block}))
    for gate in ([], ["--fail-on", "removed"]):
        code, out, err = review(tmp_path, "HEAD", *gate, capsys=capsys)
        assert code == 2 and out == "", err
        lines = err.splitlines()
        assert lines[0].startswith(f"pytest-replay review: {path.relative_to(tmp_path)}: ")
        assert problem in lines[0]
        assert lines[1] == (
            "  Fix: restore the cassette from version control, or re-record: "
            "pytest --replay=record 'tests/m.py::t'"
        )


def test_fix_names_the_test_of_a_cassette_whose_yaml_breaks_below_the_header(tmp_path, capsys):
    path = tmp_path / "cassettes" / "t.yaml"
    path.parent.mkdir()
    path.write_text("pytest_replay: 1\ntest: tests/m.py::t[a b]\n")
    init(tmp_path)
    commit_all(tmp_path)
    path.write_text("pytest_replay: 1\ntest: tests/m.py::t[a b]\nfacts: [unclosed\n")
    code, _, err = review(tmp_path, "HEAD", capsys=capsys)
    assert code == 2 and "cassette is not valid YAML" in err
    assert "pytest --replay=record 'tests/m.py::t[a b]'" in err and "<test node id>" not in err


def test_a_path_that_exists_on_neither_side_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "cassettes").mkdir()
    gone = tmp_path / "cassettes" / "gone.yaml"
    gone.write_text("pytest_replay: 1\ntest: t\n")
    init(tmp_path)
    commit_all(tmp_path)
    gone.unlink()
    code, out, err = review(tmp_path, "HEAD", "cassettes/nosuch", capsys=capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0] == (
        "pytest-replay review: no such file or directory: cassettes/nosuch "
        "(neither in the working tree nor at HEAD)"
    )
    assert lines[1].startswith("  Fix: pass existing cassette files or folders")
    # deleted from the working tree but there at BASE: a removed cassette, not an error
    code, out, err = review(tmp_path, "HEAD", "cassettes/gone.yaml", capsys=capsys)
    assert code == 0 and "0 changed, 1 removed, 0 added" in out, err


def test_max_items_below_zero_is_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["review", "-C", str(tmp_path), "HEAD", "--max-items", "-1"])
    assert exc.value.code == 2
    assert "--max-items: must be at least 0 (0 shows every change)" in capsys.readouterr().err


AMBIENT = """
import os, random, time
import pytest

@pytest.mark.replay(clock=True, random=True)
def test_a(replay):
    time.time()
    random.random()
    replay.fact("v", lambda: os.environ.get("REVIEW_V", "1"))
"""


def test_ambient_start_values_are_marked_as_clock_and_randomness(rt, capsys, monkeypatch):
    monkeypatch.delenv("REVIEW_V", raising=False)
    rt.module(AMBIENT)
    rt.record().assert_outcomes(passed=1)
    init(rt.root)
    commit_all(rt.root)
    monkeypatch.setenv("REVIEW_V", "2")
    rt.record().assert_outcomes(passed=1)
    code, out, err = review(rt.root, "HEAD", "--format", "json", capsys=capsys)
    assert code == 0, err
    (cassette,) = json.loads(out)["cassettes"]
    facts = {c["data"]["key"]: c for c in cassette["changes"] if c["section"] == "facts"}
    assert set(facts) == {"ambient|clock", "ambient|seed", "v"}
    assert facts["ambient|clock"]["data"]["ambient"] is True
    assert facts["ambient|seed"]["data"]["ambient"] is True
    assert "ambient" not in facts["v"]["data"]
    code, out, _ = review(rt.root, "HEAD", capsys=capsys)
    assert "! ambient|clock: " in out and "! ambient|seed: " in out
    for line in out.splitlines():
        if line.lstrip().startswith("! ambient|"):
            assert line.endswith("(clock/randomness)"), line
