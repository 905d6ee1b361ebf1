"""The pytest-replay command line: check, show and import cassettes without running tests."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..blobs import BlobStore
from ..cassette import Cassette
from ..errors import ReplayError
from ..facts import FactLog
from ..http.interaction import parse_section
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


def _ring_row(index: int, record: Any) -> dict[str, Any]:
    """One .vrrl record as plain fields (timestamps left out: they are IO, not behaviour)."""
    return {
        "index": index,
        "slot": int(record["slot_idx"]),
        "tenant": int(record["tenant_id"]),
        "opcode": int(record["opcode"]),
        "args": [int(a) for a in record["args"]],
        "epoch": int(record["epoch"]),
        "status": int(record["slot_status"]),
        "failure": int(record["failure_class"]),
        "backend": int(record["backend_code"]),
        "digest": f"{int(record['output_digest']):016x}",
    }


def _ring_line(row: dict[str, Any]) -> str:
    return (
        f"{row['index']:>7} slot={row['slot']} tenant={row['tenant']} opcode={row['opcode']} "
        f"args=[{','.join(map(str, row['args']))}] epoch={row['epoch']} status={row['status']} "
        f"failure={row['failure']} backend={row['backend']} digest={row['digest']}"
    )


def _load_for_show(path: Path, tenant: int | None, limit: int | None) -> dict[str, Any]:
    cassette = Cassette.load(path, blobs=BlobStore(blob_root_for(path)), shown=str(path))
    log = FactLog(
        mode=Mode.STRICT,
        blobs=cassette.blobs,
        threshold=0,
        retryable=False,
        recorded=cassette.doc,
        shown=str(path),
    )
    facts = []
    ordinals: dict[str, int] = {}
    for key, pid in log.recorded_facts():
        k = ordinals.get(key, 0)
        ordinals[key] = k + 1
        facts.append({"key": key, "ordinal": k, "payload": pid, "value": log.payloads.value(pid)})
    rings = {}
    for name, entry in sorted((cassette.section("rings") or {}).items()):
        records = read_records(path.parent / str(entry.get("log", "")))
        # Tenant scoping filters before the limit, so a page never shows another tenant.
        rows = [
            _ring_row(i, r)
            for i, r in enumerate(records)
            if tenant is None or int(r["tenant_id"]) == tenant
        ]
        rings[name] = rows[:limit] if limit is not None else rows
    http = [
        {
            "method": i["request"]["method"],
            "uri": i["request"]["uri"],
            "status": i["response"]["status"],
        }
        for i in parse_section(cassette.section("http"), str(path))
    ]
    return {
        "test": cassette.test,
        "facts": facts[:limit] if limit else facts,
        "http": http[:limit] if limit else http,
        "rings": rings,
    }


def _show(args: argparse.Namespace) -> int:
    path = Path(args.cassette)
    try:
        data = _load_for_show(path, args.tenant, args.limit)
    except ReplayError as err:
        print(err.render(), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, default=repr, indent=2))
        return 0
    print(f"{path}  ({data['test']})")
    if args.tenant is None:
        print(f"facts: {len(data['facts'])}")
        for row in data["facts"]:
            value = repr(row["value"])
            if len(value) > 80:
                value = value[:77] + "..."
            print(f"  {row['key']}#{row['ordinal']}  {value}")
    if args.tenant is None and data["http"]:
        print(f"http: {len(data['http'])}")
        for row in data["http"]:
            print(f"  {row['method']} {row['uri']} -> {row['status']}")
    for name, rows in data["rings"].items():
        scope = f" (tenant {args.tenant})" if args.tenant is not None else ""
        print(f"ring {name}{scope}: {len(rows)} record(s)")
        for row in rows:
            print("  " + _ring_line(row))
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
    for i, record in enumerate(records):
        print(_ring_line(_ring_row(i, record)))
    return 0


def _import_vcr(args: argparse.Namespace) -> int:
    """vcrpy / pytest-recording cassettes -> pytest_replay cassettes with an http section."""
    from ..http.importer import find_vcr_cassettes, import_file

    paths = [Path(p) for p in args.paths]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"pytest-replay import-vcr: no such file or directory: {missing[0]}", file=sys.stderr)
        return 2
    sources = list(find_vcr_cassettes(paths))
    if args.out and len(sources) != 1:
        print("pytest-replay import-vcr: --out needs exactly one cassette", file=sys.stderr)
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
    show.add_argument("--tenant", type=int, help="only this tenant's ring records")
    show.add_argument("--limit", type=int, help="at most N items per collection")
    show.set_defaults(run=_show)
    textconv = sub.add_parser(
        "textconv", help="print a cassette or .vrrl ring log as stable text for git diff"
    )
    textconv.add_argument("file")
    textconv.set_defaults(run=_textconv)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))
