"""Services mode: the root of the task tree, signals, shutdown and tinit's exit code.

``run_services`` owns the trio loop. One task serves the signal receiver
(SIGCHLD feeds the reaper; TERM, INT, QUIT and SIGRTMIN+3 ask for a shutdown;
``forward_signals`` go to every running service), one task per service runs
its life (service.py), and the main task waits until either a shutdown is
asked for or there is nothing left to supervise.

Shutdown (README, "How tinit behaves"): every service gets its stop signal
only once every service that depends on it, directly or through others, has
exited (a finished oneshot passes the order on), independent ones in
parallel, all under one ``shutdown_timeout``; then whatever is left in the
namespace (or, not PID 1, below tinit) gets SIGTERM and, when the budget runs
out, SIGKILL.
A second TERM or INT kills everything at once.

The budget bounds tinit's exit, not only the services' stop: from the moment
a shutdown begins nothing starts any more, output still on its way to a slow
reader is cut off when the budget runs out (and counted, ``output_dropped``),
and replies the control socket owes are sent, briefly, before it closes.
Every SIGKILL tinit sends from then on (to a service, one a reload is
removing, or a leftover) makes the exit code 137.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Final

import trio

from . import listenfds, output, procs, signals
from .config.reloadable import needs_restart
from .listenfds import Inherited
from .output import Sink
from .reaper import Reaper
from .service import Context, ServiceRunner
from .state import ExitStatus, Outcome, final_exit_code, signal_name
from .tree import OsSpawner

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .cgroups import Cgroups
    from .config import Config, Service
    from .control import ReplyDrain
    from .logs import Log

#: outcomes of a service that ended for good without doing its job (critical: fatal)
_FAILURES: Final = frozenset({Outcome.FAILED, Outcome.NEVER_STARTED})
#: how long replies owed to control clients may hold tinit's exit (and at least
#: how long they get once the shutdown budget is spent)
_REPLY_GRACE: Final = 0.5
_REPLY_MIN: Final = 0.1


def run_services(
    config: Config, log: Log, *, no_cgroups: bool = False, control_socket: str | None = None
) -> int:
    """Supervise the services of ``config`` until the end; return tinit's exit code."""
    signals.block()
    inherited = listenfds.take()
    pid1 = procs.is_pid1()
    if not pid1:
        procs.become_subreaper()
        log.info("not_pid1", pid=os.getpid(), note="child subreaper: orphans still come to tinit")
    cgroups = None if no_cgroups else setup_cgroups(config, log)
    supervisor = Supervisor(
        config, log, pid1=pid1, cgroups=cgroups, control_socket=control_socket, inherited=inherited
    )
    import gc

    gc.collect()
    gc.freeze()
    try:
        return trio.run(supervisor.run)
    finally:
        if cgroups is not None:
            cgroups.close()


def setup_cgroups(config: Config, log: Log) -> Cgroups | None:
    """Make the cgroup layout as ``settings.cgroups`` says.

    ``auto`` carries on without (or without limits) after ONE warning that
    names what is missing and how to grant it; ``required`` refuses to start
    (CgroupError, exit 2); ``off`` never touches cgroups.
    """
    mode = config.settings.cgroups
    if mode == "off":
        return None
    from .cgroups import CgroupError, Cgroups, discover

    discovery = discover()
    unenforceable = sorted(
        {kind for svc in config.services.values() for kind in discovery.missing_limits(svc.limits)}
    )
    if mode == "required":
        if not discovery.usable:
            raise CgroupError(f"settings.cgroups is required, but {discovery.problem}")
        if unenforceable:
            raise CgroupError(
                f"settings.cgroups is required, but {', '.join(unenforceable)} limits cannot be"
                f" enforced here: {discovery.problem}"
            )
        return Cgroups.setup(discovery, log)
    if not discovery.usable:
        log.warning("cgroups_unavailable", problem=discovery.problem)
        return None
    try:
        layout = Cgroups.setup(discovery, log)
    except CgroupError as exc:
        log.warning("cgroups_unavailable", problem=str(exc))
        return None
    if unenforceable:
        log.warning("cgroup_limits_unavailable", limits=unenforceable, problem=discovery.problem)
    elif discovery.problem:
        log.debug("cgroups_degraded", problem=discovery.problem)
    return layout


