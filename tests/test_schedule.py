"""Scheduled jobs: the next-run arithmetic, the config key, the run loop, and tinit as PID 1.

The arithmetic (tinit/schedule.py) is checked with fixed datetimes across
the DST changes of a real zone; the run loop on the fake process tree of
test_runner.py and trio's mock clock, with a wall clock that follows it (and
is stepped); the end-to-end tests run tinit as PID 1 on real jobs that append
to a file.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing

from tests.nsrun import ROOT, Tinit, tinit_argv, wait_for
from tests.svcrun import finish, start, write_config
from tests.test_runner import (
    FakeSpawner,
    Harness,
    NoJitter,
    Script,
    TimedLog,
    _devnull_sinks,
    service,
)
from tinit import schedule
from tinit.config import parse_config, to_document
from tinit.errors import ConfigError
from tinit.logs import make_logger
from tinit.reaper import Reaper
from tinit.schedule import Cron, Every, ScheduleError
from tinit.service import Context, ServiceRunner
from tinit.state import Outcome

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

PARIS = ZoneInfo("Europe/Paris")
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def paris(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


# -- the arithmetic ---------------------------------------------------------------


def test_cron_in_a_zone_is_read_in_that_zone() -> None:
    timing = schedule.parse("0 3 * * *", PARIS)
    after = datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert schedule.next_after(timing, after, ANCHOR) == paris(2026, 6, 2, 3)
    assert schedule.next_after(timing, after, ANCHOR).astimezone(UTC).hour == 1


def test_a_time_the_spring_jump_skips_runs_right_after_the_jump() -> None:
    """Paris skips 02:00-03:00 on 29 March 2026: a 02:30 job runs at 03:00, once."""
    timing = schedule.parse("30 2 * * *", PARIS)
    first = schedule.next_after(timing, paris(2026, 3, 28, 12), ANCHOR)
    assert first == paris(2026, 3, 29, 3, 0)
    assert schedule.next_after(timing, first, ANCHOR) == paris(2026, 3, 30, 2, 30)


def test_a_time_the_autumn_fall_repeats_runs_once() -> None:
    """Paris goes through 02:00-03:00 twice on 25 October 2026: a 02:30 job runs the first time."""
    timing = schedule.parse("30 2 * * *", PARIS)
    first = schedule.next_after(timing, paris(2026, 10, 24, 12), ANCHOR)
    assert first.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    second = schedule.next_after(timing, first, ANCHOR)
    assert second == paris(2026, 10, 26, 2, 30)


def test_hourly_across_the_autumn_fall_runs_every_real_hour() -> None:
    timing = schedule.parse("@hourly", PARIS)
    when = paris(2026, 10, 25, 1, 30)
    times = []
    for _ in range(3):
        when = schedule.next_after(timing, when, ANCHOR)
        times.append(when.astimezone(UTC).hour)
    assert times == [0, 1, 2]  # 02:00 CEST, 02:00 CET, 03:00 CET


@pytest.mark.parametrize(
    ("macro", "after", "expected"),
    [
        ("@hourly", datetime(2026, 5, 5, 10, 20), datetime(2026, 5, 5, 11)),
        ("@daily", datetime(2026, 5, 5, 10, 20), datetime(2026, 5, 6)),
        ("@midnight", datetime(2026, 5, 5, 10, 20), datetime(2026, 5, 6)),
        ("@weekly", datetime(2026, 5, 5, 10, 20), datetime(2026, 5, 10)),  # a Sunday
        ("@monthly", datetime(2026, 5, 5, 10, 20), datetime(2026, 6, 1)),
        ("@yearly", datetime(2026, 5, 5, 10, 20), datetime(2027, 1, 1)),
        ("@annually", datetime(2026, 5, 5, 10, 20), datetime(2027, 1, 1)),
        ("@DAILY", datetime(2026, 5, 5, 10, 20), datetime(2026, 5, 6)),
    ],
)
def test_macros(macro: str, after: datetime, expected: datetime) -> None:
    timing = schedule.parse(macro, UTC)
    assert isinstance(timing, Cron)
    got = schedule.next_after(timing, after.replace(tzinfo=UTC), ANCHOR)
    assert got == expected.replace(tzinfo=UTC)


def test_the_next_time_is_strictly_after() -> None:
    timing = schedule.parse("*/5 * * * *", UTC)
    at = datetime(2026, 5, 5, 10, 5, tzinfo=UTC)
    assert schedule.next_after(timing, at, ANCHOR) == at + timedelta(minutes=5)
    almost = at - timedelta(microseconds=1)
    assert schedule.next_after(timing, almost, ANCHOR) == at


def test_every_counts_from_the_anchor() -> None:
    timing = schedule.parse("@every 90s", PARIS)
    assert timing == Every(90.0)
    assert schedule.next_after(timing, ANCHOR, ANCHOR) == ANCHOR + timedelta(seconds=90)
    late = ANCHOR + timedelta(seconds=200)  # a slow run does not shift the grid
    assert schedule.next_after(timing, late, ANCHOR) == ANCHOR + timedelta(seconds=270)
    exact = ANCHOR + timedelta(seconds=270)
    assert schedule.next_after(timing, exact, ANCHOR) == ANCHOR + timedelta(seconds=360)


def test_missed_times_are_counted() -> None:
    every = schedule.parse("@every 10s", UTC)
    start = ANCHOR + timedelta(seconds=10)
    assert schedule.count_between(every, start, start + timedelta(seconds=25), ANCHOR) == 2
    assert schedule.count_between(every, start, start + timedelta(seconds=9), ANCHOR) == 0
    assert schedule.count_between(every, start, start + timedelta(seconds=10), ANCHOR) == 1
    cron = schedule.parse("* * * * *", UTC)
    assert schedule.count_between(cron, ANCHOR, ANCHOR + timedelta(minutes=3), ANCHOR) == 3
    year = ANCHOR + timedelta(days=365)
    assert schedule.count_between(cron, ANCHOR, year, ANCHOR) == schedule.MAX_COUNTED
    assert schedule.count_between(every, year, ANCHOR, ANCHOR) == 0


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "has 4 fields"),
        ("0 0 * * * *", "has 6 fields"),  # cronsim's seconds field is not cron's
        ("@often", "not a known macro"),
        ("61 * * * *", "Bad minute"),
        ("0 0 30 2 *", "Bad day-of-month"),
        ("@every 500ms", "too short"),
        ("@every soon", "is not a duration"),
    ],
)
def test_bad_expressions_say_why(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        schedule.parse(expression, UTC)


def test_the_containers_zone_is_tz_else_utc() -> None:
    assert schedule.zone_named(None, {}) is UTC
    assert schedule.zone_named(None, {"TZ": "Europe/Paris"}) == PARIS
    assert schedule.zone_named(None, {"TZ": ":Europe/Paris"}) == PARIS
    assert schedule.zone_named(None, {"TZ": "Nowhere/Special"}) is UTC
    assert schedule.zone_named("Europe/Paris", {"TZ": "Asia/Tokyo"}) == PARIS
    with pytest.raises(ScheduleError, match="time zone database"):
        schedule.zone_named("Nowhere/Special", {})


def test_zones_work_without_the_systems_zone_files() -> None:
    """A slim image has no /usr/share/zoneinfo: the tzdata package stands in."""
    code = (
        "import zoneinfo; from tinit import schedule;"
        " assert zoneinfo.TZPATH == ();"
        " print(schedule.zone_named('America/New_York', {}))"
    )
    env = {"PYTHONTZPATH": "", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "America/New_York"


# -- the config key ---------------------------------------------------------------


def _config(body: str) -> Any:
    text = "version: 1\nservices:\n" + body
    return parse_config(text, filename="/nonexistent/services.yaml", environ={}, offline=True)


def test_both_spellings_load_and_normalize_to_the_mapping() -> None:
    config = _config(
        "  a: {command: x, oneshot: true, schedule: '*/5  * * * *'}\n"
        "  b: {command: x, oneshot: true, run_at_start: true,"
        " schedule: {cron: '@daily', timezone: Europe/Paris}}\n"
    )
    a, b = config.services["a"], config.services["b"]
    assert (a.schedule.expression, a.schedule.timezone, a.run_at_start) == (
        "*/5 * * * *",
        None,
        False,
    )
    assert (b.schedule.expression, b.schedule.timezone, b.run_at_start) == (
        "@daily",
        "Europe/Paris",
        True,
    )
    document = to_document(config)
    assert document["services"]["b"]["schedule"] == {"cron": "@daily", "timezone": "Europe/Paris"}
    again = parse_config(
        json.dumps(document), filename="/nonexistent/x.yaml", environ={}, offline=True
    )
    assert again == config


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{command: x, schedule: '@daily'}", "only a oneshot runs on a schedule"),
        ("{command: x, oneshot: true, schedule: '0 3 * *'}", "has 4 fields"),
        ("{command: x, oneshot: true, schedule: {cron: '@daily', timezone: Mars/Base}}", "zone"),
        ("{command: x, oneshot: true, schedule: {timezone: UTC}}", "cron: is missing"),
        ("{command: x, oneshot: true, schedule: {cron: '@daily', tz: UTC}}", "tz"),
        ("{command: x, oneshot: true, run_at_start: true}", "only applies to a job with a sch"),
    ],
)
def test_mistakes_are_reported_at_check(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(f"  a: {body}\n")
    assert message in str(caught.value)


def test_run_mode_without_a_schedule_never_loads_the_cron_library() -> None:
    code = (
        "import sys; from tinit.config import parse_config;"
        " parse_config('version: 1\\nservices:\\n  a: {command: x, oneshot: true}\\n',"
        " filename='/x/s.yaml', offline=True);"
        " import tinit.service, tinit.command;"
        " print('cronsim' in sys.modules, 'tinit.schedule' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


# -- the run loop, on the mock clock ----------------------------------------------

#: 2026-05-05 10:00:00 UTC, where the mock clock's 0 is on the wall clock
WALL_ZERO = datetime(2026, 5, 5, 10, tzinfo=UTC).timestamp()


class Wall:
    """A wall clock that follows trio's mock clock, and can be stepped."""

    def __init__(self) -> None:
        self.offset = WALL_ZERO - trio.current_time()

    def __call__(self) -> float:
        return self.offset + trio.current_time()


