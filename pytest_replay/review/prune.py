"""pytest-replay prune: delete the cassettes, ring logs and blobs a pytest run found unused."""

from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..canonical import digest
from ..usage import (
    BLOB_NAME,
    REPORT_FILE,
    UnusedReport,
    changed_modules,
    git_head,
    read_test_id,
    references,
    walk,
)

DEFAULT_REPORT = Path(".pytest_cache") / "replay" / REPORT_FILE
SHOWN = 10
RUN_FIRST = "pytest --replay-report-unused"


@dataclass(frozen=True)
class Decision:
    path: Path
    shown: str
    delete: bool
    why: str = ""  # why it is kept


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    prune = sub.add_parser(
        "prune",
        help=f"delete cassettes, ring logs and blobs no test used (found by: {RUN_FIRST})",
    )
    prune.add_argument(
        "--report",
        type=Path,
        default=None,
        help=f"the report to read (default: the nearest {DEFAULT_REPORT} in this folder "
        "or a parent, up to the project's top)",
    )
    prune.add_argument("--dry-run", action="store_true", help="list what would go; delete nothing")
    prune.add_argument(
        "--allow-partial",
        action="store_true",
        help="prune from a run that did not check every module (what it lists is still unused)",
    )
    prune.add_argument(
        "--allow-stale",
        action="store_true",
        help="prune from a report made before the test modules or the git commit changed "
        "(its files may be used now)",
    )
    prune.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.report is not None:
        path = args.report
        if not path.exists():
            print(
                f"pytest-replay prune: no unused report at {path}\n"
                f"  Fix: run the whole suite first: {RUN_FIRST}"
            )
            return 2
    else:
        found, stop = find_report(Path.cwd())
        if found is None:
            _no_report(stop)
            return 2
        path = found
        print(f"using the report {_shown(path)}")
    try:
        report = UnusedReport.load(path)
    except ValueError as exc:
        print(f"pytest-replay prune: {exc}\n  Fix: run it again: {RUN_FIRST}")
        return 2
    refusals = _refusals(report, args)
    if refusals and not args.dry_run:
        for why, flag in refusals:
            print(f"pytest-replay prune: refusing to delete from {why}\n  Fix: {REFUSAL_FIX[flag]}")
        return 1
    flags = " ".join(flag for _, flag in refusals)
    for why, flag in refusals:
        print(
            f"pytest-replay prune --dry-run: prune would refuse to delete from {why}\n"
            f"  Fix: {REFUSAL_FIX[flag]}"
        )
    if refusals:
        print(f"what prune {flags} would do:")
    if not report.blobs_checked:
        print(
            "blobs were not checked (a pytest_replay_cassette_path hook may keep cassettes "
            "outside the cassette directories): none is deleted"
        )
    decisions = decide(report)
    doomed = [d for d in decisions if d.delete]
    for d in decisions:
        if not d.delete:
            print(f"keep {d.shown} ({d.why})")
    verb = "would delete" if args.dry_run else "deleted"
    for d in doomed:
        if not args.dry_run:
            d.path.unlink(missing_ok=True)
            _remove_if_empty(d.path.parent)
        print(f"{verb} {d.shown}")
    kept = len(decisions) - len(doomed)
    if refusals:
        print(
            f"{len(doomed)} file(s) would be deleted by prune {flags}, {kept} kept; "
            f"prune without {flags} refuses and deletes nothing (exit 1)"
        )
        return 1  # what the real prune returns: a dry run predicts it
    done = "would be deleted" if args.dry_run else "deleted"
    print(f"{len(doomed)} file(s) {done}, {kept} kept")
    if not args.dry_run:
        path.unlink(missing_ok=True)  # used up: the next prune needs a fresh run
    return 0


REFUSAL_FIX = {
    "--allow-stale": f"run it again now: {RUN_FIRST}  (or, to delete what it lists all the "
    "same, add --allow-stale)",
    "--allow-partial": f"run every test: {RUN_FIRST}  (or, to delete just what this "
    "report lists, add --allow-partial)",
}


def _refusals(report: UnusedReport, args: argparse.Namespace) -> list[tuple[str, str]]:
    """Why a prune without the flags would refuse: (what the report is, the flag), each."""
    out = []
    stale = _staleness(report)
    if stale and not args.allow_stale:
        out.append((f"a report older than {stale}", "--allow-stale"))
    if report.partial:
        _describe_partial(report)
        if not args.allow_partial:
            out.append(("a partial report", "--allow-partial"))
    return out


# A folder holding one of these is where pytest's rootdir search stops (as a
# repository's top does for us): a report above it belongs to another project.
PROJECT_MARKERS = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg", ".git")


