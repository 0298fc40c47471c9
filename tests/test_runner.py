"""The service run loop on a fake process tree and trio's mock clock: timing to the millisecond.

``ServiceRunner`` runs for real here -- its loop, the restart decision,
probes and the stop sequence -- but the processes it starts are fakes: the
context's spawner hands it a scripted run that is at once the main process
and its process tree (tree.Spawner, tree.ProcessTree), and records what the
runner did to it at which mock time. Nothing else is faked; the health
probes are real TCP probes against a listener of the test. With trio's
autojump clock a minute of backoff takes no real time, so the schedule is
checked exactly, where the end-to-end tests (test_services.py) can only
check it loosely.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from tinit.config import parse_config
from tinit.errors import SpawnError
from tinit.logs import make_logger
from tinit.operate import Operator
from tinit.output import Sink
from tinit.reaper import Reaper
from tinit.service import Context, ServiceRunner
from tinit.state import ExitStatus, Outcome, Snapshot, State

if TYPE_CHECKING:
    from tinit.cgroups import ServiceCgroup
    from tinit.config import Service
    from tinit.spawn import ChildSpec

pytestmark = pytest.mark.timeout(30)

SIGTERM = int(signal.SIGTERM)
SIGKILL = int(signal.SIGKILL)


@pytest.fixture(autouse=True)
def _no_fd_left_open() -> Iterator[None]:
    """The runner closes every pipe and fd of a run, the fakes included."""
    before = set(os.listdir("/proc/self/fd"))
    yield
    assert set(os.listdir("/proc/self/fd")) <= before


def ms(t: float) -> int:
    """A mock time in whole milliseconds (sums of float seconds are not exact)."""
    return round(t * 1000)


# -- the fakes ------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """How one fake run behaves, in mock time from its start."""

    #: exits by itself after this long with ``code``; None: runs until stopped
    runs_for: float | None = None
    code: int = 1
    #: after a signal, dies of it this much later; None: ignores signals
    dies_after: float | None = 0.0
    #: signals it handles and lives on
    survives: frozenset[int] = frozenset()
    #: writes the notify_fd newline this long after the start; None: never
    ready_after: float | None = None
    #: leaves a process behind that only SIGKILL ends
    leftover: bool = False
    #: the start itself fails (spawner raises), or the exec fails (wait_exec raises)
    start_error: SpawnError | None = None
    exec_error: SpawnError | None = None


class FakeRun:
    """One scripted run: its main process (tree.Process), its tree and its launch."""

    def __init__(self, pid: int, script: Script, spawner: FakeSpawner, notify: int | None) -> None:
        self.pid = self.pgid = pid
        self.status: ExitStatus | None = None
        self._script = script
        self._spawner = spawner
        self._notify = notify
        self._exited = trio.Event()
        self._leftover = script.leftover
        self._leftover_gone = trio.Event()
        if not script.leftover:
            self._leftover_gone.set()

    @property
    def process(self) -> FakeRun:
        return self

    @property
    def tree(self) -> FakeRun:
        return self

    async def wait_exec(self) -> None:
        if self._script.exec_error is not None:
            self.exit(ExitStatus(code=self._script.exec_error.exit_code))
            raise self._script.exec_error

    async def wait(self) -> ExitStatus:
        await self._exited.wait()
        assert self.status is not None
        return self.status

    async def live(self) -> None:
        script = self._script
        if script.ready_after is not None:
            await trio.sleep(script.ready_after)
            if self.status is None and self._notify is not None:
                os.write(self._notify, b"\n")
        if script.runs_for is not None:
            await trio.sleep(script.runs_for - (script.ready_after or 0.0))
            self.exit(ExitStatus(code=script.code))

    def exit(self, status: ExitStatus) -> None:
        if self.status is not None:
            return
        self.status = status
        self._spawner.record("exit", status.code if status.signal is None else status.signal)
        if self._notify is not None:
            os.close(self._notify)  # what the kernel does to a dead process's fds
            self._notify = None
        self._exited.set()

    # tree.ProcessTree

    def alive(self) -> bool:
        return self.status is None or self._leftover

    def signal_group(self, signum: int) -> None:
        self._spawner.record("signal", signum)
        self._on_signal(signum)

    def signal_all(self, signum: int) -> None:
        self._spawner.record("signal_all", signum)
        self._on_signal(signum)

    def kill(self) -> None:
        self._spawner.record("kill")
        self.exit(ExitStatus(signal=SIGKILL))
        self._leftover = False
        self._leftover_gone.set()

    def count_others(self) -> int:
        return int(self._leftover)

    def holds(self, pid: int) -> bool:
        return pid == self.pid and self.status is None

    async def wait_gone(self, *, pass_on: int | None = None) -> None:
        await self.wait()
        await self._leftover_gone.wait()

    def _on_signal(self, signum: int) -> None:
        delay = self._script.dies_after
        if delay is not None and self.status is None and signum not in self._script.survives:
            self._spawner.nursery.start_soon(self._die_after, delay, signum)

    async def _die_after(self, delay: float, signum: int) -> None:
        await trio.sleep(delay)
        self.exit(ExitStatus(signal=signum))


@dataclass
class FakeSpawner:
    """Starts scripted runs (the last script repeats) and logs what happens, in mock ms."""

    nursery: trio.Nursery
    scripts: list[Script]
    events: list[tuple[Any, ...]] = field(default_factory=list)
    specs: list[ChildSpec] = field(default_factory=list)
    runs: list[FakeRun] = field(default_factory=list)

    def record(self, *what: Any) -> None:
        self.events.append((ms(trio.current_time()), *what))

    def start(self, spec: ChildSpec, cgroup: ServiceCgroup | None) -> FakeRun:
        script = self.scripts[min(len(self.specs), len(self.scripts) - 1)]
        self.specs.append(spec)
        if script.start_error is not None:
            self.record("start_failed")
            raise script.start_error
        notify = os.dup(spec.pass_fds[3]) if 3 in spec.pass_fds else None
        run = FakeRun(1000 + len(self.runs), script, self, notify)
        self.runs.append(run)
        self.record("start")
        self.nursery.start_soon(run.live)
        return run

    def times(self, what: str) -> list[int]:
        return [event[0] for event in self.events if event[1] == what]

    def close(self) -> None:
        for run in self.runs:
            if run.status is None:
                run.exit(ExitStatus(signal=SIGKILL))


class TimedLog(io.StringIO):
    """tinit's JSON events, each with the mock time it was written at."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[int, dict[str, Any]]] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        self.events.extend((ms(trio.current_time()), json.loads(line)) for line in lines if line)
        return len(text)

    def times(self, event: str) -> list[int]:
        return [t for t, e in self.events if e["event"] == event]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if e["event"] == event]


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return 0.0