@asynccontextmanager
async def scheduled(body: str, *scripts: Script) -> AsyncIterator[tuple[Harness, Wall]]:
    svc = service(body)
    log = TimedLog()
    wall = Wall()
    with _devnull_sinks() as (stdout, stderr):
        async with trio.open_nursery() as nursery:
            spawner = FakeSpawner(nursery, list(scripts) or [Script()])
            ctx = Context(
                reaper=Reaper(),
                log=make_logger("debug", "json", stream=log),
                stdout=stdout,
                stderr=stderr,
                width=3,
                pid1=True,
                spawner=spawner,
                random=NoJitter(),
                wall_clock=wall,
            )
            runner = ServiceRunner(svc, ctx, {})
            nursery.start_soon(runner.run)
            try:
                yield Harness(runner, spawner, log, ctx), wall
            finally:
                spawner.close()
                nursery.cancel_scope.cancel()


JOB = 'command: fake\noneshot: true\noutput: "null"\n'


async def test_every_runs_on_its_grid(autojump_clock: trio.testing.MockClock) -> None:
    async with scheduled(JOB + "schedule: '@every 10s'", Script(runs_for=1.0, code=0)) as (h, _):
        await trio.sleep(35)
        assert h.spawner.times("start") == [10_000, 20_000, 30_000]
        snap = h.runner.snapshot()
        assert snap.scheduled_runs == 3
        assert snap.schedule_skips == 0
        assert snap.next_run == WALL_ZERO + 40
        assert snap.last_exit is not None and snap.last_exit.code == 0
        assert snap.completed
        assert snap.ready


