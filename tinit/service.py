"""One service's life: wait for dependencies, spawn, probe, stop, restart.

In trio the control flow is the state machine: ``run`` is a ``while
want_up`` loop of spawn -> wait -> decide -> back off, and
:class:`~tinit.state.State` only reports where that loop is. "Want" is kept
apart from "is": a stop request flips ``want_up`` and wakes whatever the loop
is waiting on; the loop itself stops the process.

A run of the service is over only when nothing of it is left: the main
process has exited and its process tree (tree.py: the cgroup, or the process
group) is empty. Whatever the main process leaves behind gets the stop
signal, then SIGKILL after ``stop_timeout``, before the service is restarted
or reported as exited, so stale children never pile up across restarts.

The runner reaches processes only through the context's
:class:`~tinit.tree.Spawner` and the :class:`~tinit.tree.ProcessTree` it
returns for each run; what the child is to be is built by childspec.py. The
control side reads a runner through :meth:`ServiceRunner.snapshot`.
"""

from __future__ import annotations

import errno
import math
import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import trio

from . import childspec, probes, sdnotify
from .config import NotifyFdProbe, SdNotifyProbe
from .errors import SpawnError, TinitError
from .listenfds import Inherited
from .notified import Notified
from .output import Output, Ring
from .state import ExitStatus, Outcome, Snapshot, State, decide, is_success, signal_name

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from . import schedule
    from .cgroups import Cgroups, ServiceCgroup
    from .config import Service
    from .logs import Log
    from .output import Sink
    from .reaper import Reaper
    from .tree import Launch, Process, ProcessTree, Spawner

#: How long a finished run's output may stand still before the rest is given up.
_OUTPUT_GRACE: Final = 5.0
#: The longest a scheduled job sleeps before it reads the wall clock again:
#: trio's clock does not move with the wall clock, which can be stepped.
_MAX_NAP: Final = 60.0

#: What a oneshot that leaves processes behind is told: it was likely meant as a service.
_ONESHOT_LEFTOVERS_HINT: Final = (
    "a oneshot is for a task that ends; run a daemon in the foreground"
    " (nginx -g 'daemon off;', no '&' or setsid) as a service of its own"
)


@dataclass
class Context:
    """What every service runner shares."""

    reaper: Reaper
    log: Log
    stdout: Sink
    stderr: Sink
    width: int
    pid1: bool
    #: starts each run's main process (tree.OsSpawner forks it)
    spawner: Spawner
    #: when the whole shutdown must be over (trio clock); inf until one begins
    deadline: float = math.inf
    #: a shutdown began: no run of any service starts from then on
    shutting_down: bool = False
    #: SIGKILLs sent to services since the shutdown began (tinit then exits 137)
    shutdown_kills: int = 0
    random: random.Random = field(default_factory=random.Random)
    #: the cgroup layout, or None when cgroups are off or unusable
    cgroups: Cgroups | None = None
    #: seconds since the epoch: what scheduled jobs' times are in (tests move it)
    wall_clock: Callable[[], float] = time.time
    #: the fds tinit was handed, for services' ``inherit_fds``
    inherited: Inherited = field(default_factory=Inherited)

    def count_kill(self) -> None:
        """Note a SIGKILL tinit sent: during a shutdown it decides the exit code."""
        if self.shutting_down:
            self.shutdown_kills += 1


class _StopWanted(Exception):
    """A run about to start is not started: a stop or a shutdown came first."""