def service(body: str) -> Service:
    """Service ``svc`` of a config whose service body is ``body`` (YAML)."""
    text = "version: 1\nservices:\n  svc:\n" + textwrap.indent(textwrap.dedent(body), "    ")
    config = parse_config(text, filename="/nonexistent/services.yaml", environ={}, offline=True)
    return config.services["svc"]


@dataclass
class Harness:
    runner: ServiceRunner
    spawner: FakeSpawner
    log: TimedLog
    ctx: Context


@contextmanager
def _devnull_sinks() -> Iterator[tuple[Sink, Sink]]:
    fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    sinks = (Sink.for_fd(fd), Sink.for_fd(fd))
    try:
        yield sinks
    finally:
        for sink in sinks:
            sink.close()
        os.close(fd)


@asynccontextmanager
async def running(
    svc: Service, *scripts: Script, rng: random.Random | None = None
) -> AsyncIterator[Harness]:
    """``svc``'s runner running on fake runs; everything is torn down on the way out."""
    log = TimedLog()
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
                random=rng or NoJitter(),
            )
            runner = ServiceRunner(svc, ctx, {})
            nursery.start_soon(runner.run)
            try:
                yield Harness(runner, spawner, log, ctx)
            finally:
                spawner.close()
                nursery.cancel_scope.cancel()


async def sleep_until(t: float) -> None:
    await trio.sleep_until(t)