async def test_a_job_waiting_for_its_first_time_is_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A daily job must not hold a container's readiness back for a day."""
    async with scheduled(JOB + "schedule: '@daily'") as (h, _):
        await trio.sleep(5)
        assert h.runner.snapshot().ready
        assert h.spawner.times("start") == []


async def test_a_time_due_during_a_run_is_skipped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scheduled(JOB + "schedule: '@every 10s'", Script(runs_for=25.0, code=0)) as (h, _):
        await trio.sleep(36)
        # runs at 10s, goes on to 35s: 20s and 30s are skipped, 40s is next
        assert h.spawner.times("start") == [10_000]
        assert h.log.named("schedule_skipped")[0]["runs"] == 2
        assert h.log.times("schedule_skipped") == [35_000]
        assert h.runner.snapshot().schedule_skips == 2
        await trio.sleep(5)
        assert h.spawner.times("start") == [10_000, 40_000]


async def test_run_now_between_runs_keeps_the_next_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scheduled(JOB + "schedule: '@every 10s'", Script(runs_for=1.0, code=0)) as (h, _):
        await trio.sleep(3)
        assert h.runner.run_now()
        await trio.sleep(0.5)
        assert not h.runner.run_now()  # running: not twice at once
        await trio.sleep(8)
        assert h.spawner.times("start") == [3_000, 10_000]


