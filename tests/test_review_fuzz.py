"""Garbage bytes and hostile YAML fed to what review, show, check, stats and textconv load:
never a traceback, only an exit status with a message."""

from __future__ import annotations

import os
import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_replay.blobs import BlobStore
from pytest_replay.errors import ReplayError
from pytest_replay.http.interaction import dump_section
from pytest_replay.review.cli import main
from pytest_replay.review.integrity import check_cassette
from pytest_replay.review.render import render_json, render_markdown, render_text
from pytest_replay.review.semantic import diff_views
from pytest_replay.review.stats import stats
from pytest_replay.review.textconv import cassette_text
from pytest_replay.review.tree import CassetteReview, Review
from pytest_replay.review.view import load_view

from .gitrepo import commit_all, init

HEX = "0123456789abcdef"
FUZZ = settings(
    max_examples=int(os.environ.get("REVIEW_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["blob", "0" * 64 + ".npy", "log.vrrl", "tool_effect", "succeeded", "."]),
)
FIELDS = [
    "name", "ordinal", "blob", "shape", "dtype", "log", "records", "digest", "attempts",
    "attempt", "status", "output", "error", "tool_events", "kind", "operation", "id",
    "input_digest", "inputs", "args", "kwargs", "redaction", "request", "response",
    "method", "uri", "code", "payload", "output_blob", "capacity",
]  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=5),
    ),
    max_leaves=20,
)
fact_lines = st.lists(
    st.one_of(
        st.builds(
            lambda k, h: f'"{k}" {h}',
            st.text(string.ascii_letters, max_size=5),
            st.text(HEX, min_size=64, max_size=64),
        ),
        st.text(max_size=30),
    ),
    max_size=4,
).map("\n".join)
payload_lines = st.lists(
    st.builds(
        lambda h, kind, data: f"{h} {kind} {data}",
        st.text(HEX, min_size=64, max_size=64),
        st.sampled_from(["json", "hex", "blob", "xml"]),
        st.text(max_size=20),
    ),
    max_size=4,
).map("\n".join)
sections = st.fixed_dictionaries(
    {},
    optional={
        "test": values,
        "facts": fact_lines | values,
        "payloads": payload_lines | values,
        "steps": values,
        "tools": values,
        "http": values,
        "rings": values,
        "arrays": values,
        "resume": values,
    },
)
TRICKY = [
    "a: &x [1, *x]\n",
    "a: !!binary aGVsbG8=\n",
    "a: !!set {x, y}\n",
    "a: 2001-12-14t21:59:43.10-05:00\n",
    "a: !!python/object:os.system ls\n",
    "? [1, 2]\n: x\n",
    "a: [" * 200 + "\n",
    "a: \x00\n",
    "a: '\udcff'\n",
    "--- 1\n--- 2\n",
]


def dump(doc):
    return yaml.safe_dump({"pytest_replay": 1, **doc}, allow_unicode=True).encode()


