"""Environment fingerprint: written in the header, never churns a file, warns on a major change."""

from __future__ import annotations

import platform
import sys
import types

import yaml
from hypothesis import given
from hypothesis import strategies as st

from pytest_replay import __version__
from pytest_replay.cassette import Cassette, save_document
from pytest_replay.fingerprint import current, differences


def test_current_names_python_platform_and_packages(monkeypatch):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    env = current()
    assert env["python"] == platform.python_version()
    assert env["pytest_replay"] == __version__
    assert {"platform", "numpy", "vcrpy"} <= set(env) and "cupy" not in env
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(__version__="13.3.0"))
    assert current()["cupy"] == "13.3.0"  # only once something imported it


def test_only_major_differences_count():
    now = {"python": "3.11.7", "platform": "Linux-x86_64", "numpy": "1.26.4"}
    assert differences({"python": "3.11.2", "numpy": "1.24.0"}, now) == []
    assert differences({"python": "3.12.1", "platform": "Darwin-arm64", "numpy": "2.0.1"}, now) == [
        "numpy 2.0.1 recorded, 1.26.4 now",
        "platform Darwin-arm64 recorded, Linux-x86_64 now",
        "python 3.12.1 recorded, 3.11.7 now",
    ]
    assert differences({"cupy": "13.0.0"}, now) == []  # a field on one side only says nothing
    assert differences(None, now) == [] and differences("junk", now) == []


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(json_like)
def test_a_malformed_fingerprint_never_raises(recorded):
    assert isinstance(differences(recorded, current()), list)


def test_header_fingerprint_is_kept_on_rerecord_and_warns_on_replay(rt):
    rt.module("def test_t(replay):\n    replay.fact('a', lambda: 1)\n")
    rt.record().assert_outcomes(passed=1)
    path = rt.cassette("test_t")
    text = path.read_text()
    assert text.startswith("pytest_replay: 1\ntest: test_mod.py::test_t\nenv:\n")
    assert yaml.safe_load(text)["env"]["python"] == platform.python_version()
    # the same behaviour recorded "on another machine": the file keeps its bytes
    other = text.replace(f"python: {platform.python_version()}", "python: 2.7.18")
    path.write_text(other)
    result = rt.record()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*1 unchanged*"])
    assert path.read_text() == other
    # replaying it on this machine passes, with one warning line
    result = rt.run("--replay=strict")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "WARNING environment differs from the recording "
            f"(python 2.7.18 recorded, {platform.python_version()} now) "
            "for 1 test(s), e.g. test_mod.py::test_t"
        ]
    )


def test_only_the_top_level_fingerprint_is_volatile(tmp_path):
    path = tmp_path / "c.yaml"
    doc = Cassette.new_document("t", {"steps": [{"env": "a"}]}, env={"python": "3.11.0"})
    assert save_document(path, doc)
    same = Cassette.new_document("t", {"steps": [{"env": "a"}]}, env={"python": "3.13.0"})
    assert not save_document(path, same)
    changed = Cassette.new_document("t", {"steps": [{"env": "b"}]}, env={"python": "3.11.0"})
    assert save_document(path, changed)  # an 'env' inside recorded data is behaviour
