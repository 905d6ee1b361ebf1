"""Files at a git revision, read with ls-tree and cat-file (git show's plumbing), no checkout."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

DEFAULT_BRANCHES = ("main", "master", "origin/main", "origin/master")


class GitError(Exception):
    """A problem with the repository or a revision: one line and a Fix."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def run_git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """``git -C repo args...``; a missing git binary becomes a GitError."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, check=False, env=env
        )
    except FileNotFoundError:
        raise GitError(
            "git is not installed or not on PATH",
            fix="install git; pytest-replay review reads the base revision through it",
        ) from None
    if check and proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(
            f"git {args[0]} failed: {detail[-1] if detail else f'exit {proc.returncode}'}",
            fix="check that the repository is readable (git status works)",
        )
    return proc


def repo_root(path: Path) -> Path:
    """The top of the work tree containing ``path``."""
    if not path.is_dir():
        raise GitError(f"{path} is not a directory", fix="pass the repository folder with -C PATH")
    proc = run_git(path, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise GitError(
            f"{path.resolve()} is not inside a git repository",
            fix="run pytest-replay review from a clone of your project, or pass -C PATH",
        )
    return Path(os.fsdecode(proc.stdout.rstrip(b"\n")))


def resolve(repo: Path, rev: str) -> str:
    """The commit id ``rev`` names, or a GitError saying how to get it."""
    bad = not rev or rev.startswith("-")
    proc = (
        None
        if bad
        else run_git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    )
    if proc is None or proc.returncode != 0:
        raise GitError(
            f"{rev!r} is not a commit in this repository",
            fix="name an existing branch, tag or commit; in CI fetch the base first "
            "(git fetch origin main, or actions/checkout with fetch-depth: 0)",
        )
    return proc.stdout.decode().strip()


def default_base(repo: Path) -> tuple[str, str]:
    """(commit, description): the merge base of HEAD with the default branch.

    The default branch is what ``origin/HEAD`` points at, else the first of
    main, master, origin/main, origin/master that exists.
    """
    head = run_git(repo, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    if head.returncode != 0:
        raise GitError(
            "the repository has no commits yet, so there is no base to compare with",
            fix="commit the cassettes first, or name a base: pytest-replay review BASE",
        )
    branch = None
    ref = run_git(repo, "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD", check=False)
    if ref.returncode == 0:
        branch = ref.stdout.decode().strip().removeprefix("refs/remotes/")
    else:
        for name in DEFAULT_BRANCHES:
            probe = run_git(
                repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False
            )
            if probe.returncode == 0:
                branch = name
                break
    if branch is None:
        raise GitError(
            "no default branch found (no origin/HEAD, main or master)",
            fix="name the base explicitly: pytest-replay review origin/<your default branch>",
        )
    base = run_git(repo, "merge-base", "HEAD", branch, check=False)
    if base.returncode != 0:
        raise GitError(
            f"HEAD and {branch} have no common ancestor",
            fix="fetch the full history (git fetch --unshallow, or fetch-depth: 0 in CI) "
            "or name a base: pytest-replay review BASE",
        )
    commit = base.stdout.decode().strip()
    return commit, f"merge base of HEAD and {branch}"


def tree_blobs(repo: Path, commit: str) -> dict[str, str]:
    """Every file of ``commit``: repository path ('/'-separated) -> blob object id."""
    proc = run_git(repo, "ls-tree", "-r", "-z", "--full-tree", commit)
    out = {}
    for entry in proc.stdout.split(b"\0"):
        meta, _, path = entry.partition(b"\t")
        fields = meta.split()
        if len(fields) == 3 and fields[1] == b"blob":
            out[os.fsdecode(path)] = fields[2].decode()
    return out


def under(path: str, specs: Sequence[str]) -> bool:
    """True when ``path`` is one of ``specs`` or inside one (no specs: everything)."""
    return not specs or any(
        spec in ("", ".") or path == spec or path.startswith(spec.rstrip("/") + "/")
        for spec in specs
    )


def worktree_files(repo: Path, pathspecs: Sequence[str] = ()) -> list[str]:
    """Files of the working tree git would see: tracked and untracked, not ignored, on disk."""
    proc = run_git(
        repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *pathspecs
    )
    names = dict.fromkeys(os.fsdecode(p) for p in proc.stdout.split(b"\0") if p)
    return [n for n in names if (repo / n).is_file()]


class Revision:
    """Read-only view of the files at one commit, read by object id with ``git cat-file``."""

    def __init__(self, repo: Path, commit: str, label: str) -> None:
        self.repo = repo
        self.commit = commit
        self.label = label
        self._blobs: dict[str, str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def blobs(self) -> dict[str, str]:
        if self._blobs is None:
            self._blobs = tree_blobs(self.repo, self.commit)
        return self._blobs

    def files(self, pathspecs: Sequence[str] = ()) -> list[str]:
        return [p for p in self.blobs() if under(p, pathspecs)]

    def read(self, path: str) -> bytes | None:
        """The bytes of ``path`` at the commit (what ``git show COMMIT:path`` prints)."""
        oid = self.blobs().get(path)
        if oid is None:
            return None
        proc = self._batch()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(f"{oid}\n".encode())
        proc.stdin.flush()
        header = proc.stdout.readline().split()
        if len(header) != 3:
            return None
        return _read_exact(proc.stdout, int(header[2]) + 1)[:-1]

    def read_many(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        """``read`` for many paths with one ``git cat-file --batch`` and no round trips.

        Objects are asked for by id, not ``COMMIT:path``: git then never walks
        trees, which is what makes a few thousand cassettes cost milliseconds.
        """
        blobs = self.blobs()
        wanted = [p for p in paths if p in blobs]
        out: dict[str, bytes | None] = dict.fromkeys(paths)
        if not wanted:
            return out
        request = "".join(f"{blobs[p]}\n" for p in wanted).encode()
        try:
            proc = subprocess.run(
                ["git", "-C", str(self.repo), "cat-file", "--batch"],
                input=request,
                capture_output=True,
                check=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise GitError(
                f"git cat-file failed: {exc}", fix="check the repository with git fsck"
            ) from None
        data, pos = proc.stdout, 0
        for path in wanted:
            end = data.index(b"\n", pos)
            header = data[pos:end].split()
            pos = end + 1
            if len(header) == 3:
                size = int(header[2])
                out[path] = data[pos : pos + size]
                pos += size + 1
        return out

    def _batch(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            self._proc = subprocess.Popen(
                ["git", "-C", str(self.repo), "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        return self._proc

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> Revision:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            raise GitError(
                "git cat-file stopped in the middle of an object",
                fix="check the repository with git fsck",
            )
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