class Supervisor:
    def __init__(
        self,
        config: Config,
        log: Log,
        *,
        pid1: bool,
        cgroups: Cgroups | None = None,
        control_socket: str | None = None,
        inherited: Inherited | None = None,
    ) -> None:
        #: the fds tinit was handed, kept for the services that name them
        self._inherited = inherited or Inherited()
        #: the control socket's path; None disables it
        self.control_socket = control_socket
        self.config = config
        self.log = log
        self.reaper = Reaper(
            on_orphan=lambda pid, st: log.debug("orphan_reaped", pid=pid, **st.log_fields())
        )
        self._pid1 = pid1
        self._cgroups = cgroups
        self.runners: dict[str, ServiceRunner] = {}
        self._end = trio.Event()
        self.shutdown_reason: str | None = None
        self._shutting_down = False
        #: SIGKILLs sent during the shutdown outside any runner (everything, leftovers)
        self._killed = 0
        #: the status of the critical service whose end shut tinit down
        self._critical: ExitStatus | None = None
        self._first_failure: ExitStatus | None = None
        #: runners being stopped to be replaced (restart, reload)
        self._replacing: set[ServiceRunner] = set()
        #: one reload at a time: a second SIGHUP waits for the first to finish
        self._reload_lock = trio.Lock()
        #: names a reload is stopping to remove or replace: start/restart leave them
        self._reloading: set[str] = set()
        self._ctx: Context
        self._root: trio.Nursery
        #: the control socket's replies, to be finished before tinit exits
        self._replies: ReplyDrain | None = None
        self.started_at = 0.0

    async def run(self) -> int:
        output.set_logger(self.log)
        stdout, stderr = Sink.for_fd(1), Sink.for_fd(2)
        spool = self.log.spool()
        self._ctx = ctx = Context(
            reaper=self.reaper,
            log=self.log,
            stdout=stdout,
            stderr=stderr,
            width=_width(self.config),
            pid1=self._pid1,
            spawner=OsSpawner(self.reaper),
            cgroups=self._cgroups,
            inherited=self._inherited,
        )
        self.started_at = trio.current_time()
        self.log.info("config_loaded", path=self.config.path, services=len(self.config.services))
        try:
            with trio.open_signal_receiver(*signals.HANDLED) as received:
                signals.unblock()
                self.reaper.reap()  # children tinit inherited at its exec, already exited
                async with trio.open_nursery() as root:
                    self._root = root
                    root.start_soon(spool.serve, stderr)
                    root.start_soon(self._serve_signals, received)
                    await self._serve_operators(root)
                    for service in self.config.services.values():
                        self._launch(service)
                    await self._end.wait()
                    if self._shutting_down:
                        await self._shutdown(ctx.deadline)
                    else:  # every service ended: what is left gets the same budget
                        self._set_deadline()
                    if await procs.stop_leftovers(
                        self.reaper,
                        deadline=max(ctx.deadline, trio.current_time() + 0.1),
                        reason="shutdown_timeout",
                        log=self.log,
                    ):
                        self._killed += 1
                    await self._finish_replies()
                    root.cancel_scope.cancel()
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, signals.HANDLED)
            _report_late_output(self.log, stdout, stderr)
            with trio.CancelScope(shield=True):
                await spool.close(stderr)
            stdout.close()
            stderr.close()
        code = self._exit_code()
        self.log.info("shutdown_finished", exit_code=code)
        return code

    async def _serve_operators(self, root: trio.Nursery) -> None:
        """The control socket and the HTTP health endpoint, when configured.

        Either failing to start is logged and tinit carries on: services
        matter more than their remote control (a read-only /run, say).
        """
        listen = self.config.settings.health_listen
        if not self.control_socket and listen is None:
            return
        # Imported here: only a tinit that can be operated pays for loading them.
        from .control import serve_control
        from .errors import ControlError
        from .operate import Operator

        operator = Operator(self)
        if self.control_socket:
            try:
                self._replies = await root.start(
                    serve_control, self.control_socket, operator, self.log
                )
            except ControlError as exc:
                self.log.warning("control_socket_unavailable", error=str(exc))
        if listen is not None:
            from .health import serve_health

            try:
                await root.start(serve_health, listen[0], listen[1], operator, self.log)
            except ControlError as exc:
                self.log.error("health_endpoint_unavailable", error=str(exc))

    async def _finish_replies(self) -> None:
        """Let every control request being answered get its reply, briefly, before the end.

        A ``tinit stop`` of the last service is what ends tinit: without this
        its client would see the connection close instead of "ok".
        """
        if self._replies is None:
            return
        now = trio.current_time()
        deadline = min(now + _REPLY_GRACE, max(self._ctx.deadline, now + _REPLY_MIN))
        await self._replies.finish_replies(deadline)

    def shutdown_began(self) -> bool:
        """Whether tinit is shutting down (read again after every wait: it can change)."""
        return self._shutting_down

    @property
    def critical_failed(self) -> bool:
        """A critical service ended for good (``/healthz`` turns 503)."""
        return self._critical is not None or any(
            r.service.critical and r.outcome in _FAILURES for r in self.runners.values()
        )

    @property
    def orphans_reaped(self) -> int:
        """Processes reaped that no service started (for metrics)."""
        return self.reaper.orphans_reaped

    def _launch(
        self, service: Service, previous: ServiceRunner | None = None, *, enable: bool = False
    ) -> ServiceRunner:
        runner = ServiceRunner(service, self._ctx, self.runners)
        if enable:  # an operator's start or restart runs even a disabled service
            runner.enable()
        if previous is not None:
            runner.carry_counters(previous)
        self.runners[service.name] = runner
        self._root.start_soon(self._run_service, runner)
        return runner

    # -- what an operator asks for (control socket, SIGHUP) ----------------------

    def _runner(self, name: str) -> ServiceRunner:
        try:
            return self.runners[name]
        except KeyError:
            raise KeyError(name) from None

    async def start_service(self, name: str) -> None:
        """Start a service that is stopped or ended; nothing if it runs."""
        runner = self._runner(name)
        self._refuse_during_shutdown(name)
        if name in self._reloading or runner in self._replacing:
            return  # a reload or restart owns this service's next run
        if not runner.finished.is_set():
            if runner.run_now():  # a scheduled job between runs: its next run is now
                self.log.info("service_start_requested", service=name, scheduled=True)
            return
        self.log.info("service_start_requested", service=name)
        # a scheduled job: run it now
        self._launch(runner.service, previous=runner, enable=True).run_now()

    async def stop_service(self, name: str) -> None:
        """Stop a service and wait until it is gone; it stays stopped."""
        runner = self._runner(name)
        self.log.info("service_stop_requested", service=name)
        await runner.stop()

    async def restart_service(self, name: str) -> None:
        """Stop (if running) and start again; its dependents are left running."""
        runner = self._runner(name)
        self._refuse_during_shutdown(name)
        if name in self._reloading:
            return
        self.log.info("service_restart_requested", service=name)
        self._replacing.add(runner)
        await runner.stop()
        self._refuse_during_shutdown(name)  # it began while the old run stopped
        if name in self._reloading:
            return  # a reload took over while the old run stopped
        if self.runners.get(name) is not runner:
            return  # another start or restart already launched the next run
        self._launch(runner.service, previous=runner, enable=True)

    def _refuse_during_shutdown(self, name: str) -> None:
        if self._shutting_down:
            from .errors import ControlError

            raise ControlError(f"tinit is shutting down: {name} is not started again")

    async def reload(self) -> dict[str, list[str]]:
        """Re-read the config file and apply the difference.

        Raises ConfigError and changes nothing when the new file is invalid.
        Added services start, removed ones stop, changed ones restart when
        what their process was started with changed ("changed"), else their
        runner takes the new config in place ("updated",
        config/reloadable.py); the rest are left untouched.
        """
        async with self._reload_lock:
            return await self._reload()

    async def _reload(self) -> dict[str, list[str]]:
        from .config import load_config

        new = load_config(self.config.path, at_run=True)
        old = dict(self.runners)
        added = [n for n in new.services if n not in old]
        removed = [n for n in old if n not in new.services]
        differ = [n for n in new.services if n in old and new.services[n] != old[n].service]
        # in place first: a policy change never waits for the stops below
        updated = [n for n in differ if self._update_in_place(old[n], new.services[n])]
        changed = [n for n in differ if n not in updated]
        unchanged = [n for n in new.services if n in old and n not in differ]
        self.log.info(
            "config_reloaded",
            added=added,
            removed=removed,
            changed=changed,
            updated=updated,
            unchanged=unchanged,
        )
        self.config = new
        self._ctx.width = _width(new)
        for runner in (old[n] for n in (*removed, *changed)):
            self._replacing.add(runner)
        self._reloading.update((*removed, *changed))
        try:
            async with trio.open_nursery() as nursery:
                for name in (*removed, *changed):
                    nursery.start_soon(old[name].stop)
        finally:
            self._reloading.difference_update((*removed, *changed))
        for name in removed:
            self.runners.pop(name, None)
        if self.shutdown_began():
            added, changed = [], []
        for name in changed:
            self._launch(new.services[name], previous=old[name])
        for name in added:
            self._launch(new.services[name])
        return {
            "added": added,
            "removed": removed,
            "changed": changed,
            "updated": updated,
            "unchanged": unchanged,
        }

    @staticmethod
    def _update_in_place(runner: ServiceRunner, service: Service) -> bool:
        """Give ``service`` to its runner when nothing its process was started with changed."""
        return not needs_restart(runner.service, service) and runner.update(service)

    async def _reload_on_signal(self) -> None:
        from .errors import ConfigError

        try:
            await self.reload()
        except ConfigError as exc:
            for problem in exc.problems:
                self.log.error("reload_failed", problem=str(problem))

    # -- services ending ------------------------------------------------------

    async def _run_service(self, runner: ServiceRunner) -> None:
        await runner.run()
        if runner in self._replacing:
            # stopped to be restarted or removed by an operator: not an end
            self._replacing.discard(runner)
            return
        svc = runner.service
        status = runner.last_status
        outcome = runner.outcome
        if outcome is Outcome.FAILED and self._first_failure is None and not self._shutting_down:
            self._first_failure = status or ExitStatus(code=1)
        if svc.critical and not self._shutting_down and outcome is not None:
            ended = outcome in _FAILURES or (outcome is Outcome.COMPLETED and not svc.oneshot)
            if ended:
                if outcome is Outcome.NEVER_STARTED or status is None:
                    self._critical = ExitStatus(code=1)
                else:
                    self._critical = status
                self.log.error("critical_service_ended", service=runner.name, outcome=outcome.value)
                self.request_shutdown(f"critical service {runner.name} ended")
                return
        if all(r.finished.is_set() for r in self.runners.values()):
            self._end.set()

    def request_shutdown(self, reason: str) -> None:
        """Begin the shutdown, at once: from here on no service starts or restarts.

        Synchronous on purpose: a runner checks the context's flag right
        before it forks, so no run can start between this and the stops.
        """
        if self._shutting_down:
            return
        self._shutting_down = True
        self._ctx.shutting_down = True
        self.shutdown_reason = reason
        self._set_deadline()
        for runner in self.runners.values():
            runner.request_stop()  # wakes waits for dependencies and backoffs
        self.log.info("shutdown_began", reason=reason)
        self._end.set()

    def _set_deadline(self) -> None:
        """Start the shutdown budget; output to a slow reader is cut off when it ends."""
        deadline = trio.current_time() + self.config.settings.shutdown_timeout
        self._ctx.deadline = deadline
        self._ctx.stdout.cut_off_at(deadline)
        self._ctx.stderr.cut_off_at(deadline)

    async def _shutdown(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            async with trio.open_nursery() as nursery:
                for runner in self.runners.values():
                    nursery.start_soon(self._stop_in_order, runner)
            return
        self.log.warning("shutdown_timeout", timeout=self.config.settings.shutdown_timeout)
        self.kill_everything()
        with trio.CancelScope(shield=True):
            for runner in self.runners.values():
                await runner.finished.wait()

    async def _stop_in_order(self, runner: ServiceRunner) -> None:
        for dependent in self._dependents(runner.name):
            await dependent.finished.wait()
        await runner.stop()

    def _dependents(self, name: str) -> list[ServiceRunner]:
        """Every runner that depends on ``name``, directly or through others.

        Transitive, not direct only: a dependent that has already finished
        (a oneshot that completed, a service that gave up) no longer waits
        for anything, so it cannot pass the order on. Without this, the
        database behind a finished ``migrate`` would be stopped while the
        app that needed ``migrate`` is still draining.
        """
        found: dict[str, ServiceRunner] = {}
        todo = [name]
        while todo:
            current = todo.pop()
            for runner in self.runners.values():
                if current in runner.service.depends_on and runner.name not in found:
                    found[runner.name] = runner
                    todo.append(runner.name)
        found.pop(name, None)  # a cycle is refused when the file is loaded; never wait on oneself
        return list(found.values())

    def kill_everything(self) -> None:
        for runner in self.runners.values():
            runner.kill_now()  # counts its own kill
        self.reaper.reap()  # a zombie is no process to kill, but kill() reaches it
        if procs.signal_everything(signal.SIGKILL):
            self._killed += 1

    # -- signals ----------------------------------------------------------------

    async def _serve_signals(self, received: AsyncIterator[int]) -> None:
        forward = set(self.config.settings.forward_signals)
        async for signum in received:
            if signum == signal.SIGCHLD:
                self.reaper.reap()
                continue
            name = signal_name(signum)
            self.log.info("signal_received", signal=name)
            if signum in signals.SHUTDOWN:
                if self._shutting_down and signum in (signal.SIGTERM, signal.SIGINT):
                    self.log.warning("shutdown_forced", signal=name)
                    self.kill_everything()
                else:
                    self.request_shutdown(f"signal {name}")
            elif signum == signal.SIGHUP:
                if not self._shutting_down:
                    self._root.start_soon(self._reload_on_signal)
            elif signum in forward:
                for runner in self.runners.values():
                    runner.signal(signum)

    # -- the exit code (README, "Exit codes of `tinit run`") ---------------------

    def _exit_code(self) -> int:
        return final_exit_code(
            critical=self._critical,
            shutdown_requested=self._shutting_down,
            killed=self._killed + self._ctx.shutdown_kills > 0,
            first_failure=self._first_failure,
            remap=self.config.settings.exit_code_remap,
        )


def _report_late_output(log: Log, *sinks: Sink) -> None:
    """Say how much output the end of the shutdown budget cut off, per destination."""
    for sink in sinks:
        if sink.late_bytes:
            log.warning(
                "output_dropped",
                sink=sink.name,
                bytes=sink.late_bytes,
                lines=sink.late_lines,
                reason="shutdown_timeout",
            )


def _width(config: Config) -> int:
    """The prefix width: the longest service name."""
    return max(len(name) for name in config.services)
