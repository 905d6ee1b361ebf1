"""--replay-report-unused and pytest-replay prune: only what a whole run proves unused goes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_replay.review.cli import main
from pytest_replay.usage import UnusedReport, read_test_id

from .gitrepo import commit_all, init

MODULE = """
import os
import numpy as np
import pytest

def test_a(replay):
    replay.fact("a", lambda: 1)
    replay.check_array("x", np.arange(3))

{extra}

def test_plain():
    pass
"""

B = """
def test_b(replay):
    replay.fact("b", lambda: 2)
    replay.check_array("y", np.arange(5))
    replay.ring("r", capacity=4).publish(1)
"""

SKIPPED_B = """
@pytest.mark.skip(reason="needs a GPU")
def test_b(replay):
    pass
"""


@pytest.fixture
def suite(rt):
    """test_a and test_b recorded, plus a module that was then deleted."""
    rt.module(MODULE.format(extra=B))
    gone = rt.module("def test_x(replay):\n    replay.fact('g', lambda: 0)\n", name="test_gone")
    rt.record().assert_outcomes(passed=4)
    gone.unlink()
    return rt


def report_of(rt) -> dict:
    return json.loads((rt.root / ".pytest_cache" / "replay" / "unused.json").read_text())


def prune(rt, capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["prune", "--report", str(rt.root / ".pytest_cache/replay/unused.json"), *args])
    return code, capsys.readouterr().out


def test_a_whole_run_lists_what_no_test_used_and_prune_deletes_it(suite, capsys):
    rt = suite
    rt.module(MODULE.format(extra=""))  # test_b was deleted
    result = rt.run("--replay-report-unused")
    result.assert_outcomes(passed=2)
    data = report_of(rt)
    assert data["partial"] is False and data["not_checked"] == {}
    assert data["cassettes"] == [
        "cassettes/test_gone/test_x.yaml",
        "cassettes/test_mod/test_b.yaml",
    ]
    assert data["sidecars"] == ["cassettes/test_mod/test_b.r.vrrl"]
    assert len(data["blobs"]) == 1  # test_b's array; test_a's is still named
    result.stdout.fnmatch_lines(
        [
            "unused files: 2 cassette(s), 1 ring log(s), 1 blob(s) in 1 module(s) checked; "
            "written to .pytest_cache/replay/unused.json",
            "  cassettes/test_gone/test_x.yaml",
            "  cassettes/test_mod/test_b.yaml",
            "  cassettes/test_mod/test_b.r.vrrl",
            "  cassettes/.blobs/*.npy",
            "Fix: to delete them: pytest-replay prune --dry-run, then pytest-replay prune",
        ]
    )
    code, out = prune(rt, capsys, "--dry-run")
    assert code == 0 and "would delete cassettes/test_mod/test_b.yaml" in out
    assert "4 file(s) would be deleted, 0 kept" in out
    assert (rt.root / "cassettes/test_mod/test_b.yaml").exists()
    code, out = prune(rt, capsys)
    assert code == 0 and "4 file(s) deleted, 0 kept" in out
    left = sorted(p.relative_to(rt.root).as_posix() for p in (rt.root / "cassettes").rglob("*"))
    assert [p for p in left if not p.startswith("cassettes/.blobs/")] == [
        "cassettes/.blobs",
        "cassettes/test_mod",
        "cassettes/test_mod/test_a.yaml",
    ]
    rt.run("--replay=strict").assert_outcomes(passed=2)  # test_a's blob is still there
    code, out = prune(rt, capsys)
    assert code == 2 and "no unused report" in out  # a report is used up by a prune


@pytest.mark.parametrize(
    "how",
    [("-k", "test_a"), ("test_mod.py::test_a",), ("--deselect", "test_mod.py::test_b")],
    ids=["-k", "node-id", "deselect"],
)
def test_a_subset_run_never_lists_the_tests_it_did_not_run(suite, capsys, how):
    rt = suite
    result = rt.run("--replay-report-unused", *how)
    assert result.ret == 0
    data = report_of(rt)
    assert "cassettes/test_mod/test_b.yaml" not in data["cassettes"]
    assert data["sidecars"] == []
    assert data["partial"] is True and "test_mod.py" in data["not_checked"]
    result.stdout.fnmatch_lines(["not checked: test_mod.py (*)"])
    code, out = prune(rt, capsys)
    assert code == 1 and "refusing to delete from a partial report" in out
    assert (rt.root / "cassettes/test_gone/test_x.yaml").exists()
    code, out = prune(rt, capsys, "--dry-run")
    assert code == 1
    assert (
        "pytest-replay prune --dry-run: prune would refuse to delete from a partial report" in out
    )
    assert "would delete cassettes/test_gone/test_x.yaml" in out
    assert "would be deleted by prune --allow-partial" in out
    assert prune(rt, capsys, "--dry-run", "--allow-partial")[0] == 0
    assert (rt.root / "cassettes/test_gone/test_x.yaml").exists()
    code, out = prune(rt, capsys, "--allow-partial")
    assert code == 0 and "deleted cassettes/test_gone/test_x.yaml" in out
    assert (rt.root / "cassettes/test_mod/test_b.yaml").exists()


def test_a_skipped_test_keeps_its_module_unchecked(suite):
    rt = suite
    rt.module(MODULE.format(extra=SKIPPED_B))
    result = rt.run("--replay-report-unused")
    result.assert_outcomes(passed=2, skipped=1)
    data = report_of(rt)
    assert "cassettes/test_mod/test_b.yaml" not in data["cassettes"]
    assert "did not reach their cassette" in data["not_checked"]["test_mod.py"]


def test_prune_keeps_a_file_changed_since_the_report(suite, capsys):
    rt = suite
    rt.module(MODULE.format(extra=""))
    rt.run("--replay-report-unused").assert_outcomes(passed=2)
    path = rt.root / "cassettes/test_mod/test_b.yaml"
    path.write_text(path.read_text() + "# edited\n")
    code, out = prune(rt, capsys)
    assert code == 0
    assert "keep cassettes/test_mod/test_b.yaml (changed since the report)" in out
    assert path.exists()
    # the blob test_b names stays with it
    assert "1 blob" not in out and "deleted cassettes/.blobs/" not in out


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_a_bad_report_is_a_clear_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("r") / "unused.json"
    path.write_bytes(data)
    with pytest.raises(ValueError):
        UnusedReport.load(path)


REPORT_KEYS = [
    "rootdir",
    "cassettes",
    "blobs",
    "digests",
    "not_checked",
    "checked_modules",
    "blobs_checked",
    "git_head",
]


@settings(deadline=None)  # the first example pays for mktemp on a loaded machine
@given(
    st.dictionaries(
        st.sampled_from(REPORT_KEYS),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=5)
        | st.lists(st.integers(), max_size=2),
    )
)
def test_a_malformed_report_loads_or_is_a_clear_error(tmp_path_factory, fields):
    path = tmp_path_factory.mktemp("r") / "unused.json"
    path.write_text(json.dumps({"pytest_replay_unused": 1, **fields}))
    try:
        report = UnusedReport.load(path)
    except ValueError as exc:
        assert str(path) in str(exc)
    else:
        assert Path(report.rootdir).is_absolute()


def test_prune_of_a_report_with_a_huge_module_count_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "unused.json"
    path.write_text('{"pytest_replay_unused": 1, "rootdir": "/x", "checked_modules": 1e999}')
    capsys.readouterr()
    assert main(["prune", "--report", str(path)]) == 2
    out = capsys.readouterr().out
    assert "is malformed" in out and "Fix: run it again" in out


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_reading_a_header_never_raises(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("h") / "c.yaml"
    path.write_bytes(b"pytest_replay: 1\n" + data)
    test = read_test_id(path)
    assert test is None or (isinstance(test, str) and test)
    path.write_bytes(b"pytest_replay: 1\ntest: 'a.py::t[x: y]'\nfacts: |\n")
    assert read_test_id(path) == "a.py::t[x: y]"


# --- tests whose use of replay collection cannot see ------------------------------------

AMBIENT = """
import time
import pytest

