"""Run-wide registry of the cassettes tests used, and the unused report ``prune`` reads.

A pytest run (``--replay-report-unused``) fills a ``Usage`` per process:
which modules it collected and whether whole, which tests reached their
cassette, which cassette files they used. Under xdist every worker sends
its ``Usage`` as a dict and the controller merges them. ``find_unused``
then scans the cassette directories of the collected modules and lists
what no test used, only where that is certain:

- a cassette is listed only when both the module its folder belongs to and
  the module its ``test:`` header names ran whole in this run (collected,
  nothing deselected, every test using ``replay`` -- by the fixture or by
  turning on the clock/random/uuid -- reached its cassette, and every other
  test ran its body) or no longer exist;
- a ``.vrrl`` ring log, when no kept cassette of its folder names it and
  its folder's module ran whole or is gone;
- a blob, when no kept cassette under its root names it, and no
  ``pytest_replay_cassette_path`` hook may have put a cassette elsewhere
  (otherwise no blob is listed and the report says so).

Anything else (a partly selected module, a skipped test whose cassette
path is unknown, an unreadable file) is kept and, for modules, listed
under ``not_checked`` so the report says it is partial. A module is listed
for a test that never ran (so whether it uses replay is unknown) only when
that kept one of its cassettes or ring logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .blobs import atomic_write
from .canonical import digest
from .cassette import cassette_path, cassette_root

REPORT_VERSION = 1
REPORT_FILE = "unused.json"  # under <cache_dir>/replay/
WORKER_KEY = "pytest_replay"  # xdist workeroutput key

BLOB_NAME = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,8}")
_VRRL_REF = re.compile(r"[^\s'\"/\\]+\.vrrl")
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

NOT_COLLECTED = "not collected in this run: not among the paths or node ids given to pytest"
PARTLY_COLLECTED = "only part of it was collected (node ids on the command line)"


# --- what one process saw -----------------------------------------------------------


@dataclass
class Usage:
    """Collected modules, tests that reached their cassette, cassette files used."""

    # module file -> every test item collected from it (before deselection)
    items: dict[str, set[str]] = field(default_factory=dict)
    replay_items: dict[str, set[str]] = field(default_factory=dict)  # selected, using replay
    problems: dict[str, str] = field(default_factory=dict)  # module file -> why not whole
    reached: set[str] = field(default_factory=set)  # node ids that built their session
    chosen: dict[str, set[str]] = field(default_factory=dict)  # module -> selected items
    ran: set[str] = field(default_factory=set)  # node ids whose body ran (not skipped)
    used: set[str] = field(default_factory=set)  # absolute, normalised cassette paths
    run_problems: list[str] = field(default_factory=list)  # interrupted, worker lost...
    path_hook: bool = False  # a pytest_replay_cassette_path hook is implemented
    _pending: dict[str, str] = field(default_factory=dict)  # collector id -> module file

    # -- collection (fed by the plugin) ----------------------------------------------

    def collected(
        self, nodeid: str, path: str | None, ok: bool, why: str, children: Iterable[Child]
    ) -> None:
        """One collector's report: its children, or why it failed (error, skip)."""
        self._pending.pop(nodeid, None)
        if path is not None and path.endswith(".py"):
            self.items.setdefault(path, set())
            if not ok:
                self.problems.setdefault(path, why)
        for child in children:
            if child.path is None:
                continue
            if child.is_item:
                self.items.setdefault(child.path, set()).add(child.nodeid)
            elif child.path.endswith(".py"):
                self.items.setdefault(child.path, set())
                self._pending[child.nodeid] = child.path

    def selected(self, items: Iterable[Child]) -> None:
        """The items left after deselection; a module missing any of its items is partial."""
        chosen = self.chosen
        for item in items:
            if item.path is None:
                continue
            chosen.setdefault(item.path, set()).add(item.nodeid)
            if item.uses_replay:
                self.replay_items.setdefault(item.path, set()).add(item.nodeid)
        # A collector seen as a child but never collected itself: a whole module
        # not asked for, or a class a node id left out (-k deselects, seen below).
        partly = {path for nodeid, path in self._pending.items() if "::" in nodeid}
        for path in partly:
            self.problems.setdefault(path, PARTLY_COLLECTED)
        for path in set(self._pending.values()) - partly:
            self.problems.setdefault(path, NOT_COLLECTED)
        self._pending.clear()
        for path, all_items in self.items.items():
            left = len(all_items - chosen.get(path, set()))
            if left:
                self.problems.setdefault(path, f"{left} test(s) deselected or not selected")

    def use(self, nodeid: str, path: Path | str) -> None:
        """A test built its session on this cassette (a hook may spell it with ``..``)."""
        self.reached.add(nodeid)
        self.used.add(os.path.abspath(path))

    # -- transport (xdist workeroutput) ------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": {k: sorted(v) for k, v in self.items.items()},
            "replay_items": {k: sorted(v) for k, v in self.replay_items.items()},
            "problems": dict(self.problems),
            "reached": sorted(self.reached),
            "chosen": {k: sorted(v) for k, v in self.chosen.items()},
            "ran": sorted(self.ran),
            "used": sorted(self.used),
            "run_problems": list(self.run_problems),
            "path_hook": self.path_hook,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        return cls(
            items={k: set(v) for k, v in data.get("items", {}).items()},
            replay_items={k: set(v) for k, v in data.get("replay_items", {}).items()},
            problems=dict(data.get("problems", {})),
            reached=set(data.get("reached", ())),
            chosen={k: set(v) for k, v in data.get("chosen", {}).items()},
            ran=set(data.get("ran", ())),
            used=set(data.get("used", ())),
            run_problems=list(data.get("run_problems", ())),
            path_hook=bool(data.get("path_hook", False)),
        )

    @classmethod
    def merge(cls, parts: Iterable[Usage]) -> Usage:
        """Workers collect the same tests and run different ones: union everything."""
        out = cls()
        for part in parts:
            for path, ids in part.items.items():
                out.items.setdefault(path, set()).update(ids)
            for path, ids in part.replay_items.items():
                out.replay_items.setdefault(path, set()).update(ids)
            for path, why in part.problems.items():
                out.problems.setdefault(path, why)
            for path, ids in part.chosen.items():
                out.chosen.setdefault(path, set()).update(ids)
            out.reached |= part.reached
            out.ran |= part.ran
            out.used |= part.used
            out.run_problems.extend(p for p in part.run_problems if p not in out.run_problems)
            out.path_hook |= part.path_hook
        return out

    # -- verdict per module ------------------------------------------------------------

    def not_checked(self) -> dict[str, str]:
        """Module file -> why its cassettes cannot be judged from this run."""
        out = dict(self.problems)
        for path, ids in self.replay_items.items():
            missed = len(ids - self.reached)
            if missed and path not in out:
                out[path] = (
                    f"{missed} test(s) using replay did not reach their cassette "
                    "(skipped, errored in setup, or the run stopped)"
                )
        return out

    def unsure(self) -> dict[str, str]:
        """Module file -> why it may use cassettes this run did not see (checked or not).

        A selected test that neither reached its cassette nor ran its body may
        still use one (``replay_config`` turning the clock on, a dynamic
        ``getfixturevalue``); it matters only where its module has cassettes.
        """
        hard = self.not_checked()
        out = {  # e.g. --lf collects a file without failures as empty
            path: "no test was collected from it (skipped by --lf, or it has none)"
            for path, ids in self.items.items()
            if not ids and path not in hard
        }
        for path, ids in self.chosen.items():
            missed = len(ids - self.reached - self.ran)
            if missed and path not in hard:
                out[path] = (
                    f"{missed} test(s) did not run (skipped or errored before the body), "
                    "so whether they use replay is unknown"
                )
        return out

    def whole(self) -> set[str]:
        """Modules that ran whole: every cassette they use is in ``used``."""
        skip = self.not_checked() | self.unsure()
        return {path for path in self.items if path not in skip}