def find_report(start: Path) -> tuple[Path | None, Path]:
    """The nearest report from ``start`` up, and the last folder looked in.

    The search stops at the first folder holding a report, at a project's top
    (``PROJECT_MARKERS``) or at the filesystem root.
    """
    folder = start.absolute()
    while True:
        candidate = folder / DEFAULT_REPORT
        if candidate.is_file():
            return candidate, folder
        if _project_marker(folder) or folder.parent == folder:
            return None, folder
        folder = folder.parent


def _project_marker(folder: Path) -> str | None:
    return next((name for name in PROJECT_MARKERS if (folder / name).exists()), None)


def _no_report(stop: Path) -> None:
    cwd = Path.cwd().absolute()
    where = str(cwd) if stop == cwd else f"{cwd} and every folder up to {stop}"
    marker = _project_marker(stop)
    end = f"the project's top: it holds {marker}" if marker else "the filesystem root"
    print(
        f"pytest-replay prune: no unused report: looked for {DEFAULT_REPORT} in {where} ({end})\n"
        f"  Fix: run the whole suite first: {RUN_FIRST}  (or pass --report FILE, e.g. "
        "when the project sets cache_dir)"
    )


def _shown(path: Path) -> str:
    """A path as the user would type it from here: relative where that is short."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive
        return str(path)
    return rel if len(rel) <= len(str(path)) else str(path)


def _staleness(report: UnusedReport) -> str:
    """What changed since the report's run ('' if nothing seen): the commit, test modules."""
    stale = ""
    if report.git_head is not None:
        now = git_head(Path(report.rootdir))
        if now != report.git_head:
            shown = now[:12] if now else "unknown (no git repository there now?)"
            print(f"the report was made at commit {report.git_head[:12]}, but HEAD is now {shown}")
            stale = "the checked-out commit"
    changed = changed_modules(report)
    if changed:
        print(f"{len(changed)} test module(s) changed since the report (their tests may use")
        print("the files it lists now):")
        for rel in changed[:SHOWN]:
            print(f"  {rel}")
        if len(changed) > SHOWN:
            print(f"  and {len(changed) - SHOWN} more")
        stale = f"{stale} and the test modules" if stale else "the test modules"
    return stale


def decide(report: UnusedReport) -> list[Decision]:
    """What to delete: files the report lists, still as they were, still unreferenced."""
    rootdir = Path(report.rootdir)
    out = []
    for rel in report.cassettes + report.sidecars:
        out.append(_check(rootdir, rel, report))
    gone = {d.path for d in out if d.delete}
    refs: dict[Path, set[str]] = {}
    for rel in report.blobs if report.blobs_checked else []:
        decision = _check(rootdir, rel, report)
        if decision.delete:
            root = decision.path.parent.parent  # <root>/.blobs/<name>
            if root not in refs:
                refs[root] = _blob_refs(root, gone)
            if decision.path.name in refs[root]:
                decision = Decision(decision.path, rel, False, "a cassette still names it")
        out.append(decision)
    return out


def _check(rootdir: Path, rel: str, report: UnusedReport) -> Decision:
    path = rootdir / rel
    if not _ours(path):
        return Decision(path, rel, False, "not a pytest_replay file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Decision(path, rel, False, "already gone")
    except OSError as exc:
        return Decision(path, rel, False, f"unreadable: {exc.strerror or exc}")
    if report.digests.get(rel) != digest(data):
        return Decision(path, rel, False, "changed since the report")
    return Decision(path, rel, True)


def _ours(path: Path) -> bool:
    """Only cassettes, ring logs and blobs are ever deleted, whatever a report says."""
    if path.suffix == ".vrrl":
        return True
    if path.parent.name == ".blobs":
        return bool(BLOB_NAME.fullmatch(path.name))
    return path.suffix == ".yaml" and (not path.exists() or read_test_id(path) is not None)


def _blob_refs(root: Path, gone: set[Path]) -> set[str]:
    names: set[str] = set()
    for path in walk(root):
        if path.suffix == ".yaml" and path not in gone:
            with contextlib.suppress(OSError):
                names |= references(path.read_text(encoding="utf-8", errors="replace"))[0]
    return names


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when empty


def _describe_partial(report: UnusedReport) -> None:
    skipped = sorted(report.not_checked.items())
    print(f"the report is partial: {len(skipped)} module(s) were not checked")
    for module, why in skipped[:SHOWN]:
        print(f"  {module}: {why}")
    if len(skipped) > SHOWN:
        print(f"  and {len(skipped) - SHOWN} more")
    for problem in report.problems:
        print(f"  {problem}")