# -- restarts -------------------------------------------------------------------


async def test_backoff_grows_by_factor_up_to_max_then_gives_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each failed run waits initial * factor**n, capped at max; past max_restarts it ends."""
    svc = service("""
        command: fake
        output: "null"
        max_restarts: 6
        backoff: {initial: 100ms, factor: 2, max: 1s, reset_after: 30s}
    """)
    async with running(svc, Script(runs_for=0.010, code=3)) as h:
        await h.runner.finished.wait()
    delays = [100, 200, 400, 800, 1000, 1000]
    starts = [0]
    for delay in delays:
        starts.append(starts[-1] + 10 + delay)
    assert h.spawner.times("start") == starts
    assert [e["delay"] for e in h.log.named("service_restarting")] == [d / 1000 for d in delays]
    assert h.log.times("service_gave_up") == [starts[-1] + 10]
    assert h.log.named("service_gave_up")[0]["failures"] == 7
    assert h.runner.outcome is Outcome.FAILED
    assert h.runner.state is State.FAILED
    assert h.runner.restarts == 6
    assert h.runner.last_status == ExitStatus(code=3)
    assert h.runner.exits == {"3": 7}


async def test_jitter_scales_each_delay_by_at_most_a_fifth(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = service("""
        command: fake
        output: "null"
        max_restarts: 4
        backoff: {initial: 1s, factor: 3, max: 1m}
    """)
    async with running(svc, Script(runs_for=0.5), rng=random.Random(7)) as h:
        await h.runner.finished.wait()
    twin = random.Random(7)
    expected = [round(3**n * (1.0 + 0.2 * twin.uniform(-1.0, 1.0)), 3) for n in range(4)]
    assert [e["delay"] for e in h.log.named("service_restarting")] == expected
    exits, starts = h.spawner.times("exit"), h.spawner.times("start")
    gaps = [b - a for a, b in zip(exits[:4], starts[1:], strict=True)]
    assert gaps == [round(d * 1000) for d in expected]
    assert all(0.8 * 3**n <= d <= 1.2 * 3**n for n, d in enumerate(expected))
    assert len(set(expected)) == 4  # the jitter was drawn anew for each delay


async def test_a_run_that_stayed_up_reset_after_restarts_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Failures count again from one after a run of reset_after; a shorter run does not reset."""
    svc = service("""
        command: fake
        output: "null"
        backoff: {initial: 100ms, factor: 2, max: 10s, reset_after: 1s}
    """)
    scripts = [
        Script(runs_for=0.010),
        Script(runs_for=0.010),
        Script(runs_for=0.900),  # short of reset_after: the backoff keeps growing
        Script(runs_for=1.100),  # reset_after reached: back to the first delay
        Script(runs_for=0.010),
        Script(),
    ]
    async with running(svc, *scripts) as h:
        while len(h.spawner.runs) < 6:
            await trio.sleep(0.1)
        await h.runner.stop()
    assert [e["delay"] for e in h.log.named("service_restarting")] == [0.1, 0.2, 0.4, 0.1, 0.2]
    assert h.spawner.times("start") == [0, 110, 320, 1620, 2820, 3030]
    assert [e["uptime"] for e in h.log.named("service_exited")][:5] == [
        0.01,
        0.01,
        0.9,
        1.1,
        0.01,
    ]
    assert h.runner.outcome is Outcome.STOPPED


async def test_max_restarts_zero_never_restarts(autojump_clock: trio.testing.MockClock) -> None:
    svc = service("""
        command: fake
        output: "null"
        max_restarts: 0
    """)
    async with running(svc, Script(runs_for=0.25, code=1)) as h:
        await h.runner.finished.wait()
    assert h.spawner.times("start") == [0]
    assert h.log.times("service_gave_up") == [250]
    assert h.runner.outcome is Outcome.FAILED


async def test_an_exit_code_in_success_exit_codes_completes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    done = service("""
        command: fake
        output: "null"
        max_restarts: 0
        success_exit_codes: [0, 3]
    """)
    async with running(done, Script(runs_for=0.25, code=3)) as h:
        await h.runner.finished.wait()
    assert h.spawner.times("start") == [0]
    assert h.runner.outcome is Outcome.COMPLETED
    assert h.runner.state is State.EXITED
    assert h.runner.condition_met("completed")


