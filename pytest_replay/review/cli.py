"""The pytest-replay command line: check and show cassettes without running tests."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..blobs import BlobStore
from ..cassette import Cassette
from ..errors import ReplayError
from ..facts import FactLog
from ..modes import Mode
from ..ring import read_records
from .integrity import blob_root_for, check_cassette, find_cassettes


def _check(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or [Path(".")]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"pytest-replay check: no such file or directory: {missing[0]}", file=sys.stderr)
        return 2
    files = list(find_cassettes(paths))
    problems = [p for p in map(check_cassette, files) if p is not None]
    for problem in problems:
        print(f"FAIL {problem.path}\n{problem.message}\n")
    print(f"{len(files) - len(problems)} ok, {len(problems)} failed")
    return 1 if problems else 0


def _show(args: argparse.Namespace) -> int:
    path = Path(args.cassette)
    try:
        cassette = Cassette.load(path, blobs=BlobStore(blob_root_for(path)), shown=str(path))
        log = FactLog(
            mode=Mode.STRICT,
            blobs=cassette.blobs,
            threshold=0,
            retryable=False,
            recorded=cassette.doc,
            shown=str(path),
        )
        rows = []
        ordinals: dict[str, int] = {}
        for key, pid in log.recorded_facts():
            k = ordinals.get(key, 0)
            ordinals[key] = k + 1
            rows.append(
                {"key": key, "ordinal": k, "payload": pid, "value": log.payloads.value(pid)}
            )
    except ReplayError as err:
        print(err.render(), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"test": cassette.test, "facts": rows}, default=repr, indent=2))
        return 0
    print(f"{path}  ({cassette.test})")
    print(f"facts: {len(rows)}")
    for row in rows:
        value = repr(row["value"])
        if len(value) > 80:
            value = value[:77] + "..."
        print(f"  {row['key']}#{row['ordinal']}  {value}")
    return 0


def _textconv(args: argparse.Namespace) -> int:
    """Stable text for ``git diff``: a .vrrl one record per line (timestamps left out)."""
    path = Path(args.file)
    if path.suffix != ".vrrl":
        sys.stdout.write(path.read_text(encoding="utf-8"))
        return 0
    try:
        records = read_records(path)
    except ReplayError as err:
        print(err.render(), file=sys.stderr)
        return 1
    print(f"# {path.name}: {len(records)} record(s), VRRL0001 (timestamps not shown)")
    for i, r in enumerate(records):
        args_text = ",".join(str(int(a)) for a in r["args"])
        print(
            f"{i:>7} slot={int(r['slot_idx'])} tenant={int(r['tenant_id'])} "
            f"opcode={int(r['opcode'])} args=[{args_text}] epoch={int(r['epoch'])} "
            f"status={int(r['slot_status'])} failure={int(r['failure_class'])} "
            f"backend={int(r['backend_code'])} digest={int(r['output_digest']):016x}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pytest-replay", description="Inspect pytest_replay cassettes."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="verify cassettes: schema, YAML, payloads, blob digests")
    check.add_argument("paths", nargs="*", help="cassette files or directories (default: .)")
    check.set_defaults(run=_check)
    show = sub.add_parser("show", help="list what one cassette recorded")
    show.add_argument("cassette")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(run=_show)
    textconv = sub.add_parser(
        "textconv", help="print a cassette or .vrrl ring log as stable text for git diff"
    )
    textconv.add_argument("file")
    textconv.set_defaults(run=_textconv)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))