async def test_run_now_before_the_schedule_begins_runs_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """What ``tinit start`` does to a stopped job: a new runner, asked to run at once."""
    async with scheduled(JOB + "schedule: '@every 10s'", Script(runs_for=1.0, code=0)) as (h, _):
        assert h.runner.run_now()
        await trio.sleep(15)
        assert h.spawner.times("start") == [0, 10_000]


async def test_run_at_start_runs_at_once(autojump_clock: trio.testing.MockClock) -> None:
    body = JOB + "schedule: '@every 10s'\nrun_at_start: true"
    async with scheduled(body, Script(runs_for=1.0, code=0)) as (h, _):
        await trio.sleep(15)
        assert h.spawner.times("start") == [0, 10_000]


async def test_cron_waits_for_the_wall_clock(autojump_clock: trio.testing.MockClock) -> None:
    """The wall clock is 10:00:00 at mock 0: ``*/2 * * * *`` runs at mock 120s, 240s."""
    async with scheduled(JOB + "schedule: '*/2 * * * *'", Script(runs_for=1.0, code=0)) as (h, _):
        await trio.sleep(250)
        assert h.spawner.times("start") == [120_000, 240_000]


async def test_a_wall_clock_step_forward_is_seen_within_a_nap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An hourly job; at mock 10s the wall clock jumps to 10:59:59: it runs at the next nap."""
    async with scheduled(JOB + "schedule: '@hourly'", Script(runs_for=1.0, code=0)) as (h, wall):
        await trio.sleep(10)
        wall.offset += 3589
        await trio.sleep(60)
        assert h.spawner.times("start") == [60_000]
        assert h.runner.snapshot().next_run == datetime(2026, 5, 5, 12, tzinfo=UTC).timestamp()


async def test_a_wall_clock_step_back_does_not_run_early(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scheduled(JOB + "schedule: '@hourly'", Script(runs_for=1.0, code=0)) as (h, wall):
        await trio.sleep(10)
        wall.offset -= 1800  # now 09:30:10; 11:00 is 90 minutes away
        await trio.sleep(3600 + 1800 - 20)
        assert h.spawner.times("start") == []
        await trio.sleep(30)
        assert h.spawner.times("start") == [5_400_000]


async def test_a_failed_run_is_retried_as_restart_says_and_the_next_time_still_comes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = JOB + "schedule: '@every 60s'\nrestart: on-failure\nmax_restarts: 1\n"
    body += "backoff: {initial: 1s, factor: 1, max: 1s}"
    async with scheduled(body, Script(runs_for=1.0, code=3)) as (h, _):
        await trio.sleep(125)
        # 60s fails, retried once at 62s, gives up; 120s again
        assert h.spawner.times("start") == [60_000, 62_000, 120_000, 122_000]
        assert h.runner.snapshot().scheduled_runs == 2
        assert not h.runner.finished.is_set()


async def test_a_stop_while_waiting_ends_it_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scheduled(JOB + "schedule: '@daily'") as (h, _):
        await trio.sleep(5)
        with trio.fail_after(1):
            await h.runner.stop()
        assert h.runner.outcome is Outcome.STOPPED
        assert h.spawner.times("start") == []
        assert not h.runner.run_now()


async def test_a_reload_changes_the_schedule_in_place(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scheduled(JOB + "schedule: '@every 10s'", Script(runs_for=1.0, code=0)) as (h, _):
        await trio.sleep(5)
        assert h.runner.update(service(JOB + "schedule: '@every 3s'"))
        await trio.sleep(7.5)
        # counted from the reload: 8s, 11s
        assert h.spawner.times("start") == [8_000, 11_000]
        assert h.runner.snapshot().next_run == WALL_ZERO + 14
        # a job that loses its schedule needs a runner of the other kind
        assert not h.runner.update(service(JOB))


async def test_a_reload_during_a_run_takes_effect_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scheduled(JOB + "schedule: '@every 10s'", Script(runs_for=4.0, code=0)) as (h, _):
        await trio.sleep(11)
        assert h.runner.update(service(JOB + "schedule: '@every 20s'"))
        await trio.sleep(30)
        # the run from 10s ends at 14s; from there every 20s: 34s
        assert h.spawner.times("start") == [10_000, 34_000]


# -- tinit as PID 1 ---------------------------------------------------------------


def cli(tinit: Tinit, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tinit_argv(*args), env=tinit.env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def status(tinit: Tinit) -> dict[str, dict[str, Any]]:
    done = cli(tinit, "status", "--json")
    assert done.returncode in (0, 1), done.stderr
    return {s["name"]: s for s in json.loads(done.stdout)}


def skips(tinit: Tinit, name: str) -> int:
    """The job's skips so far; 0 while tinit is not answering yet."""
    try:
        return int(status(tinit)[name].get("schedule_skips", 0))
    except (json.JSONDecodeError, AssertionError, KeyError):
        return 0


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_every_second_appends_and_status_shows_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "ticks"
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          tick:
            command: "sh -c 'date +%s.%N >> {out}'"
            oneshot: true
            schedule: "@every 1s"
          idle:
            command: "sleep 600"
        """,
    )
    tinit = start(config)
    try:
        assert wait_for(lambda: len(lines(out)) >= 2, timeout=4.5)
        services = status(tinit)
        tick = services["tick"]
        assert 0 <= tick["next_run_in"] <= 1.0
        assert tick["next_run"].endswith("Z")
        assert tick["scheduled_runs"] >= 2
        assert "next_run" not in services["idle"]
        table = cli(tinit, "status").stdout
        assert "NEXT-RUN" in table
        assert "in 0s" in table or "in 1s" in table
    finally:
        tinit.signal(15)
        result = finish(tinit)
    assert result.code == 0
    times = [float(t) for t in lines(out)]
    assert all(b - a > 0.5 for a, b in itertools.pairwise(times))


def _started(tinit: Tinit, name: str) -> int:
    """How many runs of ``name`` tinit has started so far (its JSON events)."""
    return sum(
        1
        for line in tinit.stderr_so_far().splitlines()
        if '"service_starting"' in line and f'"service": "{name}"' in line
    )


def test_a_slow_job_is_skipped_and_start_runs_it_now(tmp_path: Path) -> None:
    slow, manual = tmp_path / "slow", tmp_path / "manual"
    config = write_config(
        tmp_path,
        f"""
        version: 1
        settings: {{health_listen: "127.0.0.1:18793"}}
        services:
          slow:
            command: "sh -c 'echo run >> {slow}; sleep 2.5'"
            oneshot: true
            schedule: "@every 1s"
          manual:
            command: "sh -c 'echo run >> {manual}'"
            oneshot: true
            schedule: "@yearly"
        """,
    )
    tinit = start(config)
    try:
        assert wait_for(lambda: skips(tinit, "slow") >= 1, timeout=8)
        assert lines(manual) == []
        assert cli(tinit, "status", "manual").returncode == 0  # waiting for its time is fine
        before = time.monotonic()
        assert cli(tinit, "start", "manual").returncode == 0
        assert wait_for(lambda: lines(manual) == ["run"], timeout=5)
        assert time.monotonic() - before < 3
        assert status(tinit)["manual"]["next_run_in"] > 86_400  # @yearly stays where it was
        assert cli(tinit, "stop", "manual").returncode == 0
        assert cli(tinit, "start", "manual").returncode == 0  # a stopped job runs now too
        assert wait_for(lambda: lines(manual) == ["run", "run"], timeout=5)
        metrics = subprocess.run(
            [sys.executable, "-c", "import urllib.request, sys; sys.stdout.write("
             "urllib.request.urlopen('http://127.0.0.1:18793/metrics').read().decode())"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
        assert 'tinit_service_schedule_skips_total{service="slow"}' in metrics
        assert 'tinit_service_scheduled_runs_total{service="manual"} 2' in metrics
        assert 'tinit_service_next_run_timestamp_seconds{service="manual"}' in metrics
        # Stop between runs: a run the shutdown cut short before its first
        # line would count as a start with nothing to show for it.
        wait_for(lambda: _started(tinit, "slow") == len(lines(slow)), timeout=5)
    finally:
        tinit.signal(15)
        result = finish(tinit)
    skipped = result.named("schedule_skipped", "slow")
    assert skipped and all(e["runs"] >= 1 for e in skipped)
    starts = result.named("service_starting", "slow")
    assert len(starts) == len(lines(slow))
    # no two runs of the slow job at once: each start comes after the previous exit
    events = [e["event"] for e in result.events if e.get("service") == "slow"]
    runs = [e for e in events if e in ("service_starting", "service_exited")]
    assert runs[: 2 * (len(runs) // 2)] == ["service_starting", "service_exited"] * (len(runs) // 2)