async def test_a_failed_start_counts_as_a_failure_and_backs_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No such command (spawner) and a failed exec (after the fork) both cost a restart."""
    svc = service("""
        command: fake
        output: "null"
        max_restarts: 2
        backoff: {initial: 300ms, factor: 2}
    """)
    missing = SpawnError("fake", 2, "No such file or directory")
    denied = SpawnError("fake", 13, "Permission denied")
    async with running(svc, Script(start_error=missing), Script(exec_error=denied)) as h:
        await h.runner.finished.wait()
    assert h.spawner.times("start_failed") == [0]
    assert h.spawner.times("start") == [300, 900]
    codes = [e["exit_code"] for e in h.log.named("service_start_failed")]
    assert codes == [127, 126, 126]
    assert h.log.times("service_gave_up") == [900]
    assert h.runner.last_status == ExitStatus(code=126)
    assert not h.runner.ever_started


# -- readiness and health -------------------------------------------------------


async def test_not_ready_within_start_timeout_is_stopped_and_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = service("""
        command: fake
        output: "null"
        ready: {notify_fd: 3, start_timeout: 500ms}
        backoff: {initial: 100ms}
    """)
    never_ready = Script(dies_after=0.020)
    ready = Script(ready_after=0.200)
    async with running(svc, never_ready, ready) as h:
        await sleep_until(5.0)
        assert h.runner.state is State.RUNNING
        assert h.runner.snapshot().ready
        await h.runner.stop()
    assert h.log.times("service_not_ready") == [500]
    assert h.spawner.events[:4] == [
        (0, "start"),
        (500, "signal", SIGTERM),
        (520, "exit", SIGTERM),
        (620, "start"),
    ]
    assert h.log.times("service_ready") == [820]
    assert h.spawner.specs[0].pass_fds.keys() == {3}


async def test_ready_probe_polls_every_interval_until_it_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    port = _free_port()
    svc = service(f"""
        command: fake
        output: "null"
        ready: {{tcp: "127.0.0.1:{port}", interval: 200ms, start_timeout: 5s}}
    """)
    async with running(svc) as h:
        h.spawner.nursery.start_soon(_serve_port, port, [(0.750, 10.0)])
        await sleep_until(1.0)
        assert h.runner.state is State.RUNNING
        await h.runner.stop()
    assert h.log.times("service_ready") == [800]  # the probes at 0-600 ms found no port
    assert h.log.times("service_not_ready") == []


async def test_health_probe_interval_and_failures_threshold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A probe every interval; misses reset on success; `failures` misses in a row end the run."""
    port = _free_port()
    svc = service(f"""
        command: fake
        output: "null"
        health: {{tcp: "127.0.0.1:{port}", interval: 1s, failures: 3}}
        max_restarts: 0
        stop_timeout: 10s
    """)
    up_during = [(0.0, 2.5), (3.5, 4.5)]  # answers at 1, 2 and 4 s; misses 3, 5, 6, 7 s
    async with running(svc, Script(dies_after=0.050)) as h:
        h.spawner.nursery.start_soon(_serve_port, port, up_during)
        await h.runner.finished.wait()
    failed = h.log.named("health_check_failed")
    assert h.log.times("health_check_failed") == [3000, 5000, 6000, 7000]
    assert [e["misses"] for e in failed] == [1, 1, 2, 3]
    assert h.log.times("service_unhealthy") == [7000]
    assert h.spawner.events == [
        (0, "start"),
        (7000, "signal", SIGTERM),
        (7050, "exit", SIGTERM),
    ]
    assert h.runner.outcome is Outcome.FAILED


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _serve_port(port: int, windows: list[tuple[float, float]]) -> None:
    """Listen on ``port`` during each (from, to) window of mock time."""
    for start, end in windows:
        await sleep_until(start)
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        try:
            await sleep_until(end)
        finally:
            for listener in listeners:
                await listener.aclose()


