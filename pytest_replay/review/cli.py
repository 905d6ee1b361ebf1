"""The pytest-replay command line: review, show, check, stats, textconv, prune, import-vcr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from ..errors import ReplayError
from . import prune
from .git import GitError, Revision, default_base, repo_root, resolve
from .integrity import check_cassette, find_cassettes
from .render import MAX_CHARS, MAX_ITEMS, render_json, render_markdown, render_text
from .show import CursorError, Query, load_page, render_page
from .sources import AtRevision, WorkTree
from .stats import render_stats, stats
from .textconv import textconv
from .tree import Review, review_sides
from .view import load_path

FAIL_ON = ("changed", "removed", "added", "any")


def _say(command: str, message: str, fix: str | None = None) -> None:
    print(f"pytest-replay {command}: {message}", file=sys.stderr)
    if fix:
        print(f"  Fix: {fix}", file=sys.stderr)


def _replay_error(command: str, err: ReplayError) -> None:
    where = f"{err.cassette}: " if err.cassette else ""
    place = f" (at {err.place})" if err.place else ""
    err.with_context()  # a known test id goes into the Fix
    fix = err.fix.replace("{test}", "<test node id>") if err.fix else None
    _say(command, f"{where}{err.summary}{place}", fix)


def _write(text: str) -> None:
    """Print ``text`` whatever the terminal's encoding (unencodable characters escaped)."""
    stream = sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(text.encode(encoding, "backslashreplace").decode(encoding, "strict"))


def _any_missing(command: str, paths: list[Path], what: str) -> bool:
    """Say so (with a Fix) when a path given on the command line does not exist."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        _say(
            command,
            f"no such file or directory: {missing[0]}",
            f"pass existing {what} files or folders",
        )
    return bool(missing)


# --- check ---------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or [Path(".")]
    if _any_missing("check", paths, "cassette"):
        return 2
    skipped: list[Path] = []
    files = list(find_cassettes(paths, skipped))
    problems = [p for p in map(check_cassette, files) if p is not None]
    for problem in problems:
        _write(f"FAIL {problem.path}\n{problem.message}\n\n")
    note = f" ({len(skipped)} other YAML file(s) skipped)" if skipped else ""
    _write(f"{len(files) - len(problems)} ok, {len(problems)} failed{note}\n")
    return 1 if problems else 0


# --- show ----------------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    path = Path(args.cassette)
    query = Query(tenant=args.tenant, after=args.after, before_ms=args.before_ms, limit=args.limit)
    view = None
    try:
        view = load_path(path)
        data = load_page(view, query)
    except ReplayError as err:
        if view is not None:
            err.with_context(test=view.test or None)
        _replay_error("show", err)
        return 2
    except CursorError as err:
        _say("show", str(err), "pass an id printed by a previous page ('next page:' or --json)")
        return 2
    if args.json:
        _write(json.dumps(data, default=repr, indent=2, ensure_ascii=False) + "\n")
    else:
        _write(render_page(data, str(path)))
    return 0


# --- textconv ------------------------------------------------------------------------


def _textconv(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        data = textconv(path)
    except OSError as exc:
        _say("textconv", f"cannot read {path}: {exc.strerror or exc}", "pass an existing file")
        return 2
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


# --- stats ---------------------------------------------------------------------------


def _stats(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or [Path(".")]
    if _any_missing("stats", paths, "cassette"):
        return 2
    data = stats(paths)
    _write(json.dumps(data, indent=2) + "\n" if args.json else render_stats(data))
    return 0


# --- review --------------------------------------------------------------------------


def _pathspecs(repo: Path, base: Path, paths: Sequence[str]) -> list[str]:
    """Repository-relative forms of PATH arguments (relative ones are taken from -C DIR)."""
    out = []
    for p in paths:
        full = (base / p).resolve()
        try:
            out.append(full.relative_to(repo.resolve()).as_posix() or ".")
        except ValueError:
            raise GitError(
                f"{p} is outside the repository {repo}", fix="pass folders inside the repository"
            ) from None
    return out


def _fail_on(values: Sequence[str]) -> set[str]:
    out = set()
    for value in values:
        for part in value.split(","):
            if part.strip() not in FAIL_ON:
                raise GitError(
                    f"--fail-on {part.strip()!r} is not one of {', '.join(FAIL_ON)}",
                    fix="e.g. --fail-on changed,removed",
                )
            out.add(part.strip())
    return {"changed", "removed", "added"} if "any" in out else out


def build_review(args: argparse.Namespace) -> Review:
    """Resolve BASE and compare its cassettes with the working tree's."""
    repo = repo_root(Path(args.repo))
    if args.base:
        commit, label = resolve(repo, args.base), args.base
    else:
        commit, label = default_base(repo)
    specs = _pathspecs(repo, Path(args.repo), args.paths)
    revision = Revision(repo, commit, label)
    for arg, spec in zip(args.paths, specs, strict=True):
        if not (repo / spec).exists() and not revision.files([spec]):
            raise GitError(
                f"no such file or directory: {arg} (neither in the working tree nor at {label})",
                fix="pass existing cassette files or folders "
                "(relative to -C DIR when given, else to the current directory)",
            )
    base = AtRevision(revision, specs)
    try:
        return review_sides(base, WorkTree(repo, specs), commit=commit, base_label=label)
    finally:
        base.close()