# Near-valid records whose leaves are odd YAML values (dates, bytes, sets, huge ints),
# so the loaders accept them and the semantic diff and renderers meet them.
odd = st.recursive(
    scalars | st.datetimes() | st.dates() | st.binary(max_size=8) | st.sets(st.integers(0, 3)),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(FIELDS) | st.text(max_size=4) | st.integers(-2, 2) | st.none(),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
names = st.sampled_from(["a", "b", "c d", "e#1", "f/g", "x\ny`|"])  # few: sides share some
step = st.fixed_dictionaries(
    {
        "name": names,
        "ordinal": st.integers(0, 2),
        "input_digest": st.sampled_from(["a" * 64, "b" * 64]),
        "inputs": odd,
        "attempts": st.lists(
            st.fixed_dictionaries(
                {
                    "attempt": st.integers(1, 3),
                    "status": st.just("succeeded"),
                    "output": odd,
                    "tool_events": st.lists(
                        st.fixed_dictionaries({"kind": names, "payload": odd}), max_size=3
                    ),
                }
            ),
            min_size=1,
            max_size=2,
        ),
    }
)
near_valid = st.fixed_dictionaries(
    {"test": names},
    optional={
        "steps": st.lists(step, max_size=3, unique_by=lambda s: (s["name"], s["ordinal"])),
        "tools": st.lists(st.fixed_dictionaries({"kind": names, "payload": odd}), max_size=3),
        # the plugin's own block, so the diff meets it (other shapes are unreadable)
        "http": st.lists(
            st.fixed_dictionaries(
                {
                    "request": st.fixed_dictionaries({"method": names, "uri": names}),
                    "response": st.fixed_dictionaries(
                        {"status": st.integers(100, 999), "body": st.text(max_size=8)}
                    ),
                }
            ),
            max_size=3,
        ).map(lambda items: str(dump_section(items)))
        | st.lists(
            st.fixed_dictionaries(
                {
                    "request": st.fixed_dictionaries({"method": odd, "uri": odd}),
                    "response": st.fixed_dictionaries({"status": odd, "body": odd}),
                }
            ),
            max_size=3,
        ),
        "rings": st.dictionaries(
            names, st.fixed_dictionaries({"log": names, "records": odd, "digest": odd}), max_size=2
        ),
        "arrays": st.lists(
            st.fixed_dictionaries(
                {
                    "name": names,
                    "ordinal": st.integers(0, 1),
                    "blob": st.sampled_from(["0" * 64 + ".npy", "1" * 64 + ".npy"]),
                    "shape": odd,
                }
            ),
            max_size=2,
        ),
        "resume": odd,
    },
)

documents = st.one_of(
    sections.map(lambda d: _dump_or_empty(d)),
    near_valid.map(lambda d: _dump_or_empty(d)),
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: b"pytest_replay: 1\n" + b),
    st.sampled_from(TRICKY).map(lambda t: ("pytest_replay: 1\n" + t).encode("utf-8", "replace")),
)


def _dump_or_empty(doc):
    try:
        return dump(doc)
    except (yaml.YAMLError, ValueError):
        return b"pytest_replay: 1\n"


@FUZZ
@given(old=documents, new=documents)
def test_loaders_and_the_semantic_diff_raise_only_replay_errors(tmp_path, old, new):
    blobs = BlobStore(tmp_path / ".blobs")

    def ring(log):
        from pytest_replay.ring import read_records

        return read_records(tmp_path / "none" / str(log))

    views = []
    for data in (old, new):
        try:
            views.append(load_view(data, "c.yaml", blobs, ring))
        except ReplayError as err:
            assert err.summary
    if len(views) == 2:
        changes = diff_views(*views)
        review = Review(
            "0" * 40, "base", "working tree", [CassetteReview("c.yaml", "t", "changed", changes)], 0
        )
        render_text(review)
        render_json(review)
        assert len(render_markdown(review, max_chars=2000)) <= 2000


@FUZZ
@given(data=documents)
def test_check_show_stats_and_textconv_never_trace_back(tmp_path, capsys, data):
    path = tmp_path / "cassettes" / "m" / "t.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    problem = check_cassette(path)
    assert problem is None or problem.message
    capsys.readouterr()
    code = main(["show", str(path)])
    out, err = capsys.readouterr()
    assert code in (0, 2)
    if code == 2:
        assert err.startswith("pytest-replay show: ") and out == ""
    code = main(["check", str(path)])
    assert code in (0, 1)
    result = stats([tmp_path])
    assert result["cassettes"] + len(result["unreadable"]) <= 1
    assert isinstance(cassette_text(data, "t.yaml"), bytes)


@FUZZ
@given(data=documents)
def test_review_of_a_garbage_cassette_is_exit_2_with_a_fix(tmp_path, capsys, data):
    root = tmp_path / "repo"
    path = root / "cassettes" / "t.yaml"
    if not root.exists():  # one repository for every example
        path.parent.mkdir(parents=True)
        path.write_bytes(b"pytest_replay: 1\ntest: t\n")
        init(root)
        commit_all(root)
    path.write_bytes(data)
    capsys.readouterr()
    code = main(["review", "-C", str(root), "HEAD"])
    out, err = capsys.readouterr()
    assert code in (0, 2), err
    if code == 2:
        assert out == "" and err.startswith("pytest-replay review: ") and "  Fix: " in err