# -- stopping -------------------------------------------------------------------


async def test_stop_timeout_escalates_to_sigkill(autojump_clock: trio.testing.MockClock) -> None:
    svc = service("""
        command: fake
        output: "null"
        stop_signal: SIGTERM
        stop_timeout: 2s
    """)
    async with running(svc, Script(dies_after=None)) as h:
        await sleep_until(1.0)
        await h.runner.stop()
        stopped_at = ms(trio.current_time())
    assert h.spawner.events == [
        (0, "start"),
        (1000, "signal", SIGTERM),
        (3000, "kill"),
        (3000, "exit", SIGKILL),
    ]
    assert stopped_at == 3000
    assert h.log.named("service_killed")[0]["stop_timeout"] == 2.0
    assert h.runner.killed
    assert h.runner.outcome is Outcome.STOPPED
    assert h.runner.state is State.STOPPED


async def test_a_service_that_stops_in_time_is_not_killed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = service("""
        command: fake
        output: "null"
        stop_signal: SIGINT
        stop_timeout: 2s
    """)
    async with running(svc, Script(dies_after=1.999)) as h:
        await sleep_until(1.0)
        await h.runner.stop()
        stopped_at = ms(trio.current_time())
    assert h.spawner.events == [(0, "start"), (1000, "signal", 2), (2999, "exit", 2)]
    assert stopped_at == 2999
    assert not h.runner.killed


