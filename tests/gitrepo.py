"""A real git repository in a test's directory: init, commit everything, branch."""

from __future__ import annotations

import subprocess
from pathlib import Path

IDENTITY = ("-c", "user.name=pytest-replay tests", "-c", "user.email=tests@example.invalid")


def git(root: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(root), *IDENTITY, "-c", "commit.gpgsign=false", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def init(root: Path, branch: str = "main") -> None:
    git(root, "init", "-q")
    git(root, "symbolic-ref", "HEAD", f"refs/heads/{branch}")


def commit_all(root: Path, message: str = "cassettes") -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message)
    return git(root, "rev-parse", "HEAD")
