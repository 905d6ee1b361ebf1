"""pytest-replay check, stats and textconv over cassettes a real run recorded."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys

import yaml

from pytest_replay.review.cli import main

from .gitrepo import commit_all, git, init

MODULE = """
import numpy as np

def test_t(replay):
    replay.fact("quote", lambda: 12.5)
    replay.fact("quote", lambda: 13.0)
    replay.fact("doc", lambda: "x" * 9000)
    replay.fact("raw", lambda: b"\\x01\\x02")
    ring = replay.ring("dispatch", capacity=8)
    for i in range(3):
        ring.publish(opcode=i, tenant=i)
    replay.check_array("probs", np.arange(6, dtype=np.float32).reshape(2, 3))

def plan(replay):
    replay.tool_event("search", {"q": "x"})
    return {"usage": {"tokens": 5}}

def test_s(replay):
    replay.step("plan", plan, replay=replay)
"""


def record(rt):
    rt.module(MODULE)
    rt.record().assert_outcomes(passed=2)
    return rt.cassette("test_t")


def run(capsys, *args):
    capsys.readouterr()
    code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_finds_a_cassette_whose_keys_a_tool_re_sorted(rt, capsys):
    # Replay accepts a cassette whose header is not the first key, so check,
    # review and textconv must not skip it as "other YAML".
    path = record(rt)
    doc = yaml.safe_load(path.read_text())
    doc["rings"]["dispatch"]["records"] = "eleven"
    path.write_text(yaml.safe_dump(doc, sort_keys=True))
    assert not path.read_text().startswith("pytest_replay:")
    code, out, _ = run(capsys, "check", rt.root)
    assert code == 1 and f"FAIL {path}" in out
    assert "ring 'dispatch': 'records' must be a record count" in out
    assert out.endswith("1 ok, 1 failed\n")


def test_check_covers_blobs_arrays_and_ring_logs(rt, capsys):
    path = record(rt)
    (rt.root / "ci.yaml").write_text("jobs: {}\n")  # other YAML in the tree is skipped
    code, out, _ = run(capsys, "check", rt.root)
    assert code == 0 and out.endswith("2 ok, 0 failed (1 other YAML file(s) skipped)\n")
    blobs = rt.root / "cassettes" / ".blobs"
    (npy,) = blobs.glob("*.npy")
    saved = npy.read_bytes()
    npy.write_bytes(saved[:-4] + b"\x00\x00\x80\x7f")  # one float changed
    code, out, _ = run(capsys, "check", rt.root)
    assert code == 1 and f"FAIL {path}" in out and "does not match its digest" in out
    assert out.endswith("1 ok, 1 failed (1 other YAML file(s) skipped)\n")
    npy.write_bytes(saved)
    doc = yaml.safe_load(path.read_text())
    doc["rings"]["dispatch"]["records"] = 4
    path.write_text(yaml.safe_dump(doc))
    code, out, _ = run(capsys, "check", path)
    assert code == 1 and "holds 3 records, the cassette says 4" in out
    doc["rings"]["dispatch"]["records"] = 3
    doc["arrays"][0]["shape"] = [3, 2]
    path.write_text(yaml.safe_dump(doc))
    code, out, _ = run(capsys, "check", path)
    assert code == 1 and "blob holds shape [2, 3], the cassette says [3, 2]" in out
    # a named file is always checked, header or not
    code, out, _ = run(capsys, "check", rt.root / "ci.yaml")
    assert code == 1 and "not a pytest_replay cassette" in out


def test_check_verifies_blobs_of_any_section(tmp_path, capsys):
    """Sections this version does not decode (a plugin's own) still get their blobs verified."""
    path = tmp_path / "cassettes" / "m" / "t.yaml"
    path.parent.mkdir(parents=True)
    (tmp_path / "cassettes" / ".blobs").mkdir()
    name = "0" * 64 + ".bin"
    path.write_text(f"pytest_replay: 1\ntest: t\ncustom:\n- response: {{body_blob: {name}}}\n")
    code, out, _ = run(capsys, "check", tmp_path)
    assert code == 1 and f"blob {name} cannot be read" in out


def test_stats_counts_sections_sizes_and_blobs(rt, capsys):
    record(rt)
    blobs = rt.root / "cassettes" / ".blobs"
    (blobs / ("f" * 64 + ".bin")).write_bytes(b"orphan")
    code, out, _ = run(capsys, "stats", "--json", rt.root)
    assert code == 0
    data = json.loads(out)
    assert data["cassettes"] == 2
    assert data["sections"]["facts"] == {
        "facts": 4,
        "json payloads": 2,
        "hex payloads": 1,
        "blob payloads": 1,
    }
    assert data["sections"]["steps"] == {"steps": 1, "attempts": 1, "tool events": 1}
    assert data["sections"]["rings"] == {"rings": 1, "records": 3}
    assert data["sections"]["arrays"] == {"arrays": 1, "elements": 6}
    assert data["cassettes_with"]["facts"] == 1 and data["cassettes_with"]["steps"] == 1
    assert data["vrrl_bytes"] == 32 + 3 * 64
    (b,) = data["blobs"]
    assert (b["files"], b["referenced"], b["unreferenced"], b["unreferenced_bytes"]) == (3, 2, 1, 6)
    code, out, _ = run(capsys, "stats", rt.root)
    assert (
        "facts   in     1 cassette(s): 4 facts, 2 json payloads, 1 hex payloads, 1 blob payloads"
        in out
    )
    assert "2 referenced, 1 unreferenced (6 B)" in out


def test_textconv_shows_fact_values_without_reading_blobs(rt, capsys, tmp_path):
    path = record(rt)
    copy = tmp_path / "elsewhere.yaml"  # git hands textconv a temp copy, far from .blobs
    shutil.copy(path, copy)
    code, out, _ = run(capsys, "textconv", copy)
    assert code == 0
    assert '"quote"#0 = 12.5\n' in out and '"quote"#1 = 13.0\n' in out
    assert '"raw"#0 = hex 0102\n' in out
    assert '"doc"#0 = blob ' in out and ".json" in out
    assert "payloads" not in out
    steps = rt.cassette("test_s")
    code, out, _ = run(capsys, "textconv", steps)
    assert "duration_ms" not in out and "tokens: 5" in out


def test_textconv_passes_other_files_through_byte_for_byte(tmp_path, capsysbinary):
    for data in (b"a: [1, 2\n\xff\xfe", b"pytest_replay: 1\ntest: [unclosed\n", b""):
        other = tmp_path / "other.yaml"
        other.write_bytes(data)
        assert main(["textconv", str(other)]) == 0
        assert capsysbinary.readouterr().out == data


def test_textconv_of_a_broken_ring_log_is_a_line_not_a_failure(rt, capsys):
    record(rt)
    log = rt.root / "cassettes" / "test_mod" / "test_t.dispatch.vrrl"
    log.write_bytes(b"VRRL0001" + b"\x00" * 10)
    code, out, _ = run(capsys, "textconv", log)
    assert code == 0 and out.startswith("# test_t.dispatch.vrrl: unreadable ring log:")
    code, _, err = run(capsys, "textconv", rt.root / "nope.vrrl")
    assert code == 2 and "Fix:" in err


def test_git_diff_uses_textconv(rt):
    """The documented .gitattributes and git config lines give a readable git diff."""
    record(rt)
    init(rt.root)
    (rt.root / ".gitattributes").write_text(
        "**/cassettes/**/*.yaml diff=replay\n*.vrrl diff=replay\n**/.blobs/** -diff\n"
    )
    commit_all(rt.root)
    rt.module(MODULE.replace("13.0", "14.5").replace("opcode=i,", "opcode=i * 2,"))
    rt.record().assert_outcomes(passed=2)
    command = f"{shlex.quote(sys.executable)} -m pytest_replay textconv"
    git(rt.root, "config", "diff.replay.textconv", command)
    diff = git(rt.root, "diff")
    assert '-  "quote"#1 = 13.0\n+  "quote"#1 = 14.5' in diff
    assert (
        "-      2 slot=2 tenant=2 opcode=2" in diff and "+      2 slot=2 tenant=2 opcode=4" in diff
    )
    raw = subprocess.run(
        ["git", "-C", str(rt.root), "diff", "--no-textconv", "--stat"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Bin" in raw  # without textconv the .vrrl is an opaque binary


BAD_HTTP = 'http: |\n  > {"method": "GET", "uri": "http://a/"}\n  < {"status": 200,,}\n'


def test_check_fix_lines_name_the_cassettes_test(rt, capsys):
    path = record(rt)
    test = yaml.safe_load(path.read_text())["test"]
    (npy,) = (rt.root / "cassettes" / ".blobs").glob("*.npy")
    npy.write_bytes(npy.read_bytes()[:-4] + b"\x00\x00\x80\x7f")
    code, out, _ = run(capsys, "check", path)
    assert code == 1 and "does not match its digest" in out
    assert f"pytest --replay=record '{test}'" in out
    assert "<test node id>" not in out
    bad = rt.root / "cassettes" / "bad.yaml"
    bad.write_text(f"pytest_replay: 1\ntest: tests/x.py::t\n{BAD_HTTP}")
    code, out, _ = run(capsys, "check", bad)
    assert code == 1 and "http interaction #0 is malformed: line 2 is not JSON" in out
    assert "pytest --replay=record tests/x.py::t" in out.replace("'", "")
    assert "<test node id>" not in out


def test_stats_lists_a_cassette_with_a_malformed_http_block_as_unreadable(rt, capsys):
    record(rt)
    bad = rt.root / "cassettes" / "bad.yaml"
    bad.write_text(f"pytest_replay: 1\ntest: tests/x.py::t\n{BAD_HTTP}")
    code, out, _ = run(capsys, "stats", "--json", rt.root)
    data = json.loads(out)
    assert code == 0 and data["cassettes"] == 2
    assert data["sections"]["http"] == {"interactions": 0}
    ((entry),) = data["unreadable"]
    assert entry["path"] == str(bad) and "line 2 is not JSON" in entry["problem"]
    code, out, _ = run(capsys, "stats", rt.root)
    assert f"unreadable: {bad}: http interaction #0 is malformed: line 2 is not JSON" in out


def test_stats_of_one_cassette_counts_references_from_every_cassette_of_its_store(rt, capsys):
    """Blobs only another cassette uses are live: deleting them would break that test."""
    record(rt)
    blobs = rt.root / "cassettes" / ".blobs"
    (blobs / ("f" * 64 + ".bin")).write_bytes(b"orphan")
    rt.module("def test_o(replay):\n    replay.fact('x', lambda: 1)\n", "test_other")
    rt.record("test_other.py").assert_outcomes(passed=1)
    other = rt.cassette("test_o", "test_other")  # references none of the blobs itself
    for path in (other, other.parent):
        code, out, _ = run(capsys, "stats", "--json", path)
        assert code == 0 and json.loads(out)["cassettes"] == 1
        (b,) = json.loads(out)["blobs"]
        assert (b["files"], b["referenced"], b["unreferenced"], b["unreferenced_bytes"]) == (
            3,
            2,
            1,
            6,
        )
        assert b["cassettes"] == 3
    code, out, _ = run(capsys, "stats", other)
    assert "2 referenced, 1 unreferenced (6 B) by the 3 cassette(s) using it" in out