@dataclass(frozen=True)
class Child:
    """A collected node as plain data: id, file, item or collector, uses ``replay``."""

    nodeid: str
    path: str | None
    is_item: bool
    uses_replay: bool = False


# --- the report -------------------------------------------------------------------------


@dataclass
class UnusedReport:
    """What no test used, relative to ``rootdir``, with each file's digest."""

    rootdir: str
    cassettes: list[str] = field(default_factory=list)
    sidecars: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)
    not_checked: dict[str, str] = field(default_factory=dict)  # module -> reason
    problems: list[str] = field(default_factory=list)
    checked: int = 0  # modules that ran whole
    blobs_checked: bool = True  # False: cassettes may lie outside the roots, no blob listed
    git_head: str | None = None  # the commit the run tested, where the rootdir is in git
    # test module -> digest of its bytes (None: absent) for each module whose
    # run (or absence) let a listed file go; prune refuses if one changed since.
    modules: dict[str, str | None] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return bool(self.not_checked or self.problems)

    @property
    def files(self) -> list[str]:
        return [*self.cassettes, *self.sidecars, *self.blobs]

    def to_json(self) -> str:
        body = {
            "pytest_replay_unused": REPORT_VERSION,
            "rootdir": self.rootdir,
            "partial": self.partial,
            "checked_modules": self.checked,
            "not_checked": dict(sorted(self.not_checked.items())),
            "problems": self.problems,
            "blobs_checked": self.blobs_checked,
            "git_head": self.git_head,
            "modules": dict(sorted(self.modules.items())),
            "cassettes": self.cassettes,
            "sidecars": self.sidecars,
            "blobs": self.blobs,
            "digests": dict(sorted(self.digests.items())),
        }
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"

    def write(self, path: Path) -> None:
        atomic_write(path, self.to_json().encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> UnusedReport:
        """Read a report; ValueError with a readable reason when it is not one."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("pytest_replay_unused") != REPORT_VERSION:
            raise ValueError(f"{path} is not a pytest_replay unused report (version 1)")
        try:
            report = cls(
                rootdir=_str(data["rootdir"]),
                cassettes=_strs(data.get("cassettes", [])),
                sidecars=_strs(data.get("sidecars", [])),
                blobs=_strs(data.get("blobs", [])),
                digests={_str(k): _str(v) for k, v in dict(data.get("digests", {})).items()},
                not_checked={
                    _str(k): _str(v) for k, v in dict(data.get("not_checked", {})).items()
                },
                problems=_strs(data.get("problems", [])),
                checked=_count(data.get("checked_modules", 0)),
                blobs_checked=_bool(data.get("blobs_checked", True)),
                git_head=_opt_str(data.get("git_head")),
                modules={_str(k): _opt_str(v) for k, v in dict(data.get("modules", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} is malformed: {exc}") from None
        if not os.path.isabs(report.rootdir):
            raise ValueError(f"{path} is malformed: rootdir is not an absolute path")
        return report


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _count(value: Any) -> int:
    """A whole number >= 0 (``int(1e999)`` would raise OverflowError, ``int("x")`` pass a str)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"expected a count, got {value!r:.40}")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _strs(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return [_str(v) for v in value]


def module_digest(path: Path) -> str | None:
    """Digest of a test module's bytes; None when it does not exist (or cannot be read)."""
    try:
        return digest(path.read_bytes())
    except OSError:
        return None


def changed_modules(report: UnusedReport) -> list[str]:
    """The modules whose content is not what the report's run saw (edited, added, removed)."""
    root = Path(report.rootdir)
    return [rel for rel, seen in report.modules.items() if module_digest(root / rel) != seen]


def git_head(folder: Path) -> str | None:
    """The commit checked out at ``folder`` (``git rev-parse HEAD``); None without git or one."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    try:
        proc = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--verify", "--quiet", "HEAD"],
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    head = proc.stdout.decode("ascii", "replace").strip()
    return head if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", head) else None


# --- scanning ---------------------------------------------------------------------------


def read_test_id(path: Path) -> str | None:
    """The ``test:`` node id of a cassette from its header lines, or None if it is not one."""
    try:
        with path.open("rb") as fh:
            first = fh.readline(4096)
            if not first.startswith(b"pytest_replay:"):
                return None
            line = fh.readline(65536)
    except OSError:
        return None
    return header_line_test(line)


def header_line_test(line: bytes) -> str | None:
    """The node id a cassette's ``test:`` header line holds, or None (parsed on its own)."""
    if not line.startswith(b"test:"):
        return None
    try:
        value = yaml.load(line, Loader=_Loader)
    except (yaml.YAMLError, ValueError):
        return None
    test = value.get("test") if isinstance(value, dict) else None
    return test if isinstance(test, str) and test else None


def references(text: str) -> tuple[set[str], set[str]]:
    """Blob names and ``.vrrl`` file names a cassette's text mentions (a superset is safe)."""
    return set(BLOB_NAME.findall(text)), set(_VRRL_REF.findall(text))


def walk(root: Path) -> Iterator[Path]:
    """Files under ``root``, skipping hidden directories (``.blobs`` is read apart)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath, name)


def find_unused(usage: Usage, rootdir: Path, replay_dir: Path | None) -> UnusedReport:
    """Scan the cassette roots of the collected modules for what no test used."""
    whole = usage.whole()
    not_checked = usage.not_checked()
    unsure = usage.unsure()
    blocked: set[str] = set()  # unsure modules that kept a file
    deciding: set[Path] = set()  # modules whose run or absence let a listed file go
    report = UnusedReport(
        rootdir=str(rootdir),
        not_checked={_rel(Path(p), rootdir): why for p, why in not_checked.items()},
        problems=list(usage.run_problems),
    )

    def gone_or_whole(module: Path | None) -> bool:
        if module is None:
            return False
        if str(module) in whole or not module.exists():
            return True
        if str(module) in unsure:
            blocked.add(str(module))
        return False

    modules = [Path(p) for p in usage.items]
    roots = sorted({cassette_root(p, rootdir, replay_dir) for p in modules})
    # folder -> module, as cassette naming builds it (exact even for sanitised names)
    folders = {
        cassette_path(
            module_path=p, rootdir=rootdir, test_parts=["x"], replay_dir=replay_dir
        ).parent: p
        for p in modules
    }

    def folder_module(folder: Path, root: Path) -> Path | None:
        return folders.get(folder) or _folder_module(folder, root, rootdir, replay_dir)

    used = {Path(os.path.abspath(p)) for p in usage.used}
    outside = [p for p in used if not any(_under(p, r) for r in roots)]
    # A hook may keep cassettes anywhere; their blobs are under the module's root.
    report.blobs_checked = not (usage.path_hook or outside)
    for root in roots:
        if not root.is_dir():
            continue
        files = list(walk(root))
        kept_refs: dict[Path, set[str]] = {}  # folder -> .vrrl names its kept cassettes name
        blob_refs: set[str] = set()
        unused_yaml: list[Path] = []
        for path in (f for f in files if f.suffix == ".yaml"):
            test = read_test_id(path) if path not in used else None
            if test is not None:
                owners = [
                    folder_module(path.parent, root),
                    Path(os.path.normpath(rootdir / test.split("::", 1)[0])),
                ]
                if all([gone_or_whole(m) for m in owners]):  # a list: judge both
                    unused_yaml.append(path)
                    deciding.update(m for m in owners if m is not None)
                    continue
            blobs, logs = _refs_of(path)
            blob_refs |= blobs
            kept_refs.setdefault(path.parent, set()).update(logs)
        for path in unused_yaml:
            report.cassettes.append(_rel(path, rootdir))
        for path in (f for f in files if f.suffix == ".vrrl"):
            if path.name in kept_refs.get(path.parent, set()):
                continue
            owner = folder_module(path.parent, root)
            if owner is not None and gone_or_whole(owner):
                report.sidecars.append(_rel(path, rootdir))
                deciding.add(owner)
        store = root / ".blobs"
        if report.blobs_checked and store.is_dir():
            for blob in sorted(store.iterdir()):
                if BLOB_NAME.fullmatch(blob.name) and blob.name not in blob_refs:
                    report.blobs.append(_rel(blob, rootdir))
    for module in sorted(blocked):
        report.not_checked[_rel(Path(module), rootdir)] = unsure[module]
    report.checked = len(whole) + len(set(unsure) - blocked)
    for rel in report.files:
        path = rootdir / rel
        with contextlib.suppress(OSError):
            report.digests[rel] = digest(path.read_bytes())
    report.modules = {_rel(m, rootdir): module_digest(m) for m in deciding}
    return report


def _folder_module(folder: Path, root: Path, rootdir: Path, replay_dir: Path | None) -> Path | None:
    """The module a folder of no collected module would belong to (to tell one that is gone)."""
    try:
        rel = folder.relative_to(root)
    except ValueError:
        return None
    if not rel.parts:
        return None
    if replay_dir is not None:
        return (rootdir / rel).with_name(rel.name + ".py")
    if len(rel.parts) != 1:
        return None
    return root.parent / f"{rel.name}.py"


def _refs_of(path: Path) -> tuple[set[str], set[str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set(), set()
    return references(text)


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _rel(path: Path, rootdir: Path) -> str:
    try:
        return path.relative_to(rootdir).as_posix()
    except ValueError:
        return str(path)
