"""The pytest-replay command: check and show over cassettes a real run recorded."""

from __future__ import annotations

import json
import subprocess
import sys

from pytest_replay.review.cli import main


def recorded(rt):
    rt.module(
        "def test_t(replay):\n"
        "    replay.fact('quote', lambda: 12.5)\n"
        "    replay.fact('quote', lambda: 13.0)\n"
        "    replay.fact('blob', lambda: 'x' * 9000)\n"
    )
    rt.record().assert_outcomes(passed=1)
    return rt.cassette("test_t")


def test_check_passes_on_good_cassettes_and_lists_bad_ones(rt, capsys):
    path = recorded(rt)
    assert main(["check", str(rt.root)]) == 0
    assert "1 ok, 0 failed" in capsys.readouterr().out
    (blob,) = (rt.root / "cassettes" / ".blobs").iterdir()
    blob.write_text("tampered")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {path}" in out and "does not match its digest" in out


def test_check_of_a_missing_path_is_a_usage_error(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_show_lists_facts_with_ordinals(rt, capsys):
    path = recorded(rt)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "quote#0  12.5" in out and "quote#1  13.0" in out
    assert main(["show", "--json", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [f["key"] for f in data["facts"]] == ["quote", "quote", "blob"]


def test_python_dash_m_runs_the_same_command(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_replay", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "0 ok, 0 failed" in proc.stdout


def test_textconv_prints_a_ring_log_one_record_per_line(rt, capsys):
    rt.module(
        "def test_r(replay):\n"
        "    ring = replay.ring('dispatch', capacity=8)\n"
        "    ring.publish(opcode=7, tenant=3, args=(1, 2, 3, 4))\n"
    )
    rt.record().assert_outcomes(passed=1)
    log = rt.root / "cassettes" / "test_mod" / "test_r.dispatch.vrrl"
    capsys.readouterr()  # drop the inner run's output
    assert main(["textconv", str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == [
        "0",
        "slot=0",
        "tenant=3",
        "opcode=7",
        "args=[1,2,3,4]",
        "epoch=0",
        "status=0",
        "failure=0",
        "backend=0",
        "digest=0000000000000000",
    ]
    assert main(["check", str(rt.root)]) == 0
    log.write_bytes(log.read_bytes()[:40])
    assert main(["check", str(rt.root)]) == 1
    assert "shorter than" in capsys.readouterr().out


def test_show_tenant_scoping_never_shows_another_tenants_records(rt, capsys):
    rt.module(
        "import numpy as np\n"
        "def test_r(replay):\n"
        "    ring = replay.ring('dispatch', capacity=64)\n"
        "    ring.publish_many(np.arange(30), np.arange(30) % 3)\n"
    )
    rt.record().assert_outcomes(passed=1)
    capsys.readouterr()
    assert main(["show", "--json", "--tenant", "2", str(rt.cassette("test_r"))]) == 0
    rows = json.loads(capsys.readouterr().out)["rings"]["dispatch"]
    assert len(rows) == 10 and {r["tenant"] for r in rows} == {2}
    assert main(["show", "--tenant", "1", "--limit", "3", str(rt.cassette("test_r"))]) == 0
    out = capsys.readouterr().out
    assert "ring dispatch (tenant 1): 10 record(s), showing 3" in out and "tenant=0" not in out


def test_import_vcr_of_a_missing_path_is_a_usage_error_with_a_fix(tmp_path, capsys):
    assert main(["import-vcr", str(tmp_path / "nosuch")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"pytest-replay import-vcr: no such file or directory: {tmp_path / 'nosuch'}",
        "  Fix: pass existing vcrpy cassette files or folders",
    ]
