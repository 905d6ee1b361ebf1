"""Ambient determinism: clock, randomness and uuids of unmodified code, recorded and replayed."""

from __future__ import annotations

import json
import os
import random
import re
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_replay import ambient
from pytest_replay.errors import ConfigError

# Code under test: it knows nothing of pytest_replay and calls each patched API directly.
WORLD = """
import datetime, os, random, secrets, threading, time, uuid, warnings
from datetime import datetime as dt_class
from os import urandom as early_urandom  # bound before any patch: not covered
from time import time as bare_time
from uuid import uuid4 as bare_uuid4

import numpy as np


def utcnow():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12
        return dt_class.utcnow()


def observe():
    seen = {}
    thread = threading.Thread(target=lambda: seen.update(thread_now=datetime.datetime.now().isoformat()))
    thread.start()
    thread.join()
    return {
        "time": time.time(),
        "time_ns": time.time_ns(),
        "bare_time": bare_time(),
        "now": datetime.datetime.now().isoformat(),
        "now_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "utcnow": utcnow().isoformat(),
        "today": dt_class.today().isoformat(),
        "date_today": datetime.date.today().isoformat(),
        "localtime": list(time.localtime())[:6],
        "strftime": time.strftime("%Y-%m-%d %H:%M:%S"),
        "thread_now": seen["thread_now"],
        "random": random.random(),
        "randint": random.randint(0, 10**9),
        "Random": random.Random().random(),
        "np_legacy": float(np.random.rand()),
        "np_default_rng": float(np.random.default_rng().random()),
        "np_generator": float(np.random.Generator(np.random.PCG64()).random()),
        "urandom": os.urandom(8).hex(),
        "secrets": secrets.token_hex(8),
        "secrets_below": secrets.randbelow(10**9),
        "system_random": random.SystemRandom().random(),
        "uuid4": str(uuid.uuid4()),
        "bare_uuid4": str(bare_uuid4()),
    }
"""


def _test_module(marker: str) -> str:
    return f"""
import json, os
import pytest
from world import observe

@pytest.mark.replay({marker})
def test_world(replay):
    seen = observe()
    with open(f"observed-{{replay.mode.value}}.json", "w") as fh:
        json.dump(seen, fh, sort_keys=True)
    # the k-th recorded value is served back: on replay this compares recording and now
    assert replay.fact("observed", lambda: seen) == seen
"""


def _observed(rt, mode: str) -> dict:
    return json.loads((rt.root / f"observed-{mode}.json").read_text())


def test_every_patched_api_replays_exactly_in_a_fresh_process(rt, monkeypatch):
    # Recorded in one zone and hash seed, replayed in a fresh process with others.
    rt.pytester.makepyfile(world=WORLD)
    rt.module(_test_module("clock='tick', random=True, uuid=True"))
    # the subprocess imports this checkout's pytest_replay; POSIX zones need no tz database
    monkeypatch.setenv("PYTHONPATH", str(Path(ambient.__file__).parents[2]))
    monkeypatch.setenv("TZ", "EST+05")
    monkeypatch.setenv("PYTHONHASHSEED", "123")
    rt.pytester.runpytest_subprocess("-p", "no:randomly", "--replay=record").assert_outcomes(
        passed=1
    )
    monkeypatch.setenv("TZ", "JST-09")
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    replayed = rt.pytester.runpytest_subprocess("-p", "no:randomly", "--replay=strict")
    replayed.assert_outcomes(passed=1, warnings=1)
    recorded, again = _observed(rt, "record"), _observed(rt, "strict")
    assert again == recorded
    # tick mode: every read by the code advanced the clock by exactly 1 ms
    assert recorded["time_ns"] - round(recorded["time"] * 1e9) == pytest.approx(1_000_000, abs=1e3)
    assert recorded["now"].startswith(recorded["date_today"])
    # the thread read the patched clock (on replay too: that is why the dicts are equal)
    assert recorded["thread_now"] < recorded["now"] < recorded["thread_now"][:10] + "T99"
    replayed.stdout.fnmatch_lines(
        ["*ReplayWarning*PYTHONHASHSEED was 123 when this cassette was recorded and is 0 now*"]
    )
    text = rt.cassette("test_world").read_text()
    assert "pythonhashseed: '123'" in text
    assert '"random_bytes|from:world|state:test|attempt:0|ord:0"' in text