def test_a(replay):
    replay.fact("a", lambda: 1)

@pytest.mark.replay(clock=True){skip}
def test_clock():
    assert time.time()
"""


def test_a_skipped_test_that_turns_the_clock_on_keeps_its_cassette(rt):
    rt.module(AMBIENT.format(skip=""))
    rt.record().assert_outcomes(passed=2)
    assert rt.cassette("test_clock").exists()
    rt.module(AMBIENT.format(skip="\n@pytest.mark.skip(reason='not today')"))
    result = rt.run("--replay-report-unused")
    result.assert_outcomes(passed=1, skipped=1)
    data = report_of(rt)
    assert data["cassettes"] == []
    assert "did not reach their cassette" in data["not_checked"]["test_mod.py"]


def test_collect_only_never_lists_the_cassettes_of_ambient_tests(rt, capsys):
    rt.pytester.makeini("[pytest]\nreplay_ambient = clock\n")
    rt.module("import time\n\ndef test_one():\n    assert time.time()\n")
    rt.record().assert_outcomes(passed=1)
    assert rt.cassette("test_one").exists()
    result = rt.run("--collect-only", "--replay-report-unused")
    assert result.ret == 0
    data = report_of(rt)
    assert data["cassettes"] == [] and data["partial"] is True
    assert any("--collect-only" in p for p in data["problems"])
    code, out = prune(rt, capsys)
    assert code == 1 and "refusing" in out
    code, out = prune(rt, capsys, "--allow-partial")
    assert code == 0 and rt.cassette("test_one").exists()


def test_a_test_that_never_ran_keeps_the_cassettes_of_its_module(rt):
    # replay_config can rename the cassette (or a test may ask for replay
    # dynamically): only running tells which cassette a test uses.
    rt.pytester.makeconftest(
        "import pytest\n\n@pytest.fixture\ndef replay_config(request):\n"
        "    return {'clock': request.node.name == 'test_one'}\n"
    )
    rt.module(
        "import time, pytest\n\ndef test_one(request):\n"
        "    request.getfixturevalue('replay')\n    assert time.time()\n"
    )
    rt.module("def test_free():\n    pass\n", name="test_free")
    rt.record().assert_outcomes(passed=2)
    assert rt.cassette("test_one").exists()
    rt.module("import pytest\n\n@pytest.mark.skip(reason='x')\ndef test_one():\n    pass\n")
    rt.module(
        "import pytest\n\n@pytest.mark.skip(reason='x')\ndef test_free():\n    pass\n",
        name="test_free",
    )
    rt.run("--replay-report-unused").assert_outcomes(skipped=2)
    data = report_of(rt)
    assert data["cassettes"] == []
    # test_free.py has no cassettes: its skipped test does not make the report partial
    assert list(data["not_checked"]) == ["test_mod.py"]
    assert "did not run" in data["not_checked"]["test_mod.py"]


def test_last_failed_never_lists_the_cassettes_of_what_it_did_not_run(rt, monkeypatch):
    rt.module(
        "import os\n\ndef test_fail():\n    assert os.environ.get('OK')\n\n"
        "def test_ok(replay):\n    replay.fact('a', lambda: 1)\n",
        name="test_a",
    )
    rt.module("def test_b(replay):\n    replay.fact('b', lambda: 2)\n", name="test_b")
    rt.record().assert_outcomes(passed=2, failed=1)
    monkeypatch.setenv("OK", "1")
    result = rt.run("--lf", "--replay-report-unused")
    result.assert_outcomes(passed=1)
    data = report_of(rt)
    assert data["cassettes"] == [] and data["partial"] is True
    assert sorted(data["not_checked"]) == ["test_a.py", "test_b.py"]
    assert "--lf" in data["not_checked"]["test_b.py"]


def test_a_cassette_path_hook_spelling_the_path_oddly_still_counts_as_used(rt):
    rt.pytester.makeconftest(
        "def pytest_replay_cassette_path(item, default):\n"
        "    return default.parent / '..' / default.parent.name / '.' / default.name\n"
    )
    rt.module("def test_a(replay):\n    replay.fact('a', lambda: 1)\n")
    rt.record().assert_outcomes(passed=1)
    assert rt.cassette("test_a").exists()
    rt.run("--replay-report-unused").assert_outcomes(passed=1)
    data = report_of(rt)
    assert data["cassettes"] == [] and data["partial"] is False


def test_two_tests_on_one_cassette_spelled_two_ways_are_refused(rt):
    rt.pytester.makeconftest(
        "def pytest_replay_cassette_path(item, default):\n"
        "    if item.name == 'test_b':\n"
        "        return default.parent / '..' / default.parent.name / 'test_a.yaml'\n"
        "    return default\n"
    )
    rt.module("def test_a(replay):\n    pass\n\ndef test_b(replay):\n    pass\n")
    result = rt.record()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*already used by test_mod.py::test_a*"])


def test_blobs_are_not_listed_where_a_hook_may_keep_cassettes_elsewhere(rt, capsys):
    rt.pytester.makeconftest(
        "def pytest_replay_cassette_path(item, default):\n"
        "    if item.name == 'test_far':\n"
        "        return item.config.rootpath / 'elsewhere' / default.name\n"
    )
    rt.module(
        "import numpy as np\n\ndef test_far(replay):\n    replay.check_array('x', np.arange(7))\n",
        name="test_far",
    )
    rt.module("def test_m(replay):\n    replay.fact('m', lambda: 1)\n")
    rt.record().assert_outcomes(passed=2)
    assert (rt.root / "elsewhere" / "test_far.yaml").exists()
    blobs = list((rt.root / "cassettes" / ".blobs").iterdir())
    assert len(blobs) == 1
    # what a partial report lists is still unused: --allow-partial must be safe
    result = rt.run("test_mod.py", "--replay-report-unused")
    result.assert_outcomes(passed=1)
    data = report_of(rt)
    assert data["blobs"] == [] and data["blobs_checked"] is False
    result.stdout.fnmatch_lines(["blobs not checked: a pytest_replay_cassette_path hook*"])
    code, out = prune(rt, capsys, "--allow-partial")
    assert code == 0 and "blobs were not checked" in out
    assert blobs[0].exists()
    rt.run("--replay=strict").assert_outcomes(passed=2)


def test_prune_refuses_a_report_made_at_another_commit(suite, capsys):
    rt = suite
    rt.module(MODULE.format(extra=""))
    init(rt.root)
    commit_all(rt.root)
    rt.run("--replay-report-unused").assert_outcomes(passed=2)
    assert report_of(rt)["git_head"] is not None
    commit_all(rt.root, "another branch, another commit")
    code, out = prune(rt, capsys)
    assert code == 1
    assert "the report was made at commit" in out and "HEAD is now" in out
    assert "refusing to delete from a report older than the checked-out commit" in out
    assert "Fix: run it again now: pytest --replay-report-unused" in out
    assert (rt.root / "cassettes/test_mod/test_b.yaml").exists()
    # The dry run says the real prune would refuse, shows what the flag would
    # delete, and exits as the real prune would.
    code, out = prune(rt, capsys, "--dry-run")
    assert code == 1
    assert (
        "pytest-replay prune --dry-run: prune would refuse to delete from a report older "
        "than the checked-out commit\n  Fix: run it again now: pytest --replay-report-unused  "
        "(or, to delete what it lists all the same, add --allow-stale)\n"
        "what prune --allow-stale would do:\n"
    ) in out
    assert "would delete cassettes/test_mod/test_b.yaml" in out
    assert out.endswith(
        "4 file(s) would be deleted by prune --allow-stale, 0 kept; "
        "prune without --allow-stale refuses and deletes nothing (exit 1)\n"
    )
    assert (rt.root / "cassettes/test_mod/test_b.yaml").exists()
    code, out = prune(rt, capsys, "--dry-run", "--allow-stale")
    assert code == 0 and out.endswith("4 file(s) would be deleted, 0 kept\n")
    assert "refuse" not in out
    code, out = prune(rt, capsys, "--allow-stale")
    assert code == 0 and "deleted cassettes/test_mod/test_b.yaml" in out


def test_prune_refuses_when_a_test_module_changed_since_the_report(suite, capsys):
    # No git here: uncommitted edits (and repositories without git) are caught by
    # the content of the modules that let the listed files go.
    rt = suite
    rt.module(MODULE.format(extra=""))  # test_b deleted: its cassette is unused
    rt.run("--replay-report-unused").assert_outcomes(passed=2)
    data = report_of(rt)
    assert data["git_head"] is None
    assert sorted(data["modules"]) == ["test_gone.py", "test_mod.py"]
    assert data["modules"]["test_gone.py"] is None  # absent when the run saw it
    rt.module(MODULE.format(extra=B))  # test_b is back before the prune
    code, out = prune(rt, capsys)
    assert code == 1
    assert "1 test module(s) changed since the report" in out and "  test_mod.py" in out
    assert "refusing to delete from a report older than the test modules" in out
    assert (rt.root / "cassettes/test_mod/test_b.yaml").exists()
    rt.run("--replay=strict").assert_outcomes(passed=3)
    # A module that reappears counts as a change too.
    rt.module(MODULE.format(extra=""))
    rt.run("--replay-report-unused").assert_outcomes(passed=2)
    (rt.root / "test_gone.py").write_text("def test_x(replay):\n    replay.fact('g', lambda: 0)\n")
    code, out = prune(rt, capsys, "--dry-run")
    assert code == 1 and "  test_gone.py" in out and "prune would refuse" in out
    code, out = prune(rt, capsys)
    assert code == 1 and "  test_gone.py" in out


def test_xdist_workers_that_each_ran_part_of_a_module_merge_into_a_whole_one():
    from pytest_replay.usage import Child, Usage

    def worker(ran: str, hook: bool = False) -> Usage:
        usage = Usage(path_hook=hook)
        kids = [Child(f"m.py::{n}", "/r/m.py", True) for n in ("a", "b")]
        usage.collected("m.py", "/r/m.py", True, "", kids)
        usage.selected(kids)
        usage.ran.add(f"m.py::{ran}")
        return Usage.from_dict(json.loads(json.dumps(usage.to_dict())))

    one, two = worker("a"), worker("b", hook=True)
    assert one.whole() == set() and "did not run" in one.unsure()["/r/m.py"]
    merged = Usage.merge([one, two])
    assert merged.whole() == {"/r/m.py"} and merged.path_hook


def test_a_module_left_off_the_command_line_is_not_checked_for_that_reason(suite, capsys):
    rt = suite
    rt.module("def test_o(replay):\n    replay.fact('o', lambda: 3)\n", name="test_other")
    rt.record("test_other.py").assert_outcomes(passed=1)
    rt.module(MODULE.format(extra=""))  # test_b deleted: unused, and test_mod.py runs whole
    result = rt.run("test_mod.py", "--replay-report-unused")
    result.assert_outcomes(passed=2)
    data = report_of(rt)
    assert data["partial"] is True
    assert data["not_checked"] == {
        "test_other.py": "not collected in this run: not among the paths or node ids "
        "given to pytest"
    }
    result.stdout.fnmatch_lines(["not checked: test_other.py (not collected in this run: *)"])
    assert "cassettes/test_mod/test_b.yaml" in data["cassettes"]
    assert "cassettes/test_other/test_o.yaml" not in data["cassettes"]
    code, out = prune(rt, capsys, "--allow-partial")
    assert code == 0 and "deleted cassettes/test_mod/test_b.yaml" in out
    assert (rt.root / "cassettes/test_other/test_o.yaml").exists()
    rt.run("--replay=strict").assert_outcomes(passed=3)


def test_a_class_left_out_by_a_node_id_leaves_its_module_partly_collected(rt):
    rt.module(
        "class TestA:\n    def test_a(self, replay):\n        replay.fact('a', lambda: 1)\n\n"
        "class TestB:\n    def test_b(self, replay):\n        replay.fact('b', lambda: 2)\n"
    )
    rt.record().assert_outcomes(passed=2)
    rt.run("test_mod.py::TestA", "--replay-report-unused").assert_outcomes(passed=1)
    data = report_of(rt)
    assert data["cassettes"] == []
    assert data["not_checked"] == {
        "test_mod.py": "only part of it was collected (node ids on the command line)"
    }


def test_prune_names_every_reason_it_refuses_at_once(suite, capsys):
    rt = suite
    result = rt.run("-k", "test_a", "--replay-report-unused")  # partial
    assert result.ret == 0
    assert report_of(rt)["cassettes"] == ["cassettes/test_gone/test_x.yaml"]
    (rt.root / "test_gone.py").write_text("def test_x(replay):\n    replay.fact('g', lambda: 0)\n")
    for args in [(), ("--dry-run",)]:
        code, out = prune(rt, capsys, *args)
        assert code == 1
        assert "from a report older than the test modules" in out
        assert "from a partial report" in out
        assert "add --allow-stale" in out and "add --allow-partial" in out
    assert "what prune --allow-stale --allow-partial would do:" in out
    assert "would delete cassettes/test_gone/test_x.yaml" in out
    code, out = prune(rt, capsys, "--allow-stale")
    assert code == 1 and "partial" in out and "older than" not in out
    assert (rt.root / "cassettes/test_gone/test_x.yaml").exists()


def test_prune_from_a_subdirectory_finds_the_report_of_the_rootdir(suite, capsys, monkeypatch):
    rt = suite
    rt.pytester.makeini("[pytest]\n")  # tox.ini: the project's top
    rt.module(MODULE.format(extra=""))
    rt.run("--replay-report-unused").assert_outcomes(passed=2)
    deeper = rt.root / "cassettes" / "test_mod" / "deeper"
    deeper.mkdir()
    monkeypatch.chdir(deeper)
    capsys.readouterr()
    assert main(["prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("using the report ../../../.pytest_cache/replay/unused.json\n")
    assert "would delete cassettes/test_mod/test_b.yaml" in out
    assert main(["prune"]) == 0
    assert not (rt.root / "cassettes/test_mod/test_b.yaml").exists()
    assert main(["prune"]) == 2  # used up: the message says where it looked
    out = capsys.readouterr().out
    assert (
        "pytest-replay prune: no unused report: looked for .pytest_cache/replay/unused.json "
        f"in {deeper} and every folder up to {rt.root} (the project's top: it holds tox.ini)\n"
        "  Fix: run the whole suite first: pytest --replay-report-unused"
    ) in out


def test_prune_never_takes_the_report_of_an_enclosing_project(suite, capsys, monkeypatch):
    rt = suite
    rt.run("--replay-report-unused").assert_outcomes(passed=3)
    inner = rt.root / "inner"
    (inner / "tests").mkdir(parents=True)
    (inner / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    monkeypatch.chdir(inner / "tests")
    capsys.readouterr()
    assert main(["prune"]) == 2
    out = capsys.readouterr().out
    assert f"every folder up to {inner} (the project's top: it holds pyproject.toml)" in out
    assert (rt.root / ".pytest_cache/replay/unused.json").exists()
    monkeypatch.chdir(rt.root)
    assert main(["prune", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("using the report .pytest_cache/replay/unused.json\n")
