"""Cassette naming, byte-stable saving, safe loading of hostile files."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_replay.blobs import BlobStore
from pytest_replay.cassette import (
    Cassette,
    cassette_path,
    dump_document,
    parse_document,
    sanitize_component,
    save_document,
)
from pytest_replay.errors import CassetteError, SchemaVersionError
from pytest_replay.facts import FactLog
from pytest_replay.modes import Mode

ROOT = Path("/repo")


def path_for(*parts: str, replay_dir: Path | None = None) -> Path:
    return cassette_path(
        module_path=ROOT / "tests" / "test_agent.py",
        rootdir=ROOT,
        test_parts=parts,
        replay_dir=replay_dir,
    )


def test_default_layout_is_next_to_the_module():
    assert path_for("test_plan[fast]") == ROOT / "tests/cassettes/test_agent/test_plan[fast].yaml"
    assert path_for("TestA", "test_b") == ROOT / "tests/cassettes/test_agent/TestA.test_b.yaml"


def test_replay_dir_mirrors_the_module_path():
    got = path_for("test_plan[fast]", replay_dir=ROOT / "recordings")
    assert got == ROOT / "recordings/tests/test_agent/test_plan[fast].yaml"


@pytest.mark.parametrize(
    "param",
    ["../../x", "/etc/passwd", "a\x00b", "x" * 300, "..", "CON", 'a:b*c?d|e<f>g"h\\i', " .hidden"],
)
def test_hostile_param_ids_stay_inside_the_cassette_dir(param):
    path = path_for(f"test_x[{param}]")
    root = ROOT / "tests/cassettes/test_agent"
    assert path.parent == root
    name = path.name
    assert ".." not in name and "/" not in name and "\x00" not in name
    assert len(name.encode()) <= 255
    assert not name.startswith(".")


def test_long_ids_keep_a_prefix_and_stay_distinct():
    a = sanitize_component("test_x[" + "a" * 300 + "1]")
    b = sanitize_component("test_x[" + "a" * 300 + "2]")
    assert a != b and a.startswith("test_x[aaa") and len(a.encode()) <= 150


@given(st.text(min_size=1, max_size=400))
def test_any_text_sanitises_to_one_safe_component(text):
    name = sanitize_component(text)
    assert name and "/" not in name and "\\" not in name and "\x00" not in name
    assert ".." not in name and name not in (".", "..")
    assert len(name.encode("utf-8")) <= 150


def _doc(**sections):
    return Cassette.new_document("tests/test_x.py::test_y", sections)


def test_dump_is_byte_stable_and_sorted():
    a = dump_document(_doc(zeta={"b": 1.5, "a": [1e20, float("nan")]}, alpha={"k": "v"}))
    b = dump_document(_doc(alpha={"k": "v"}, zeta={"a": [1e20, float("nan")], "b": 1.5}))
    assert a == b
    text = a.decode()
    assert text.startswith("pytest_replay: 1\ntest: tests/test_x.py::test_y\nalpha:")
    assert "1.0e+20" in text and ".nan" in text and text.endswith("\n")


def test_save_leaves_the_file_untouched_when_only_volatile_fields_change(tmp_path):
    path = tmp_path / "c.yaml"

    def step(name, ms, output_ms=1):
        attempt = {"attempt": 0, "duration_ms": ms, "output": {"duration_ms": output_ms}}
        return [{"name": name, "attempts": [attempt]}]

    assert save_document(path, _doc(steps=step("a", 5), recorded_at="t1"))
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    assert not save_document(path, _doc(steps=step("a", 9), recorded_at="t2"))
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert save_document(path, _doc(steps=step("b", 9)))
    assert path.read_bytes() != before


def test_a_user_field_named_like_a_volatile_one_is_behaviour(tmp_path):
    # Volatile fields are positions the plugin writes, not names: a step
    # output's own duration_ms changing is a change to save.
    path = tmp_path / "c.yaml"
    out = {"name": "a", "attempts": [{"attempt": 0, "output": {"duration_ms": 100}}]}
    assert save_document(path, _doc(steps=[out]))
    out["attempts"][0]["output"]["duration_ms"] = 200
    assert save_document(path, _doc(steps=[out]))
    assert "duration_ms: 200" in path.read_text()


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "c.yaml"
    save_document(path, _doc(x={"a": 1}))
    assert os.listdir(path.parent) == ["c.yaml"]
    assert path.stat().st_mode & 0o644 == 0o644  # readable like any repository file


def test_unknown_schema_version_is_a_clear_error():
    with pytest.raises(SchemaVersionError) as info:
        parse_document(b"pytest_replay: 7\ntest: t\n", Path("c.yaml"), "c.yaml")
    text = str(info.value)
    assert "unknown cassette schema version 7" in text and "Fix:" in text
    for written in ('"1"', "1.0", "true"):
        with pytest.raises(SchemaVersionError) as info:
            parse_document(f"pytest_replay: {written}\ntest: t\n".encode(), Path("c"), "c")
        text = str(info.value)
        assert "must be the integer 1, got" in text and "(no quotes)" in text


def test_corrupt_yaml_names_line_and_column():
    with pytest.raises(CassetteError) as info:
        parse_document(b"pytest_replay: 1\ntest: [unclosed\n", Path("c.yaml"), "c.yaml")
    text = str(info.value)
    assert "not valid YAML" in text and "line 3" in text and "c.yaml" in text


def test_unsafe_tags_are_refused():
    data = b"pytest_replay: 1\ntest: !!python/object/apply:os.system ['echo hi']\n"
    with pytest.raises(CassetteError):
        parse_document(data, Path("c.yaml"), "c.yaml")


def _load_facts(data: bytes, tmp_path: Path) -> None:
    doc = parse_document(data, tmp_path / "c.yaml", "c.yaml")
    log = FactLog(
        mode=Mode.REPLAY,
        blobs=BlobStore(tmp_path),
        threshold=4096,
        retryable=False,
        recorded=doc,
        shown="c.yaml",
    )
    for key in list(log._index):
        for _ in log._index[key]:
            log.fact(key, lambda: None)


_FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@_FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_our_error(tmp_path, data):
    with contextlib.suppress(CassetteError):
        _load_facts(data, tmp_path)


@pytest.mark.parametrize(
    ("data", "summary", "place"),
    [
        (
            b"pytest_replay: 1\ntest: \xc3\xa9\xff\xfe",
            "cassette is not UTF-8 text: byte 0xff at offset 25",
            "line 2, column 8 (byte offset 25)",
        ),
        (
            b"\x00\x89PNG\x1a\n" + bytes(range(256)),
            "cassette holds a character YAML does not allow (a binary file?): U+0000 at offset 0",
            "line 1, column 1 (byte offset 0)",
        ),
        (
            b"\xef\xbb\xbfpytest_replay: 1\ntest: a\x07b\n",
            "cassette holds a character YAML does not allow: U+0007 at offset 27",
            "line 2, column 8 (byte offset 27)",
        ),
    ],
)
def test_a_binary_or_garbled_file_names_the_first_bad_byte(tmp_path, data, summary, place):
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    with pytest.raises(CassetteError) as info:
        Cassette.load(path, blobs=BlobStore(tmp_path), shown="cassettes/c.yaml")
    err = info.value
    assert (err.summary, err.place, err.cassette) == (summary, place, "cassettes/c.yaml")
    assert "Fix: restore the cassette from version control, or re-record" in str(err)


_AT_OFFSET = re.compile(r"(?:byte 0x([0-9a-f]{2})|U\+([0-9A-F]{4,6})) at offset (\d+)")
_HEADER = b"pytest_replay: 1\ntest: t\nfacts: |\n  "


@_FUZZ
@given(garbage=st.binary(max_size=300), headed=st.booleans())
def test_random_bytes_that_are_not_text_name_the_offset_of_the_first_bad_one(
    tmp_path, garbage, headed
):
    data = (_HEADER if headed else b"") + garbage
    try:
        parse_document(data, tmp_path / "c.yaml", "c.yaml")
    except CassetteError as err:
        error = err
    else:
        return
    assert "ReaderError" not in error.summary
    found = _AT_OFFSET.search(error.summary)
    if found is None:
        with contextlib.suppress(UnicodeDecodeError):
            data.decode("utf-8")
            return  # text: any of our errors will do
        # not text, but the parser failed before the reader reached the bad bytes
        assert error.place and error.place.startswith("line ")
        return
    offset = int(found[3])
    assert error.place.endswith(f"(byte offset {offset})")
    text = data[:offset].decode("utf-8")  # everything before it is text
    if found[1] is not None:
        assert data[offset] == int(found[1], 16)
        with pytest.raises(UnicodeDecodeError):
            data[offset:].decode("utf-8")
    else:
        assert data[offset:].decode("utf-8", "surrogateescape")[0] == chr(int(found[2], 16))
    assert "\x00" not in text or error.summary.count("binary file")


_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_pid = st.text("0123456789abcdef", min_size=60, max_size=66)
_fact_lines = st.lists(
    st.tuples(st.text(max_size=12), _pid).map(lambda kp: f'"{kp[0]}" {kp[1]}'), max_size=4
)
_payload_lines = st.lists(
    st.tuples(_pid, st.sampled_from(["json", "hex", "blob", "zip"]), st.text(max_size=20)).map(
        " ".join
    ),
    max_size=4,
)


@_FUZZ
@given(
    version=st.sampled_from([1, 1, 2, "1", True, None]),
    facts=_fact_lines | _yaml_values,
    payloads=_payload_lines | _yaml_values,
    extra=_yaml_values,
)
def test_random_yaml_only_raises_our_error(tmp_path, version, facts, payloads, extra):
    doc = {"pytest_replay": version, "test": "t", "extra": extra}
    doc["facts"] = (
        "\n".join(facts)
        if isinstance(facts, list) and all(isinstance(x, str) for x in facts)
        else facts
    )
    doc["payloads"] = (
        "\n".join(payloads)
        if isinstance(payloads, list) and all(isinstance(x, str) for x in payloads)
        else payloads
    )
    data = yaml.safe_dump(doc).encode()
    with contextlib.suppress(CassetteError):
        _load_facts(data, tmp_path)


@pytest.mark.parametrize("body", ["steps: &a [*a]\n", "custom: &b {x: *b}\n", "a: &c [1]\nb: *c\n"])
def test_yaml_aliases_are_refused(body):
    data = f"pytest_replay: 1\ntest: t\n{body}".encode()
    with pytest.raises(CassetteError, match="anchors/aliases"):
        parse_document(data, Path("c.yaml"), "c.yaml")