def test_replay_starts_from_the_recorded_instant_and_advances_with_real_time(rt):
    rt.module(
        """
import datetime, time
import pytest

@pytest.mark.replay(clock=True)
def test_clock(replay):
    first = time.time()
    time.sleep(0.05)
    assert 0.05 <= time.time() - first < 5
    if replay.mode.value == "strict":
        assert abs(first - 1_000_000_000) < 5
        assert datetime.datetime.now(datetime.timezone.utc).year == 2001
        assert datetime.date.today() == datetime.date(2001, 9, 9)
    else:
        import time_machine
        assert abs(first - time_machine.escape_hatch.time.time()) < 5
"""
    )
    rt.record().assert_outcomes(passed=1)
    path = rt.cassette("test_clock")
    # the recorded instant, moved by hand to 2001-09-09T01:46:40Z
    text = re.sub(r'"time_ns":\d+', '"time_ns":1000000000000000000', path.read_text())
    path.write_text(re.sub(r'"utcoffset":-?\d+,"zone":"[^"]*"', '"utcoffset":0,"zone":"UTC"', text))
    rt.run("--replay=strict").assert_outcomes(passed=1)


def test_explicit_facts_and_ambient_values_interleave_without_shifting(rt):
    # replay.now()/fact(time.time) on record read the ticking clock once; on
    # replay they are served without reading it, so the ticks must not shift.
    rt.module(
        """
import logging, os, random, time, uuid
import pytest

@pytest.mark.replay(clock="tick", random=True, uuid=True)
def test_mixed(replay):
    seen = [
        time.time(),
        logging.getLogger("app").debug("a log record reads the clock only at DEBUG"),
        replay.now().isoformat(),
        time.time(),
        replay.fact("t", time.time),
        time.time(),
        str(replay.uuid4()),
        str(uuid.uuid4()),
        replay.random_bytes(4).hex(),
        os.urandom(4).hex(),
        replay.fact("token", lambda: os.urandom(4).hex()),
        os.urandom(4).hex(),
        replay.fact("r", random.Random().random),
        random.Random().random(),
        time.time(),
    ]
    assert seen[0] < seen[3] < seen[5] < seen[-1]
    assert replay.fact("observed", lambda: seen) == seen
"""
    )
    rt.record().assert_outcomes(passed=1)
    # logging (like pytest itself) sees the clock without advancing it
    rt.run("--replay=strict", "--log-level=DEBUG").assert_outcomes(passed=1)


def test_gather_of_100_tasks_each_drawing_a_uuid_and_a_fact_replays(rt):
    rt.module(
        """
import asyncio, uuid
import pytest

@pytest.mark.replay(uuid=True)
def test_gather(replay):
    async def task(i):
        await asyncio.sleep(0)
        mine = str(uuid.uuid4())
        await asyncio.sleep(0)
        return i, mine, replay.fact(f"task-{i % 7}", lambda: mine)

    async def main():
        return await asyncio.gather(*(task(i) for i in range(100)))

    results = [list(r) for r in asyncio.run(main())]
    assert len({mine for _, mine, _ in results}) == 100
    assert replay.fact("observed", lambda: results) == results
"""
    )
    rt.record().assert_outcomes(passed=1)
    text = rt.cassette("test_gather").read_text()
    assert text.count('"random_bytes|from:test_mod|') == 100
    rt.run("--replay=strict").assert_outcomes(passed=1)