def _review(args: argparse.Namespace) -> int:
    try:
        gates = _fail_on(args.fail_on)
        review = build_review(args)
    except GitError as err:
        _say("review", err.message, err.fix)
        return 2
    except ReplayError as err:
        _replay_error("review", err)
        return 2
    if args.format == "json":
        text = render_json(review)
    elif args.format == "markdown":
        text = render_markdown(
            review, max_chars=args.max_chars, max_items=args.max_items, base_arg=args.base
        )
    else:
        text = render_text(review, max_items=args.max_items)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            _say(
                "review",
                f"cannot write {args.output}: {exc.strerror or exc}",
                "pass a writable path",
            )
            return 2
    else:
        _write(text)
    failing = [c for c in review.cassettes if c.status in gates]
    if failing:
        _say("review", f"{len(failing)} cassette(s) {'/'.join(sorted(gates))} (--fail-on)")
        return 1
    return 0


# --- the parser ----------------------------------------------------------------------


def _at_least(minimum: int, hint: str = "") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{hint}")
        return value

    return parse


def _import_vcr(args: argparse.Namespace) -> int:
    """vcrpy / pytest-recording cassettes -> pytest_replay cassettes with an http section."""
    from ..http.importer import find_vcr_cassettes, import_file

    paths = [Path(p) for p in args.paths]
    if _any_missing("import-vcr", paths, "vcrpy cassette"):
        return 2
    sources = list(find_vcr_cassettes(paths))
    if args.out and len(sources) != 1:
        _say("import-vcr", "--out needs exactly one cassette")
        return 2
    failed = 0
    for source in sources:
        try:
            done = import_file(
                source,
                Path(args.out) if args.out else None,
                test=args.test,
                redact=tuple(args.redact),
            )
        except ReplayError as err:
            print(f"FAIL {source}\n{err.render()}\n", file=sys.stderr)
            failed += 1
            continue
        print(f"{done.source} -> {done.target}: {done.interactions} interaction(s)")
    print(f"{len(sources) - failed} imported, {failed} failed")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pytest-replay", description="Review, inspect and check pytest_replay cassettes."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    review = sub.add_parser(
        "review",
        help="what changed in cassettes between BASE and the working tree",
        description="Compare the cassettes of the working tree with those at git revision "
        "BASE (default: the merge base with the default branch), read through git "
        "without a checkout.",
    )
    review.add_argument("base", nargs="?", metavar="BASE", help="git revision to compare with")
    review.add_argument("paths", nargs="*", metavar="PATH", help="only cassettes under these paths")
    review.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    review.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    review.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="changed|removed|added|any",
        help="exit 1 when a cassette has this status (repeat or comma-separate)",
    )
    review.add_argument("-C", "--repo", default=".", metavar="DIR", help="repository (default: .)")
    review.add_argument(
        "--max-items",
        type=_at_least(0, " (0 shows every change)"),
        default=MAX_ITEMS,
        metavar="N",
        help=f"changes shown per section of a cassette (default {MAX_ITEMS}; 0: all)",
    )
    review.add_argument(
        "--max-chars",
        type=_at_least(1000),
        default=MAX_CHARS,
        metavar="N",
        help=f"markdown size bound (default {MAX_CHARS}, under GitHub's comment limit)",
    )
    review.set_defaults(run=_review)

    show = sub.add_parser("show", help="list what one cassette recorded, a page at a time")
    show.add_argument("cassette")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--tenant", type=int, help="only this tenant's ring records")
    show.add_argument("--after", metavar="ID", help="page on after this item id (one collection)")
    show.add_argument(
        "--before-ms", type=int, metavar="T", help="only records created before T (epoch ms)"
    )
    show.add_argument(
        "--limit", type=_at_least(1), metavar="N", help="at most N items per collection"
    )
    show.set_defaults(run=_show)

    check = sub.add_parser(
        "check", help="verify cassettes: schema, YAML, payloads, blob digests, VRRL logs"
    )
    check.add_argument("paths", nargs="*", help="cassette files or directories (default: .)")
    check.set_defaults(run=_check)

    stats_cmd = sub.add_parser("stats", help="counts per section, sizes and blob usage")
    stats_cmd.add_argument("paths", nargs="*", help="cassette files or directories (default: .)")
    stats_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    stats_cmd.set_defaults(run=_stats)

    textconv_cmd = sub.add_parser(
        "textconv", help="print a cassette or .vrrl ring log as stable text for git diff"
    )
    textconv_cmd.add_argument("file")
    textconv_cmd.set_defaults(run=_textconv)
    vcr = sub.add_parser(
        "import-vcr",
        help="convert vcrpy / pytest-recording cassettes (in place unless --out)",
    )
    vcr.add_argument("paths", nargs="+", help="vcrpy cassette files or directories")
    vcr.add_argument("--out", help="write the one converted cassette here")
    vcr.add_argument("--test", help="the test node id for the cassette header")
    vcr.add_argument(
        "--redact",
        action="append",
        default=[],
        metavar="NAME",
        help="another header/field name to redact (repeatable)",
    )
    vcr.set_defaults(run=_import_vcr)
    prune.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))