async def test_the_shutdown_deadline_cuts_stop_timeout_short(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = service("""
        command: fake
        output: "null"
        stop_timeout: 10s
    """)
    async with running(svc, Script(dies_after=None)) as h:
        await sleep_until(1.0)
        h.ctx.deadline = 1.5
        await h.runner.stop()
    assert h.spawner.times("kill") == [1500]


async def test_leftovers_of_a_run_are_stopped_before_the_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The main process exits; what it left gets the stop signal, SIGKILL at stop_timeout."""
    svc = service("""
        command: fake
        output: "null"
        stop_timeout: 700ms
        backoff: {initial: 100ms}
    """)
    stubborn = Script(runs_for=0.200, leftover=True, dies_after=None)
    async with running(svc, stubborn, Script()) as h:
        while len(h.spawner.runs) < 2:
            await trio.sleep(0.1)
        await h.runner.stop()
    assert h.spawner.events[:5] == [
        (0, "start"),
        (200, "exit", 1),
        (200, "signal_all", SIGTERM),
        (900, "kill"),
        (1000, "start"),
    ]
    # the exit is reported once nothing of the run is left, with the main process's uptime
    assert h.log.times("service_exited")[0] == 900
    assert h.log.named("service_exited")[0]["uptime"] == 0.2
    left = h.log.named("service_left_processes")
    assert [(e["processes"], e["signal"], e["killed"], e["level"]) for e in left] == [
        (1, "SIGTERM", True, "info")
    ]
    assert h.log.times("service_left_processes") == [900]
    assert not h.log.named("oneshot_left_processes")


async def test_a_oneshot_that_leaves_processes_says_so_with_a_hint(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = service("""
        command: fake
        output: "null"
        oneshot: true
        stop_timeout: 1s
    """)
    daemon = Script(runs_for=0.2, code=0, leftover=True)  # only SIGKILL ends the leftover
    async with running(svc, daemon) as h:
        await h.runner.finished.wait()
    assert h.spawner.events == [
        (0, "start"),
        (200, "exit", 0),
        (200, "signal_all", SIGTERM),
        (1200, "kill"),
    ]
    [event] = h.log.named("oneshot_left_processes")
    assert h.log.times("oneshot_left_processes") == [1200]
    assert (event["level"], event["processes"], event["signal"], event["killed"]) == (
        "warning",
        1,
        "SIGTERM",
        True,
    )
    assert "foreground" in event["hint"]
    assert h.runner.outcome is Outcome.COMPLETED


# -- what the control side reads -------------------------------------------------


async def test_snapshot_follows_the_run(autojump_clock: trio.testing.MockClock) -> None:
    svc = service("""
        command: fake
        output: "null"
        backoff: {initial: 1s}
    """)
    async with running(svc, Script(runs_for=0.5), Script()) as h:
        await sleep_until(0.25)
        first = h.runner.snapshot()
        await sleep_until(0.75)
        between = h.runner.snapshot()
        await sleep_until(2.0)
        second = h.runner.snapshot()
        await h.runner.stop()
        stopped = h.runner.snapshot()
    assert (first.state, first.pid, first.started_at, first.ready) == (
        State.RUNNING,
        1000,
        0.0,
        True,
    )
    assert (between.state, between.pid, between.started_at, between.ready) == (
        State.BACKOFF,
        None,
        None,
        False,
    )
    assert between.last_exit == ExitStatus(code=1)
    assert between.restarts == 1
    assert (second.state, second.pid, ms(second.started_at or 0)) == (State.RUNNING, 1001, 1500)
    assert (stopped.state, stopped.outcome, stopped.exits) == (
        State.STOPPED,
        Outcome.STOPPED,
        {"1": 1, "SIGTERM": 1},
    )
    assert not stopped.completed


async def test_a_completed_oneshot_is_ready_and_completed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = service("""
        command: fake
        output: "null"
        oneshot: true
    """)
    async with running(svc, Script(runs_for=0.3, code=0)) as h:
        await h.runner.finished.wait()
        snap = h.runner.snapshot()
    assert snap == Snapshot(
        name="svc",
        state=State.EXITED,
        pid=None,
        started_at=None,
        restarts=0,
        last_exit=ExitStatus(code=0),
        last_oom=False,
        ready=True,
        held=False,
        completed=True,
        outcome=Outcome.COMPLETED,
        oom_kills=0,
        exits={"0": 1},
        log_bytes=h.runner.ring.size,
    )


@dataclass
class OneService:
    """The supervisor as an operator sees it (operate.Supervised), over one runner."""

    runners: dict[str, ServiceRunner]
    critical_failed: bool = False
    orphans_reaped: int = 4
    started_at: float = 0.0

    async def start_service(self, name: str) -> None:
        raise AssertionError("not asked for")

    async def stop_service(self, name: str) -> None:
        await self.runners[name].stop()

    async def restart_service(self, name: str) -> None:
        raise AssertionError("not asked for")

    async def reload(self) -> dict[str, list[str]]:
        raise AssertionError("not asked for")


async def test_what_operators_read_of_a_runner(autojump_clock: trio.testing.MockClock) -> None:
    """Status, health and metrics, from the runner's snapshot, as the control socket sends them."""
    svc = service("""
        command: fake
        output: "null"
        backoff: {initial: 1s}
    """)
    handles_usr1 = Script(survives=frozenset({int(signal.SIGUSR1)}))
    async with running(svc, Script(runs_for=0.5, code=3), handles_usr1) as h:
        operator = Operator(OneService({"svc": h.runner}))
        await sleep_until(1.75)
        h.runner.ring.add("stdout", b"hello\n")
        status = operator.status([])
        health = operator.health()
        metrics = operator.metrics()
        operator.send_signal(int(signal.SIGUSR1), ["svc"])
        await operator.stop(["svc"])
        stopped = operator.status(["svc"])[0]
        with pytest.raises(KeyError):
            operator.status(["nope"])
    assert status == [
        {
            "name": "svc",
            "state": "running",
            "pid": 1001,
            "uptime": 0.25,
            "restarts": 1,
            "last_exit": {"exit_code": 3, "signal": None},
            "ready": True,
            "held": False,
            "memory": None,
            "pids": None,
            "cpu_usec": None,
            "oom_kills": 0,
            "completed": False,
            "log_bytes": h.runner.ring.size,
            "log_rotations": 0,
        }
    ]
    assert h.runner.ring.size > 0
    assert health == (True, True)
    assert metrics.orphans_reaped_total == 4
    assert metrics.uptime_seconds == 1.75
    assert metrics.services[0].up
    assert metrics.services[0].exits_total == {"3": 1}
    assert metrics.services[0].restarts_total == 1
    assert (1750, "signal", int(signal.SIGUSR1)) in h.spawner.events
    assert stopped["state"] == "stopped"
    assert (stopped["pid"], stopped["uptime"], stopped["ready"]) == (None, None, False)
    assert stopped["held"] is True
    assert stopped["last_exit"] == {"exit_code": None, "signal": "SIGTERM"}


# -- what counts as a failure for status and /readyz -----------------------------


async def test_a_service_stopped_by_an_operator_is_down_on_purpose(
    autojump_clock: trio.testing.MockClock,
) -> None:
    svc = service("""
        command: fake
        output: "null"
    """)
    async with running(svc, Script()) as h:
        operator = Operator(OneService({"svc": h.runner}))
        await sleep_until(0.5)
        assert operator.health() == (True, True)
        await operator.stop(["svc"])
        snap = h.runner.snapshot()
        health = operator.health()
    assert (snap.state, snap.outcome, snap.ready, snap.held) == (
        State.STOPPED,
        Outcome.STOPPED,
        False,
        True,
    )
    assert health == (True, True)


async def test_a_stop_that_is_not_an_operators_still_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A shutdown or a reload stops runners directly: they are not held."""
    svc = service("""
        command: fake
        output: "null"
    """)
    async with running(svc, Script()) as h:
        operator = Operator(OneService({"svc": h.runner}))
        await sleep_until(0.5)
        await h.runner.stop()
        snap = h.runner.snapshot()
        health = operator.health()
    assert (snap.state, snap.held) == (State.STOPPED, False)
    assert health == (True, False)


@pytest.mark.parametrize(
    ("script", "at", "state"),
    [
        pytest.param(Script(runs_for=0.1, code=3), 0.5, State.BACKOFF, id="backing-off"),
        pytest.param(Script(runs_for=0.1, code=3), 30.0, State.FAILED, id="gave-up"),
    ],
)
async def test_a_failing_service_is_not_ready(
    autojump_clock: trio.testing.MockClock, script: Script, at: float, state: State
) -> None:
    svc = service("""
        command: fake
        output: "null"
        max_restarts: 2
        backoff: {initial: 1s, factor: 1}
    """)
    async with running(svc, script) as h:
        operator = Operator(OneService({"svc": h.runner}))
        await sleep_until(at)
        snap = h.runner.snapshot()
        health = operator.health()
        # stopping what already gave up changes nothing: it is still a failure
        await operator.stop(["svc"])
        after = h.runner.snapshot()
        health_after = operator.health()
    assert (snap.state, snap.held) == (state, False)
    assert health == (True, False)
    if state is State.FAILED:
        assert (after.state, after.outcome, after.held) == (State.FAILED, Outcome.FAILED, False)
        assert health_after == (True, False)
    else:  # an operator stopping a crash loop: down on purpose now
        assert (after.state, after.held) == (State.STOPPED, True)
        assert health_after == (True, True)


async def test_a_service_stopped_while_waiting_for_a_dependency_is_stopped_not_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    text = """
        version: 1
        services:
          db: {command: fake, output: "null"}
          app: {command: fake, output: "null", depends_on: {db: ready}}
    """
    config = parse_config(
        textwrap.dedent(text), filename="/nonexistent/services.yaml", environ={}, offline=True
    )
    with _devnull_sinks() as (stdout, stderr):
        async with trio.open_nursery() as nursery:
            ctx = Context(
                reaper=Reaper(),
                log=make_logger("debug", "json", stream=TimedLog()),
                stdout=stdout,
                stderr=stderr,
                width=3,
                pid1=True,
                spawner=FakeSpawner(nursery, [Script()]),
            )
            peers: dict[str, ServiceRunner] = {}
            # db is never run: app waits for it for ever, until it is stopped
            peers["db"] = ServiceRunner(config.services["db"], ctx, peers)
            app = peers["app"] = ServiceRunner(config.services["app"], ctx, peers)
            nursery.start_soon(app.run)
            await trio.sleep(1.0)
            assert app.state is State.PENDING
            app.hold()
            await app.stop()
    assert (app.state, app.outcome, app.snapshot().held) == (State.STOPPED, Outcome.STOPPED, True)