def test_threads_drawing_uuids_at_once_get_the_recorded_ones(rt):
    rt.module(
        """
import threading, uuid
import pytest

@pytest.mark.replay(uuid=True)
def test_threads(replay):
    seen = []
    def work():
        seen.extend(str(uuid.uuid4()) for _ in range(50))
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 400
    # which thread gets which value may differ; the values themselves may not
    assert replay.fact("observed", lambda: sorted(seen)) == sorted(seen)
"""
    )
    rt.record().assert_outcomes(passed=1)
    rt.run("--replay=strict").assert_outcomes(passed=1)


def test_a_mocked_step_accounts_for_the_entropy_it_drew_when_recorded(rt):
    rt.module(
        """
import os, uuid
import pytest

def work():
    return {"id": str(uuid.uuid4()), "salt": os.urandom(3).hex()}

@pytest.mark.replay(random=True)
def test_step(replay):
    out = replay.step("work", work, strategy="mocked")
    after = str(uuid.uuid4())
    assert replay.fact("observed", lambda: [out, after]) == [out, after]
"""
    )
    rt.record().assert_outcomes(passed=1)
    assert '"random_bytes|from:test_mod|state:work#0|' in rt.cassette("test_step").read_text()
    rt.run("--replay=strict").assert_outcomes(passed=1)


_ORIGINALS = {
    "os.urandom": (os, "urandom"),
    "random.seed": (random, "seed"),
    "random._urandom": (random, "_urandom"),
    "random.Random.seed": (random.Random, "seed"),
    "numpy.random.default_rng": (np.random, "default_rng"),
    "uuid.os": (uuid, "os"),
}


def _world_now() -> dict:
    import time_machine

    return {
        "travelling": time_machine.escape_hatch.is_travelling(),
        "TZ": os.environ.get("TZ"),
        "random": random.getstate(),
        "numpy": str(np.random.get_state()[1][:4]),
        **{name: getattr(owner, attr) for name, (owner, attr) in _ORIGINALS.items()},
    }


@pytest.mark.parametrize(
    "body, outcome",
    [
        ("assert False", {"failed": 1}),
        ("raise KeyboardInterrupt", {}),
        ("pytest.skip('later')", {"skipped": 1}),
        ("pass", {"passed": 1}),
    ],
)
def test_teardown_restores_the_real_clock_and_randomness(rt, body, outcome):
    before = _world_now()
    rt.module(
        f"""
import datetime, random, threading, time
import pytest

@pytest.mark.replay(clock="tick", random=True, uuid=True)
def test_patched(replay):
    import time_machine
    assert time_machine.escape_hatch.is_travelling()
    random.random()
    {body}
"""
    )
    result = rt.pytester.runpytest("-p", "no:randomly", "--replay=record", no_reraise_ctrlc=True)
    if outcome:
        result.assert_outcomes(**outcome)
    else:
        assert result.ret == pytest.ExitCode.INTERRUPTED
    assert _world_now() == before


def test_a_failing_fixture_setup_restores_everything(rt):
    before = _world_now()
    rt.module(
        """
import pytest

@pytest.fixture
def broken(replay):
    raise RuntimeError("setup")

@pytest.mark.replay(clock=True, random=True)
def test_patched(broken):
    pass
"""
    )
    rt.record().assert_outcomes(errors=1)
    assert _world_now() == before


def test_ini_and_replay_config_turn_it_on_for_tests_that_never_ask_for_replay(rt):
    rt.pytester.makeini("[pytest]\nreplay_ambient = clock=tick random\n")
    rt.pytester.makeconftest(
        """
import pytest

@pytest.fixture
def replay_config():
    return {"uuid": True}
"""
    )
    rt.module(
        """
import json, random, time, uuid
import pytest

def test_plain(request):
    seen = [time.time(), time.time(), random.random(), str(uuid.uuid4())]
    with open(f"seen-{request.config.getoption('replay_mode')}.json", "w") as fh:
        json.dump(seen, fh)
    assert seen[1] - seen[0] == pytest.approx(0.001, abs=1e-6)

@pytest.mark.replay(clock=False, random=False, uuid=False)
def test_opted_out():
    import time_machine
    assert not time_machine.escape_hatch.is_travelling()
"""
    )
    rt.record().assert_outcomes(passed=2)
    # A marked test gets a session (HTTP recording), but opted out of every patch.
    assert [p.name for p in rt.cassettes()] == ["test_opted_out.yaml", "test_plain.yaml"]
    assert "ambient" not in rt.cassette("test_opted_out").read_text()
    text = rt.cassette("test_plain").read_text()
    assert "clock: tick" in text and "uuid: true" in text
    rt.run("--replay=strict").assert_outcomes(passed=2)
    assert (rt.root / "seen-record.json").read_text() == (rt.root / "seen-strict.json").read_text()


