"""Hand-edited cassettes: any section, any value; loading gives our error type or works."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_replay.blobs import BlobStore
from pytest_replay.cassette import save_document
from pytest_replay.config import TestSettings as Settings
from pytest_replay.diffs import DiffStore
from pytest_replay.errors import ReplayError
from pytest_replay.modes import Mode
from pytest_replay.session import ReplaySession

EXAMPLES = Path(__file__).parent.parent / "examples" / "cassettes"
# Real recordings holding every section kind: steps, tools, facts, rings.
SOURCES = [
    EXAMPLES / "test_agent_steps" / "test_plan_and_comment.yaml",
    EXAMPLES / "test_agent_steps" / "test_partial_failure_leaves_a_resume_plan.yaml",
    EXAMPLES / "test_gpu_dispatch" / "test_dispatch.yaml",
    EXAMPLES / "test_quote" / "test_clock_and_ids.yaml",
]

_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-3, 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["zz", "../../x", "a" * 64 + ".json", "0" * 64, "succeeded"])
)
_value = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a node in a parsed YAML document."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


FIELDS = [
    "output_bytes", "output_blob", "inputs_blob", "inputs_bytes", "output", "inputs",
    "attempts", "status", "redaction", "log", "blob", "records", "ordinal", "name",
    "tool_events", "input_digest", "error", "facts", "payloads", "steps", "tools", "arrays",
    "rings",
]  # fmt: skip


RECORD_KEYS = {"status", "operation", "log", "blob", "attempt", "name", "kind"}


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _replace(doc: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _replace(doc[head], rest, new)
    return copy


def _load(tmp_path: Path, source: Path, doc: Any) -> None:
    folder = tmp_path / "c"
    if not folder.exists():
        shutil.copytree(source.parent, folder)
        shutil.copytree(EXAMPLES / ".blobs", tmp_path / ".blobs")
    cassette = folder / source.name
    save_document(cassette, doc)
    ReplaySession(
        nodeid="t.py::t",
        mode=Mode.STRICT,
        cassette_path=cassette,
        shown="c.yaml",
        blobs=BlobStore(tmp_path / ".blobs"),
        diffs=DiffStore(tmp_path / "diffs", "diffs"),
        settings=Settings({}),
        threshold=4096,
    )


@pytest.mark.parametrize(
    ("field", "value"), [("output_blob", 123), ("output_bytes", "zz"), ("inputs_blob", "../x")]
)
def test_a_bad_payload_field_on_a_tool_effect_fails_at_load(tmp_path, field, value):
    source = SOURCES[1]
    doc = yaml.safe_load(source.read_text())
    effects = [p for p in _paths(doc) if _get(doc, p) == "tool_effect"]
    event_path = effects[0][:-1]
    event = dict(_get(doc, event_path), redaction="full", **{field: value})
    event.pop(field.rsplit("_", 1)[0], None)  # so the edited field is the one read
    with pytest.raises(ReplayError) as info:
        _load(tmp_path, source, _replace(doc, event_path, event))
    assert field in info.value.render() and "Fix:" in info.value.render()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(source=st.sampled_from(SOURCES), data=st.data(), new=_value)
def test_an_edited_leaf_anywhere_gives_our_error_or_loads(tmp_path, source, data, new):
    doc = yaml.safe_load(source.read_text())
    paths = [p for p in _paths(doc) if p and p[0] not in ("pytest_replay",)]
    path = data.draw(st.sampled_from(paths))
    edited = _replace(doc, path, new)
    # Record-like mappings (a step, an attempt, a tool effect, a ring, an array).
    mappings = [
        p
        for p in _paths(edited)
        if isinstance(_get(edited, p), dict) and RECORD_KEYS & set(_get(edited, p))
    ] or [()]
    if data.draw(st.booleans()):
        # Also set a field our loaders read by name, on some mapping.
        where = data.draw(st.sampled_from(mappings))
        field = data.draw(st.sampled_from(FIELDS))
        node = dict(_get(edited, where))
        node[field] = data.draw(_value)
        edited = _replace(edited, where, node)
    try:
        _load(tmp_path, source, edited)
    except ReplayError as err:
        assert err.fix, f"no Fix line: {err.render()}"
