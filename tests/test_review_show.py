"""pytest-replay show: cursor pages within one collection, a time bound kept across pages,
tenant scoping that never shows another tenant's records, filters applied before the limit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_replay.cassette import Cassette, save_document
from pytest_replay.review.cli import main
from pytest_replay.review.show import Query, page
from pytest_replay.review.view import View
from pytest_replay.ring import stream_digest, write_records
from pytest_replay.ring.log import empty_records

MS = 1_000_000  # ns


def ring_cassette(tmp_path, rows, *, facts=True):
    """A cassette written through the library: a ring of (tenant, created_ms) records."""
    records = empty_records(len(rows))
    for i, (tenant, created_ms) in enumerate(rows):
        records[i]["timestamp_ns"] = created_ms * MS
        records[i]["tenant_id"] = tenant
        records[i]["opcode"] = i
        records[i]["slot_idx"] = i % 8
    folder = tmp_path / "cassettes" / "test_mod"
    folder.mkdir(parents=True, exist_ok=True)
    write_records(folder / "test_r.jobs.vrrl", records)
    sections = {
        "rings": {
            "jobs": {
                "log": "test_r.jobs.vrrl",
                "records": len(rows),
                "capacity": len(rows),
                "digest": stream_digest(records),
            }
        }
    }
    if facts:
        # A fact value that names a tenant: scoping must not show it either.
        sections["facts"] = '"owner" ' + "a" * 64 + "\n"
        sections["payloads"] = "a" * 64 + ' json "tenant-2-secret"\n'
    path = folder / "test_r.yaml"
    save_document(path, Cassette.new_document("test_mod.py::test_r", sections))
    return path


def show(capsys, *args):
    capsys.readouterr()
    code = main(["show", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def show_json(capsys, *args):
    code, out, err = show(capsys, "--json", *args)
    assert code == 0, err
    return json.loads(out)


def test_after_cursor_pages_only_within_its_collection(rt, capsys):
    rt.module(
        "def test_t(replay):\n"
        "    for i in range(5):\n"
        "        replay.fact('k', lambda: i)\n"
        "    ring = replay.ring('jobs', capacity=16)\n"
        "    for i in range(5):\n"
        "        ring.publish(opcode=i)\n"
    )
    rt.record().assert_outcomes(passed=1)
    path = rt.cassette("test_t")
    first = show_json(capsys, path, "--limit", "2")
    assert first["counts"] == {
        "facts": 2,
        "steps": 0,
        "tools": 0,
        "http": 0,
        "arrays": 0,
        "ring/jobs": 2,
    }
    cursor = first["pagination"]["next"]["facts"]
    assert cursor["after_id"] == "facts/k#1" and cursor["after_collection"] == "facts"
    assert set(first["pagination"]["next"]) == {"facts", "ring/jobs"}
    second = show_json(capsys, path, "--limit", "2", "--after", cursor["after_id"])
    assert second["pagination"]["after_collection"] == "facts"
    assert list(second["collections"]) == ["facts"]  # the ring is not paged by a facts cursor
    assert [f["value"] for f in second["facts"]] == [2, 3]
    third = show_json(capsys, path, "--limit", "2", "--after", "facts/k#3")
    assert [f["value"] for f in third["facts"]] == [4] and third["pagination"]["next"] == {}
    ring_page = show_json(capsys, path, "--after", "ring/jobs/0", "--limit", "10")
    assert list(ring_page["collections"]) == ["ring/jobs"]
    assert [r["opcode"] for r in ring_page["rings"]["jobs"]] == [1, 2, 3, 4]
    # text mode prints the command for the next page
    code, out, _ = show(capsys, path, "--limit", "2")
    assert code == 0
    assert f"next page: pytest-replay show {path} --after 'facts/k#1' --limit 2" in out


def test_cursor_finds_its_anchor_beyond_the_first_page(tmp_path, capsys):
    path = ring_cassette(tmp_path, [(0, i) for i in range(1005)], facts=False)
    page = show_json(capsys, path, "--limit", "1", "--after", "ring/jobs/1000")
    assert page["counts"] == {"ring/jobs": 1}
    assert page["rings"]["jobs"][0]["index"] == 1001


def test_stale_cursor_gives_an_empty_page_and_a_bad_one_an_error(tmp_path, capsys):
    path = ring_cassette(tmp_path, [(0, 1), (0, 2)])
    page = show_json(capsys, path, "--limit", "1", "--after", "ring/jobs/99")
    assert page["counts"] == {"ring/jobs": 0} and page["pagination"]["next"] == {}
    page = show_json(capsys, path, "--after", "facts/missing#0")
    assert page["counts"] == {"facts": 0}
    for bad in ("jobs/1", "ring/nope/1", "facts"):
        code, out, err = show(capsys, path, "--after", bad)
        assert code == 2 and out == "" and "Fix:" in err, bad


def test_before_bound_is_kept_across_pages(tmp_path, capsys):
    rows = [(0, 3000), (0, 5000), (0, 3500), (0, 3900), (0, 4000)]
    path = ring_cassette(tmp_path, rows)
    first = show_json(capsys, path, "--limit", "1", "--before-ms", "4000")
    assert [r["created_ms"] for r in first["rings"]["jobs"]] == [3000]
    assert "facts" not in first["collections"]  # facts carry no time: not listed under a bound
    cursor = first["pagination"]["next"]["ring/jobs"]
    assert cursor["before_ms"] == 4000 and cursor["after_id"] == "ring/jobs/0"
    seen = [3000]
    while cursor:
        page = show_json(
            capsys,
            path,
            "--limit",
            "1",
            "--after",
            cursor["after_id"],
            "--before-ms",
            cursor["before_ms"],
        )
        seen += [r["created_ms"] for r in page["rings"]["jobs"]]
        cursor = page["pagination"]["next"].get("ring/jobs")
    assert seen == [3000, 3500, 3900]  # 5000 and 4000 never appear on any page
    code, out, _ = show(capsys, path, "--limit", "1", "--before-ms", "4000")
    assert code == 0 and "--before-ms 4000" in out.split("next page:")[1]


@pytest.mark.parametrize("limit", [1, 2, 3, 50])
def test_tenant_scoping_never_leaks_and_filters_before_the_limit(tmp_path, capsys, limit):
    rows = [(i % 3, 1000 + i) for i in range(12)]  # tenants 0,1,2,0,1,2,...
    path = ring_cassette(tmp_path, rows)
    pages, cursor = [], None
    while True:
        args = [path, "--tenant", "2", "--limit", limit]
        if cursor:
            args += ["--after", cursor["after_id"]]
        page = show_json(capsys, *args)
        pages.append(page)
        assert "tenant-2-secret" not in json.dumps(page)  # no unscoped collection is shown
        cursor = page["pagination"]["next"].get("ring/jobs")
        if not cursor:
            break
        assert cursor["tenant"] == 2
    rows_seen = [r for p in pages for r in p["rings"]["jobs"]]
    assert {r["tenant"] for r in rows_seen} == {2}
    assert [r["index"] for r in rows_seen] == [2, 5, 8, 11]
    assert len(pages[0]["rings"]["jobs"]) == min(limit, 4)  # filtered first, then limited
    # a cursor naming another tenant's record shows nothing
    other = show_json(capsys, path, "--tenant", "2", "--after", "ring/jobs/3")
    assert other["counts"] == {"ring/jobs": 0}
    code, out, _ = show(capsys, path, "--tenant", "2", "--limit", limit)
    assert code == 0 and "tenant=0" not in out and "tenant=1" not in out and "secret" not in out


def test_show_lists_steps_tools_and_arrays(rt, capsys):
    rt.module(
        "import numpy as np\n"
        "def plan(replay):\n"
        "    replay.tool_event('search', {'q': 'x'})\n"
        "    return {'usage': {'tokens': 12}, 'attestation_ids': ['att-1']}\n"
        "def test_t(replay):\n"
        "    replay.step('plan', plan, replay=replay)\n"
        "    replay.tool_event('body', {'n': 1})\n"
        "    replay.check_array('probs', np.zeros((2, 3), dtype=np.float32))\n"
    )
    rt.record().assert_outcomes(passed=1)
    code, out, _ = show(capsys, rt.cassette("test_t"))
    assert code == 0
    assert "plan#0  succeeded  1 attempt(s)  tokens=12  attestations=att-1  tool_events=1" in out
    assert 'tools/0  body {"n": 1}' in out
    assert "probs#0  float32 [2, 3]" in out


def test_show_of_a_broken_cassette_is_one_error(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("pytest_replay: 1\nrings: {a: {log: ../../etc/passwd}}\n")
    code, out, err = show(capsys, path)
    assert code == 2 and out == ""
    assert "'log' must be a file name next to the cassette" in err and "Fix:" in err
    code, _, err = show(capsys, tmp_path / "missing.yaml")
    assert code == 2 and "cannot be read" in err


def test_show_rejects_a_limit_below_one(tmp_path, capsys):
    path = ring_cassette(tmp_path, [(0, 1)])
    with pytest.raises(SystemExit) as exc:
        main(["show", str(path), "--limit", "0"])
    assert exc.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_ring_rows_equal_the_log(tmp_path, capsys):
    path = ring_cassette(tmp_path, [(1, 10), (2, 20)])
    page = show_json(capsys, path)
    rows = page["rings"]["jobs"]
    assert [(r["tenant"], r["created_ms"], r["opcode"]) for r in rows] == [(1, 10, 0), (2, 20, 1)]
    assert np.all([r["id"] == f"ring/jobs/{r['index']}" for r in rows])


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), max_size=40),
    tenant=st.none() | st.integers(0, 3),
    before=st.none() | st.integers(0, 60),
    limit=st.none() | st.integers(1, 7),
)
def test_paging_through_every_page_gives_the_filtered_records_once(rows, tenant, before, limit):
    records = empty_records(len(rows))
    for i, (t, ms) in enumerate(rows):
        records[i]["tenant_id"], records[i]["timestamp_ns"], records[i]["opcode"] = t, ms * MS, i
    view = View(
        shown="c.yaml", rings={"jobs": {"log": "c.jobs.vrrl"}}, read_ring=lambda log: records
    )
    expected = [
        i
        for i, (t, ms) in enumerate(rows)
        if (tenant is None or t == tenant) and (before is None or ms < before)
    ]
    seen, after = [], None
    for _ in range(len(rows) + 2):
        data = page(view, Query(tenant=tenant, after=after, before_ms=before, limit=limit))
        got = data["collections"]["ring/jobs"]
        assert limit is None or len(got) <= limit
        seen += [r["index"] for r in got]
        cursor = data["pagination"]["next"].get("ring/jobs")
        if cursor is None:
            break
        assert (cursor["tenant"], cursor["before_ms"], cursor["limit"]) == (tenant, before, limit)
        after = cursor["after_id"]
    assert seen == expected


def test_show_of_a_malformed_http_block_is_one_error_naming_the_test(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(
        "pytest_replay: 1\ntest: tests/x.py::t\nhttp: |\n"
        '  > {"method": "GET", "uri": "http://a/"}\n  < {"status": 200,,}\n'
    )
    code, out, err = show(capsys, path)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0].startswith(
        f"pytest-replay show: {path}: http interaction #0 is malformed: line 2 is not JSON ("
    )
    assert lines[1].endswith("re-record: pytest --replay=record 'tests/x.py::t'")


def test_show_fix_names_the_test_of_a_blob_that_fails_on_reading(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    pid, blob = "a" * 64, "b" * 64 + ".json"
    path.write_text(
        f'pytest_replay: 1\ntest: tests/x.py::t\nfacts: |\n  "k" {pid}\n'
        f"payloads: |\n  {pid} blob {blob}\n"
    )
    code, _, err = show(capsys, path)
    assert code == 2 and f"blob {blob}" in err
    assert "pytest --replay=record 'tests/x.py::t'" in err
    assert "<test node id>" not in err


def test_show_limit_header_gives_the_real_total(tmp_path, capsys):
    path = ring_cassette(tmp_path, [(0, i) for i in range(14)], facts=False)
    code, out, _ = show(capsys, path, "--limit", "3")
    assert code == 0 and "ring jobs: 14 record(s), showing 3\n" in out
    code, out, _ = show(capsys, path, "--limit", "20")
    assert code == 0 and "ring jobs: 14 record(s)\n" in out
    page = show_json(capsys, path, "--limit", "3", "--tenant", "0")
    assert page["counts"] == {"ring/jobs": 3} and page["totals"] == {"ring/jobs": 14}
