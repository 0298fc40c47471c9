"""A runner takes a reload's new config in place: the process runs on, the new policy applies.

The run loop on the fake process tree and mock clock of test_runner.py: the
schedule shows which stop_timeout, backoff and limits were in force.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from tests.test_runner import (
    SIGKILL,
    SIGTERM,
    Script,
    _free_port,
    ms,
    running,
    service,
    sleep_until,
)
from tinit.cgroups import ServiceCgroup
from tinit.config import Backoff, Limits, TcpProbe
from tinit.state import Outcome, State

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(30)


async def test_a_new_stop_timeout_applies_to_the_running_process(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = service("""
        command: fake
        output: "null"
        stop_timeout: 10s
    """)
    async with running(svc, Script(dies_after=None)) as h:
        await sleep_until(1.0)
        assert h.runner.update(dataclasses.replace(svc, stop_timeout=2.0))
        await sleep_until(3.0)
        await h.runner.stop()
    # killed 2 s after the stop signal, not 10: one run, the same process
    assert h.spawner.events == [
        (0, "start"),
        (3000, "signal", SIGTERM),
        (5000, "kill"),
        (5000, "exit", SIGKILL),
    ]
    assert h.log.named("service_killed")[0]["stop_timeout"] == 2.0


async def test_a_new_backoff_sets_the_next_delay(autojump_clock: trio.testing.MockClock) -> None:
    svc = service("""
        command: fake
        output: "null"
        backoff: {initial: 10s, max: 1m}
        max_restarts: 1
    """)
    async with running(svc, Script(runs_for=1.0, code=1)) as h:
        await sleep_until(0.5)
        new = dataclasses.replace(svc, backoff=Backoff(initial=0.25, max=1.0), max_restarts=2)
        assert h.runner.update(new)
        await h.runner.finished.wait()
    # each run lasts 1 s, then waits 0.25 s, 0.5 s: the new backoff and max_restarts
    assert h.spawner.times("start") == [0, 1250, 2750]
    assert h.runner.restarts == 2
    assert h.runner.state is State.FAILED


async def test_new_limits_are_written_to_the_live_cgroup(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    for name in ("memory.max", "memory.oom.group", "pids.max"):
        (tmp_path / name).write_text("")  # a plain file: a write does not replace the old value
    (tmp_path / "cpu.max").write_text("max\n")
    svc = service("""
        command: fake
        output: "null"
        limits: {memory: 64M}
    """)
    async with running(svc, Script()) as h:
        await sleep_until(1.0)
        h.runner.cgroup = ServiceCgroup("svc", str(tmp_path), frozenset({"memory", "pids"}))
        new = dataclasses.replace(svc, limits=Limits(memory=32 * 2**20, pids=5))
        assert h.runner.update(new)
        assert (tmp_path / "memory.max").read_text() == str(32 * 2**20)
        assert (tmp_path / "pids.max").read_text() == "5"
        assert (tmp_path / "cpu.max").read_text() == "max\n"  # no cpu controller: untouched
        h.runner.cgroup = None  # not the runner's to remove
        assert h.spawner.times("start") == [0]
        await h.runner.stop()
    assert ms(trio.current_time()) == 1000


async def test_a_runner_waiting_for_new_dependencies_is_replaced_not_updated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Its wait is for the old dependencies; a new runner, with no process to lose, waits anew."""
    svc = service("""
        command: fake
        output: "null"
    """)
    async with running(svc, Script()) as h:
        h.runner.state = State.PENDING  # as while it waits for its dependencies
        assert not h.runner.update(dataclasses.replace(svc, depends_on={"db": "started"}))
        assert h.runner.service is svc
        assert h.runner.update(dataclasses.replace(svc, stop_timeout=1.0))
        await h.runner.stop()


async def test_a_health_check_added_in_place_checks_the_running_process(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No check at the start; the reload's check runs from its first interval on."""
    svc = service("""
        command: fake
        output: "null"
        max_restarts: 0
    """)
    closed = ("127.0.0.1", _free_port())
    health = TcpProbe(interval=1.0, timeout=0.1, start_timeout=None, failures=2, address=closed)
    async with running(svc, Script(dies_after=0.050)) as h:
        await sleep_until(0.5)
        assert h.runner.update(dataclasses.replace(svc, health=health))
        with trio.fail_after(60):
            await h.runner.finished.wait()
    assert h.log.times("health_check_failed") == [1500, 2500]
    assert h.spawner.events == [(0, "start"), (2500, "signal", SIGTERM), (2550, "exit", SIGTERM)]
    assert h.runner.outcome is Outcome.FAILED