class ServiceRunner:
    """Runs one configured service until it ends for good or is stopped."""

    def __init__(self, service: Service, ctx: Context, peers: dict[str, ServiceRunner]) -> None:
        self.service = service
        self.name = service.name
        self._ctx = ctx
        self._peers = peers
        self.log = ctx.log.bind(service=service.name)
        self.ring = Ring()
        #: what the service said over sd_notify (a ``ready: {sd_notify: true}`` service)
        self.notified = Notified(self.log)
        #: a disabled service stays so until an operator starts it (``enable``)
        self.state = State.DISABLED if service.disabled else State.PENDING
        self.want_up = True
        #: the main process and the process tree of the run going on
        self._main: Process | None = None
        self._tree: ProcessTree | None = None
        self.started_at: float | None = None
        self.restarts = 0
        self.failures = 0
        self.last_status: ExitStatus | None = None
        #: exits by code ("0", "1") or signal name ("SIGKILL"), for metrics
        self.exits: dict[str, int] = {}
        self.oom_kills = 0
        #: the cgroup of the current run, when cgroups are in use
        self.cgroup: ServiceCgroup | None = None
        self._oom_base = 0
        self._oom_this_run = 0
        #: the last run ended with an OOM kill in its cgroup
        self.last_oom = False
        #: how the service ended for good
        self.outcome: Outcome | None = None
        #: set when a stop had to use SIGKILL (the context counts it for the exit code)
        self.killed = False
        self.ever_started = False
        self.ever_ready = False
        #: an operator stopped it before it ended by itself (see :meth:`hold`)
        self.held = False
        self.finished = trio.Event()
        self._changed = trio.Event()
        self._wait_scope: trio.CancelScope | None = None
        self._stop_requested = trio.Event()
        self._terminating = False
        self._terminated = trio.Event()
        self._run_failed = False
        #: set (and replaced) each time a reload updates the service in place
        self._updated = trio.Event()
        # -- scheduled jobs
        #: when the next scheduled run is due (seconds since the epoch)
        self.next_run: float | None = None
        self.scheduled_runs = 0
        self.schedule_skips = 0
        #: rotations of its output file that its output brought about
        self.log_rotations = 0
        self._run_now = False
        self._idle = False
        self._scheduling = False
        #: a reload changed the schedule: the next time is computed anew
        self._reschedule = False

    def carry_counters(self, previous: ServiceRunner) -> None:
        """Keep the totals of the runner this one replaces (for status and metrics)."""
        self.restarts = previous.restarts
        self.exits = previous.exits
        self.oom_kills = previous.oom_kills
        self.last_oom = previous.last_oom
        self.ring = previous.ring
        self.last_status = previous.last_status
        self.scheduled_runs = previous.scheduled_runs
        self.schedule_skips = previous.schedule_skips
        self.notified.carry(previous.notified)
        self.log_rotations = previous.log_rotations

    # -- what others ask of a service ---------------------------------------

    def snapshot(self) -> Snapshot:
        """Where the service is now, for status, health and metrics."""
        main = self._main
        completed = self.service.oneshot and self.outcome is Outcome.COMPLETED
        # Positional, in field order: a status request makes one per service,
        # and keywords cost a named tuple half as much again.
        return Snapshot(
            self.name,
            self.state,
            None if main is None else main.pid,
            self.started_at,
            self.restarts,
            self.last_status,
            self.last_oom,
            # ready; a scheduled job is as long as its schedule is served
            completed or self._scheduling or (self.state is State.RUNNING and main is not None),
            self.held,
            completed,
            self.outcome,
            self.oom_kills,
            dict(self.exits),
            self.ring.size,
            self.next_run,
            self.scheduled_runs,
            self.schedule_skips,
            self.notified.status,
            self.notified.main_pid,
            dict(self.notified.drops),
            self.notified.watchdog_misses,
            self.notified.main_pid_refused,
            self.log_rotations,
        )

    def usage(self) -> Mapping[str, int]:
        """The cgroup's gauges (``memory.current``, ``pids.current``, ...); empty without one."""
        return self.cgroup.stats() if self.cgroup is not None else {}

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the main process group of the run going on, if any,
        and to the ``MAINPID=`` it named over sd_notify when that is outside the group."""
        if self._tree is not None and self._main is not None:
            self._tree.signal_group(signum)
            self.notified.signal_main(signum, self._main.pgid)

    def condition_met(self, condition: str) -> bool:
        if condition == "started":
            return self.ever_started
        if condition == "ready":
            return self.ever_ready
        return self.outcome is Outcome.COMPLETED

    async def wait_condition(self, condition: str) -> bool:
        """True once ``condition`` holds; False when it never can any more."""
        while not self.condition_met(condition):
            if self.finished.is_set():
                return False
            await self._changed.wait()
        return True

    def hold(self) -> None:
        """Mark the service as stopped by an operator, who is about to :meth:`stop` it.

        Its being down is then on purpose, not a failure: status and /readyz
        leave it out. A service that already ended by itself (gave up,
        completed) keeps what it ended as: stopping it changes nothing. A
        start makes a new runner, which is counted again.
        """
        if not self.finished.is_set():
            self.held = True

    def request_stop(self) -> None:
        """Stop wanting the service up: no more starts or restarts.

        Wakes the loop from a wait for dependencies or a backoff; a running
        process is left alone until :meth:`stop`.
        """
        self.want_up = False
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def run_now(self) -> bool:
        """Run a scheduled job now, if it is not running; False if it is (or is stopping).

        Before its schedule begins (its dependencies are not met yet), the
        run comes as soon as they are.
        """
        if self.service.schedule is None or self._stopping():
            return False
        if self._scheduling and not self._idle:
            return False
        self._run_now = True
        if self._idle and self._wait_scope is not None:
            self._wait_scope.cancel()
        return True

    async def stop(self) -> None:
        """Stop the service (stop signal, then SIGKILL) and wait until it is gone."""
        self.request_stop()
        self._stop_requested.set()
        await self.finished.wait()

    def kill_now(self) -> None:
        """SIGKILL whatever runs of the service, at once (a second shutdown signal)."""
        self.request_stop()
        if self._tree is not None and self._tree.alive():
            self._tree.kill()
            self.killed = True
            self._ctx.count_kill()

    def update(self, service: Service) -> bool:
        """Take a new config of this service in place; False when only a new runner can.

        The caller checked that nothing the process was started with differs
        (config.reloadable). From here on the loop, the probes and the stop
        read the new values; limits are written to the live cgroup. A runner
        still waiting for its dependencies waits for the old ones: when those
        changed, a new runner, which has no process to lose, takes them.
        """
        old = self.service
        waiting = self.state is State.PENDING and not self.finished.is_set()
        if waiting and old.depends_on != service.depends_on:
            return False
        if (old.schedule is None) != (service.schedule is None):
            return False  # a job that gains or loses its schedule runs another loop
        self.service = service
        if old.schedule != service.schedule and self._scheduling:
            self._reschedule = True
            if self._idle and self._wait_scope is not None:
                self._wait_scope.cancel()
        if self.cgroup is not None and (old.limits, old.oom_group) != (
            service.limits,
            service.oom_group,
        ):
            try:
                self.cgroup.apply(service.limits, service.oom_group)
            except TinitError as exc:
                self.log.error("limits_not_applied", error=str(exc))
        self._updated.set()
        self._updated = trio.Event()
        return True

    # -- the loop -------------------------------------------------------------

    def enable(self) -> None:
        """Run even if the service is ``disabled``: an operator asked for it (before ``run``)."""
        if self.state is State.DISABLED:
            self.state = State.PENDING

    async def run(self) -> None:
        try:
            if self.state is State.DISABLED:
                return  # ends at once: a disabled service keeps no one waiting
            if not await self._wait_dependencies():
                if self._stopping():
                    # stopped while waiting: not a dependency that failed
                    return self._mark_stopped()
                self.outcome = Outcome.NEVER_STARTED
                return
            if self.service.schedule is not None:
                await self._serve_schedule()
            else:
                await self._loop()
        finally:
            self._release_cgroup()
            if self.outcome is None:
                self.outcome = Outcome.STOPPED
            self.finished.set()
            self._notify()

    async def _wait_dependencies(self) -> bool:
        for name, condition in self.service.depends_on.items():
            peer = self._peers[name]
            if peer.state is State.DISABLED:
                continue  # a disabled dependency counts as met: dependents start without it
            met = False
            with self._interruptible():
                met = await peer.wait_condition(condition)
            if self._stopping():
                return False
            if not met:
                self.log.error(
                    "dependency_failed",
                    dependency=name,
                    condition=condition,
                    reason="the dependency ended for good without reaching the condition",
                )
                self._set_state(State.FAILED)
                return False
        return True

    async def _loop(self) -> None:
        while True:
            if self._stopping():
                return self._mark_stopped()
            ran = await self._run_once()
            if ran is None:
                return self._mark_stopped()
            svc = self.service  # after the run: a reload may have changed the policy
            status, uptime = ran
            self.last_status = status
            key = str(status.code) if status.signal is None else signal_name(status.signal)
            self.exits[key] = self.exits.get(key, 0) + 1
            if self._stopping():
                return self._mark_stopped()
            failed_run = self._run_failed
            effective = None if failed_run else status
            decision = decide(
                status=effective,
                policy=svc.restart,
                success_codes=svc.success_exit_codes,
                failures=self.failures,
                uptime=uptime,
                reset_after=svc.backoff.reset_after,
                max_restarts=svc.max_restarts,
                initial=svc.backoff.initial,
                factor=svc.backoff.factor,
                max_delay=svc.backoff.max,
                jitter=self._ctx.random.uniform(-1.0, 1.0),
            )
            self.failures = decision.failures
            if decision.restart:
                self.restarts += 1
                self._set_state(State.BACKOFF)
                self.log.info("service_restarting", delay=round(decision.delay, 3))
                with self._interruptible():
                    await trio.sleep(decision.delay)
                continue
            if decision.gave_up:
                self.log.error("service_gave_up", failures=decision.failures)
                self._set_state(State.FAILED)
                self.outcome = Outcome.FAILED
            elif is_success(effective, svc.success_exit_codes):
                self._set_state(State.EXITED)
                self.outcome = Outcome.COMPLETED
            else:
                self._set_state(State.FAILED)
                self.outcome = Outcome.FAILED
            return

    async def _serve_schedule(self) -> None:
        """A scheduled job: a run at each set time, never two at once, until stopped.

        Each run is a whole ``_loop`` (a failed run is retried as ``restart``
        says). A time that comes while a run goes on is skipped and counted,
        and the next run is the first time after the run ended. A reload
        that changes the schedule takes effect between runs.
        """
        from . import schedule

        self._scheduling = True
        self._run_now = self._run_now or self.service.run_at_start
        timing, anchor = self._timing(), self._wall()
        due = schedule.next_after(timing, anchor, anchor)
        while True:
            if self._reschedule:
                self._reschedule = False
                timing, anchor = self._timing(), self._wall()
                due = schedule.next_after(timing, anchor, anchor)
            self.next_run = due.timestamp()
            self._notify()
            await self._wait_until(due)
            if self._stopping():
                return self._mark_stopped()
            if self._reschedule and not self._run_now:
                continue
            manual, self._run_now = self._run_now, False
            began = self._wall()
            self._begin_scheduled_run()
            await self._loop()
            if self.outcome is Outcome.STOPPED:
                return
            ended = self._wall()
            skipped = schedule.count_between(timing, began, ended, anchor)
            if skipped:
                self.schedule_skips += skipped
                self.log.warning("schedule_skipped", runs=skipped, reason="the last run went on")
            # After a scheduled run, never the same time again, even if the
            # wall clock was stepped back; a run asked for leaves the time it
            # came before in place.
            due = schedule.next_after(timing, ended if manual else max(ended, due), anchor)

    def _timing(self) -> schedule.Timing:
        """The service's schedule as times: read anew after a reload changed it."""
        from . import schedule

        config = self.service.schedule
        assert config is not None
        return schedule.parse(config.expression, schedule.zone_named(config.timezone, os.environ))

    def _begin_scheduled_run(self) -> None:
        """Each scheduled run is judged on its own: failures and outcome start afresh."""
        self.scheduled_runs += 1
        self.failures = 0
        self.outcome = None

    async def _wait_until(self, due: datetime) -> None:
        """Sleep until the wall clock reaches ``due``, a run is asked for, or a stop.

        The wall clock is read again at each wake: it can be stepped while
        trio's clock goes on, so no nap is longer than ``_MAX_NAP``.
        """
        self._idle = True
        try:
            with self._interruptible():
                while not (self._run_now or self._reschedule):
                    left = (due - self._wall()).total_seconds()
                    if left <= 0:
                        return
                    await trio.sleep(min(left, _MAX_NAP))
        finally:
            self._idle = False

    def _wall(self) -> datetime:
        return datetime.fromtimestamp(self._ctx.wall_clock(), UTC)

    async def _run_once(self) -> tuple[ExitStatus, float] | None:
        """Start the service once and return how it ended and how long it ran.

        None when it was not started because a stop (or tinit's shutdown) is
        wanted: that is checked right before the fork, with no checkpoint in
        between, so nothing starts once a shutdown has begun.
        """
        svc = self.service
        self._run_failed = False
        self._terminating = False
        self._terminated = trio.Event()
        self._set_state(State.STARTING)
        output = Output(
            svc.name,
            svc.output,
            width=self._ctx.width,
            stdout=self._ctx.stdout,
            stderr=self._ctx.stderr,
            ring=self.ring,
            color=self._ctx.stdout.isatty,
            rotation=svc.log_rotation,
            on_rotate=self._count_rotations,
        )
        notify = probes.NotifyPipe() if isinstance(svc.ready, NotifyFdProbe) else None
        stdin = procs_fd = -1
        sd: sdnotify.NotifySocket | None = None
        try:
            if isinstance(svc.ready, SdNotifyProbe):
                sd = sdnotify.NotifySocket(svc.name)
            self.cgroup = self._make_cgroup()
            # The files the config names are opened with the service's own
            # rights; a refused one (FileRefused, an OSError) is a failed start.
            owner = childspec.owner(svc)
            child_out, child_err = output.open(owner)
            stdin = childspec.open_stdin(svc.stdin, owner)
            if self.cgroup is not None:
                procs_fd = self.cgroup.open_procs()
            inherited = self._ctx.inherited.select(svc.inherit_fds, svc.command[0])
            fds = childspec.RunFds(
                stdin=stdin,
                stdout=child_out,
                stderr=child_err,
                passed=self._passed_fds(notify, inherited),
                cgroup_procs=procs_fd if procs_fd >= 0 else None,
                listen_names=tuple(name for _, name in inherited),
                notify_socket=None if sd is None else sd.address,
            )
            spec = childspec.build(svc, fds, pid1=self._ctx.pid1)
            if self._stopping():
                raise _StopWanted
            launch = self._ctx.spawner.start(spec, self.cgroup)
        except (TinitError, OSError, _StopWanted) as exc:
            output.close()
            if notify is not None:
                notify.close()
            if sd is not None:
                sd.close()
            self._drop_cgroup()
            if isinstance(exc, _StopWanted):
                return None
            return self._start_failed(exc), 0.0
        finally:
            for fd in (stdin, procs_fd):
                if fd >= 0:
                    os.close(fd)
            output.close_child_ends()
            if notify is not None:
                notify.close_write_end()
        main, tree = launch.process, launch.tree
        self._main, self._tree = main, tree
        self.notified.begin_run(tree)
        started = self.started_at = trio.current_time()
        self.log.info("service_starting", pid=main.pid, command=list(svc.command))
        pumped = trio.Event()

        async def pump() -> None:
            try:
                await output.pump()
            finally:
                pumped.set()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump)
                try:
                    await launch.wait_exec()
                except SpawnError as exc:
                    status = self._start_failed(exc)
                    await tree.wait_gone()
                    nursery.cancel_scope.cancel()
                    return status, 0.0
                self.ever_started = True
                self._notify()
                nursery.start_soon(self._stop_on_request, tree)
                if sd is not None:
                    notified = self.notified
                    nursery.start_soon(
                        sd.serve, tree.holds, notified.deliver, notified.dropped, main.pid
                    )
                nursery.start_soon(self._probe, launch, notify)
                if self.cgroup is not None:
                    nursery.start_soon(self.cgroup.watch_oom, self._on_oom)
                status = await main.wait()
                # how long it stayed up: what reset_after is measured against
                uptime = trio.current_time() - started
                # Whatever the main process left gets the stop sequence before
                # the exit is reported: the event marks the end of the run,
                # when nothing of it is left.
                if not self._terminating:
                    await self._terminate(tree, leftovers_only=True)
                else:
                    await self._terminated.wait()
                self._log_exit(main, status, uptime)
                await self._drain_output(output, pumped)
                nursery.cancel_scope.cancel()
        finally:
            self._main = self._tree = None
            self.notified.end_run()
            self.started_at = None
            if notify is not None:
                notify.close()
            if sd is not None:
                sd.close()
            output.close()
            self._drop_cgroup()
            self.last_oom = self._oom_this_run > 0
        return status, uptime

    def _count_rotations(self, n: int) -> None:
        self.log_rotations += n

    async def _drain_output(self, output: Output, pumped: trio.Event) -> None:
        """Let the run's output reach its reader before the run counts as over.

        Nothing of the run is left, so EOF is coming; a slow reader only
        slows it down. Only when nothing moves at all for a while (a process
        outside the run still holds the pipe, or the reader stalled for good)
        is the rest given up, and that is said.
        """
        seen = output.progress
        while not pumped.is_set():
            with trio.move_on_after(_OUTPUT_GRACE):
                await pumped.wait()
            if pumped.is_set():
                return
            if output.progress == seen:
                self.log.warning("output_abandoned", after=_OUTPUT_GRACE, buffered=output.buffered)
                return
            seen = output.progress

    # -- cgroups --------------------------------------------------------------

    def _make_cgroup(self) -> ServiceCgroup | None:
        """The service's cgroup for this run: made on the first run, kept across restarts.

        Removing and re-creating a cgroup for every restart costs the kernel
        RCU grace periods on the way to the next exec; an empty cgroup kept
        for the next run costs nothing. It is removed when the service ends
        for good (``_release_cgroup``).
        """
        if self._ctx.cgroups is None:
            return None
        cgroup = self.cgroup
        if cgroup is None:
            svc = self.service
            cgroup = self._ctx.cgroups.create(svc.name, svc.limits, svc.oom_group)
        self._oom_base = cgroup.oom_kills()
        self._oom_this_run = 0
        return cgroup

    def _drop_cgroup(self) -> None:
        """End of a run: report any OOM kill not reported yet; the cgroup stays."""
        if self.cgroup is not None:
            self._check_oom(self.cgroup.oom_kills())

    def _release_cgroup(self) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    def _on_oom(self, total: int) -> None:
        self._check_oom(total)

    def _check_oom(self, total: int) -> None:
        """Report OOM kills in this run's cgroup not reported yet (memory.events)."""
        new = total - self._oom_base - self._oom_this_run
        if new <= 0:
            return
        self._oom_this_run += new
        self.oom_kills += new
        self.log.error(
            "oom_kill",
            kills=new,
            memory_max=self.service.limits.memory,
            pid=None if self._main is None else self._main.pid,
        )

    def _log_exit(self, main: Process, status: ExitStatus, uptime: float) -> None:
        if self.cgroup is not None:
            self._check_oom(self.cgroup.oom_kills())
        fields = status.log_fields()
        if self._oom_this_run:
            fields["reason"] = "oom"
        self.log.info("service_exited", pid=main.pid, **fields, uptime=round(uptime, 3))

    def _start_failed(self, exc: TinitError | OSError) -> ExitStatus:
        self._run_failed = True
        code = exc.exit_code if isinstance(exc, SpawnError) else 126
        self.log.error("service_start_failed", error=str(exc), exit_code=code)
        return ExitStatus(code=code)

    async def _stop_on_request(self, tree: ProcessTree) -> None:
        await self._stop_requested.wait()
        self._set_state(State.STOPPING)
        await self._terminate(tree)

    async def _probe(self, launch: Launch, notify: probes.NotifyPipe | None) -> None:
        ready = self.service.ready
        if ready is not None:
            ok = False
            limit = math.inf if ready.start_timeout is None else ready.start_timeout
            with trio.move_on_after(limit):
                ok = await self._wait_ready(ready, notify, launch)
            if not ok:
                self.log.error("service_not_ready", timeout=ready.start_timeout)
                self._run_failed = True
                await self._terminate(launch.tree)
                return
        self.ever_ready = True
        self._set_state(State.RUNNING)
        self.log.info("service_ready", pid=launch.process.pid)
        async with trio.open_nursery() as nursery:
            if isinstance(ready, SdNotifyProbe) and ready.watchdog is not None:
                nursery.start_soon(self._watch_watchdog, launch, ready.watchdog)
            await self._watch_health(launch)

    async def _watch_watchdog(self, launch: Launch, limit: float) -> None:
        """Stop the run, as a failed health check does, once its pings stop for ``limit``."""
        since = await self.notified.wait_watchdog_missed(limit)
        self.log.error("service_watchdog_missed", watchdog=limit, since_ping=round(since, 3))
        self._run_failed = True
        await self._terminate(launch.tree)

    async def _watch_health(self, launch: Launch) -> None:
        """Run the health check until it fails ``failures`` times in a row.

        The check is read afresh each time, so a reload's new one takes
        effect at the next check (and starts its count of misses anew).
        """
        misses = 0
        probe = None
        while True:
            health = self.service.health
            if health is None:
                await self._updated.wait()
                continue
            await trio.sleep(health.interval)
            if self.service.health != health:
                continue  # replaced during the wait: the new one's interval first
            if health != probe:
                probe, misses = health, 0
            if await probes.check(health, self._inside(launch), self._ctx.reaper):
                misses = 0
                continue
            misses += 1
            self.log.warning("health_check_failed", misses=misses, failures=health.failures)
            if misses >= health.failures:
                self.log.error("service_unhealthy", failures=misses)
                self._run_failed = True
                await self._terminate(launch.tree)
                return

    async def _wait_ready(
        self, ready: Any, notify: probes.NotifyPipe | None, launch: Launch
    ) -> bool:
        if notify is not None:
            if await notify.wait_ready():
                return True
            await trio.sleep_forever()  # closed without a newline: never ready
        if isinstance(ready, SdNotifyProbe):
            await self.notified.wait_ready()
            return True
        while not await probes.check(ready, self._inside(launch), self._ctx.reaper):
            await trio.sleep(ready.interval)
            ready = self.service.ready  # a reload's new probe takes the next check
            if ready is None:
                return True
        return True

    def _inside(self, launch: Launch) -> probes.Inside:
        """Where this run's exec probes run: in its main process's context."""
        return probes.Inside(self.service, launch.process, self.cgroup, self._ctx.pid1)

    async def _terminate(self, tree: ProcessTree, *, leftovers_only: bool = False) -> None:
        """The stop sequence for one run: stop signal -> stop_timeout -> SIGKILL.

        The stop signal goes to the process group; once the main process is
        gone, whatever of the service is left outside that group (a daemon
        that called setsid, found through its cgroup) gets it too. SIGKILL
        goes to the whole tree. Done once per run, whoever asks first.
        """
        if self._terminating:
            await self._terminated.wait()
            return
        self._terminating = True
        try:
            if not tree.alive():
                return
            left = tree.count_others() if leftovers_only else 0
            killed = await self._stop_tree(tree, leftovers_only=leftovers_only)
            if left:
                self._report_leftovers(left, killed=killed)
        finally:
            self._terminated.set()

    async def _stop_tree(self, tree: ProcessTree, *, leftovers_only: bool) -> bool:
        """Send the stop signal, wait up to ``stop_timeout``, then SIGKILL; True if it had to."""
        stop_signal = self.service.stop_signal
        if leftovers_only:
            tree.signal_all(stop_signal)
        else:
            self.log.info("service_stopping", signal=signal_name(stop_signal))
            tree.signal_group(stop_signal)
            if self._main is not None:
                self.notified.signal_main(stop_signal, self._main.pgid)
        deadline = min(trio.current_time() + self.service.stop_timeout, self._ctx.deadline)
        with trio.move_on_at(deadline):
            await tree.wait_gone(pass_on=None if leftovers_only else stop_signal)
            return False
        self.log.warning(
            "service_killed", reason="stop_timeout", stop_timeout=self.service.stop_timeout
        )
        self.killed = True
        self._ctx.count_kill()
        tree.kill()
        with trio.CancelScope(shield=True):
            await tree.wait_gone()
        return True

    def _report_leftovers(self, count: int, *, killed: bool) -> None:
        """Say what the main process left behind and that it was stopped.

        For a oneshot this is a warning: leftovers there are nearly always a
        daemon it started (``service nginx start``), which was just stopped
        and will not be serving anything.
        """
        fields: dict[str, Any] = {
            "processes": count,
            "signal": signal_name(self.service.stop_signal),
            "killed": killed,
        }
        if self.service.oneshot:
            self.log.warning("oneshot_left_processes", **fields, hint=_ONESHOT_LEFTOVERS_HINT)
        else:
            self.log.info("service_left_processes", **fields)

    # -- helpers --------------------------------------------------------------

    def _mark_stopped(self) -> None:
        self._set_state(State.STOPPED)
        self.log.info("service_stopped")
        self.outcome = Outcome.STOPPED

    def _stopping(self) -> bool:
        return not self.want_up or self._ctx.shutting_down

    def _interruptible(self) -> trio.CancelScope:
        scope = trio.CancelScope()
        if self._stopping():
            scope.cancel()
        self._wait_scope = scope
        return scope

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _set_state(self, state: State) -> None:
        self.state = state
        self._notify()

    def _passed_fds(
        self, notify: probes.NotifyPipe | None, inherited: tuple[tuple[int, str], ...]
    ) -> dict[int, int]:
        """Where the child finds its inherited fds and the readiness pipe of a notify_fd probe."""
        svc = self.service
        pass_fds = self._ctx.inherited.passed(inherited)
        if notify is not None and isinstance(svc.ready, NotifyFdProbe):
            if svc.ready.fd in pass_fds:
                taken = len(inherited)
                why = f"notify_fd {svc.ready.fd} is taken by one of its {taken} inherited fds"
                raise SpawnError(svc.command[0], errno.EBADF, why, "pass inherited fds")
            pass_fds[svc.ready.fd] = notify.write_fd
        return pass_fds