def test_pytest_randomly_reseeding_before_the_body_does_not_break_replay(rt):
    # A stand-in for pytest-randomly: registered as "randomly", it reseeds
    # random and NumPy with a new value right before each test body.
    rt.pytester.makeconftest(
        """
import random, time
import numpy as np

class Randomly:
    def pytest_runtest_call(self, item):
        seed = time.perf_counter_ns() % 2**32  # a new value each run, from an unpatched clock
        random.seed(seed)
        np.random.seed(seed)

def pytest_configure(config):
    if not config.pluginmanager.hasplugin("randomly"):  # the real one does the same
        config.pluginmanager.register(Randomly(), "randomly")
"""
    )
    rt.module(
        """
import random
import numpy as np
import pytest

@pytest.mark.replay(random=True)
def test_draws(replay):
    seen = [random.random(), float(np.random.rand())]
    assert replay.fact("observed", lambda: seen) == seen
"""
    )
    # no "-p no:randomly" here: that would block the stand-in's name too
    rt.pytester.runpytest("--replay=record").assert_outcomes(passed=1)
    rt.pytester.runpytest("--replay=strict").assert_outcomes(passed=1)


def test_draws_made_while_a_module_is_imported_are_not_recorded(rt):
    # Whether an import happens inside a test depends on what ran before it in
    # the process, so entropy drawn at import time is live and never a fact.
    rt.pytester.makepyfile(
        lazy_helper="import os, secrets\nKEY = os.urandom(8) + secrets.token_bytes(8)\n"
    )
    rt.module(
        """
import os, sys
import pytest

@pytest.mark.replay(random=True)
def test_lazy(replay):
    sys.path.insert(0, os.getcwd())
    import lazy_helper
    assert len(lazy_helper.KEY) == 16
    sys.modules.pop("lazy_helper")
    os.urandom(2)
"""
    )
    rt.record().assert_outcomes(passed=1)
    text = rt.cassette("test_lazy").read_text()
    assert "lazy_helper" not in text
    assert text.count('"random_bytes|') == 1
    rt.run("--replay=strict").assert_outcomes(passed=1)


def test_a_cassette_recorded_without_the_clock_fails_clearly_then_stale_values_are_unused(rt):
    src = """
import time
import pytest

@pytest.mark.replay({marker})
def test_t(replay):
    replay.fact("x", lambda: 1)
"""
    rt.module(src.format(marker=""))
    rt.record().assert_outcomes(passed=1)
    rt.module(src.format(marker="clock='tick'"))
    result = rt.run("--replay=strict")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*replay_missing_fact: the cassette was recorded without clock=..., so it holds no "
            "ambient start values",
            "*at:*key 'ambient|clock'",
            "*Fix: re-record this test: pytest --replay=record 'test_mod.py::test_t'",
        ]
    )
    rt.record().assert_outcomes(passed=1)
    rt.module(src.format(marker="clock=False"))
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*replay_unused*", "*fact 'ambient|clock'#0*"])


@pytest.mark.parametrize("value", ["'sometimes'", "0", "-1.0", "float('nan')", "[1]"])
def test_a_bad_clock_setting_is_a_config_error(rt, value):
    rt.module(
        f"""
import pytest

@pytest.mark.replay(clock={value})
def test_t():
    pass
"""
    )
    result = rt.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*replay setting clock=* in replay marker is not valid*"])


