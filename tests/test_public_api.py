"""The public names DESIGN.md promises resolve, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest_replay


def test_every_public_name_resolves():
    for name in pytest_replay.__all__:
        assert getattr(pytest_replay, name) is not None, name
    assert pytest_replay.RingLog.__module__ == "pytest_replay.ring.log"


def test_loading_the_plugin_does_not_import_deepdiff():
    code = "import pytest_replay.plugin, sys; print('deepdiff' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