def test_an_unknown_ini_entry_is_a_usage_error(rt):
    rt.pytester.makeini("[pytest]\nreplay_ambient = clock dice\n")
    rt.module("def test_t():\n    pass\n")
    result = rt.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*replay_ambient has an unknown entry 'dice'*"])


@pytest.mark.parametrize(
    "words, settings",
    [
        ([], {}),
        (["clock", "random", "uuid"], {"clock": True, "random": True, "uuid": True}),
        (["clock=tick"], {"clock": "tick"}),
        (["CLOCK=0.25"], {"clock": 0.25}),
        (["clock=true"], {"clock": True}),
    ],
)
def test_parse_ini(words, settings):
    assert ambient.parse_ini(words) == settings


@given(st.lists(st.text(max_size=20), max_size=5))
def test_parse_ini_gives_settings_or_a_config_error(words):
    try:
        settings = ambient.parse_ini(words)
    except ConfigError as err:
        assert "replay_ambient" in err.render()
    else:
        assert set(settings) <= set(ambient.KEYS)
        assert all(ambient.valid_clock(v) for v in settings.values())


def test_nothing_is_imported_or_patched_when_off(rt):
    rt.module(
        """
import os, random, sys

def test_plain(replay):
    assert "pytest_replay.ambient.recorder" not in sys.modules
    assert type(os.urandom).__name__ == "builtin_function_or_method"
    assert random.Random.seed.__module__ == "random"
"""
    )
    sys.modules.pop("pytest_replay.ambient.recorder", None)
    rt.record().assert_outcomes(passed=1)


def test_plain_tests_run_no_fixture_of_ours(rt):
    # A replay_config that needs a credential must not touch tests that never use replay.
    rt.pytester.makeconftest(
        """
import pytest

@pytest.fixture
def replay_config():
    pytest.skip("needs API_KEY")
"""
    )
    rt.module(
        """
import pytest

def test_plain_math(request):
    assert "replay" not in request.fixturenames
    assert 1 + 1 == 2

@pytest.mark.replay(uuid=True)
def test_ambient_by_marker(request):
    assert "replay" in request.fixturenames
"""
    )
    result = rt.run("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*needs API_KEY*"])


def test_verify_accounts_for_the_recorded_ambient_facts(rt):
    rt.module(
        """
import pytest, random, time, uuid

@pytest.mark.replay(clock=True, random=True, uuid=True)
def test_amb(replay):
    time.time(), random.random(), uuid.uuid4()
"""
    )
    rt.record().assert_outcomes(passed=1)
    result = rt.run("--replay=verify", "-v")
    result.assert_outcomes(passed=1)
    assert "unused" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*1 verified*"])


def test_a_hand_edited_clock_out_of_range_is_our_error(rt):
    rt.module(
        """
import pytest, time

@pytest.mark.replay(clock=True)
def test_t():
    time.time()
"""
    )
    rt.record().assert_outcomes(passed=1)
    path = rt.cassette("test_t")
    text = path.read_text()
    import re

    edited = re.sub(r'"time_ns":\d+', '"time_ns":' + "9" * 30, text)
    assert edited != text
    path.write_text(edited)
    result = rt.run("--replay=strict")
    assert "OverflowError" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*Fix:*"])


def test_strict_without_a_cassette_says_so_when_ambient_is_on(rt):
    # Ambient turned on by the ini and by a marker: a new test pushed without its
    # cassette must fail as replay_missing_cassette, not error in setup about
    # missing ambient start values.
    rt.pytester.makeini("[pytest]\nreplay_ambient = clock random uuid\n")
    rt.module(
        "import random, time\nimport pytest\n\n"
        "def test_ini():\n    random.random()\n\n"
        "@pytest.mark.replay(clock='tick', random=True)\n"
        "def test_marker(replay):\n    time.time()\n"
    )
    result = rt.run("--replay=strict")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_ini _*",
            "*replay_missing_cassette: no cassette for this test*",
            "*_ test_marker _*",
            "*replay_missing_cassette: no cassette for this test*",
        ]
    )
    assert "recorded without" not in result.stdout.str()
