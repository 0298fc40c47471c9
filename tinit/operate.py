"""What the control socket and the health endpoint see of the supervisor.

:class:`Operator` implements control.ControlTarget over a running
supervisor: it reads each service's :class:`~tinit.state.Snapshot` for
``tinit status``, ``/readyz`` and ``/metrics``, and turns requests into the
supervisor's own start, stop, restart and reload. It knows the supervisor
only as :class:`Supervised` (supervisor.py imports this module, never the
other way round).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .control import Metrics, ServiceMetrics
from .errors import TinitError
from .ringread import Follower, read_kept
from .state import State

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping, Sequence

    from .config.model import Service
    from .output import Ring
    from .ringread import Run
    from .state import Snapshot


class Operated(Protocol):
    """One service as an operator reaches it (service.ServiceRunner is one)."""

    @property
    def name(self) -> str: ...

    @property
    def ring(self) -> Ring: ...

    @property
    def service(self) -> Service: ...

    def snapshot(self) -> Snapshot: ...

    def usage(self) -> Mapping[str, int]: ...

    def signal(self, signum: int) -> None: ...

    def hold(self) -> None: ...


class Supervised(Protocol):
    """What an operator needs of the supervisor (supervisor.Supervisor is it)."""

    @property
    def runners(self) -> Mapping[str, Operated]: ...

    @property
    def critical_failed(self) -> bool: ...

    @property
    def orphans_reaped(self) -> int: ...

    @property
    def started_at(self) -> float: ...

    async def start_service(self, name: str) -> None: ...

    async def stop_service(self, name: str) -> None: ...

    async def restart_service(self, name: str) -> None: ...

    async def reload(self) -> dict[str, list[str]]: ...


class Operator:
    def __init__(self, supervisor: Supervised) -> None:
        self._sup = supervisor

    def _select(self, names: Sequence[str]) -> list[Operated]:
        """The runners named; a replicated service's own name means each of its instances."""
        runners = self._sup.runners
        if not names:
            return list(runners.values())
        selected: list[str] = []
        for name in names:
            if name in runners:
                selected.append(name)
                continue
            instances = [n for n, r in runners.items() if r.service.replica_of == name]
            if not instances:
                raise KeyError(name)
            selected.extend(instances)
        return [runners[name] for name in dict.fromkeys(selected)]

    # -- reading ----------------------------------------------------------------

    def status(self, names: Sequence[str]) -> list[dict[str, Any]]:
        now, wall = trio.current_time(), time.time()
        return [
            _status(runner.snapshot(), runner.usage(), now, wall) for runner in self._select(names)
        ]

    def health(self) -> tuple[bool, bool]:
        alive = not self._sup.critical_failed
        ready = all(counts_as_up(r.snapshot()) for r in self._sup.runners.values())
        return alive, ready

    def metrics(self) -> Metrics:
        services = [
            ServiceMetrics(
                name=s.name,
                up=s.pid is not None,
                ready=s.ready,
                restarts_total=s.restarts,
                exits_total=s.exits,
                oom_kills_total=s.oom_kills,
                log_bytes=s.log_bytes,
                next_run=s.next_run,
                scheduled_runs_total=s.scheduled_runs,
                schedule_skips_total=s.schedule_skips,
                notify_dropped_total=s.notify_drops,
                watchdog_misses_total=s.watchdog_misses,
                main_pid_refused_total=s.main_pid_refused,
                log_rotations_total=s.log_rotations,
            )
            for s in (r.snapshot() for r in self._sup.runners.values())
        ]
        return Metrics(
            services=services,
            orphans_reaped_total=self._sup.orphans_reaped,
            uptime_seconds=trio.current_time() - self._sup.started_at,
        )

    def logs(self, names: Sequence[str], n: int | None, *, total: bool = False) -> Iterator[Run]:
        return read_kept({r.name: r.ring for r in self._select(names)}, n, total=total)

    def follow(self, names: Sequence[str]) -> AsyncIterator[Run]:
        return Follower({r.name: r.ring for r in self._select(names)})

    # -- acting -----------------------------------------------------------------

    async def start(self, names: Sequence[str]) -> None:
        for runner in self._select(names):
            await self._sup.start_service(runner.name)

    async def stop(self, names: Sequence[str]) -> None:
        runners = self._select(names)
        for runner in runners:
            runner.hold()  # down on purpose from now on: not a failure to report
        async with trio.open_nursery() as nursery:
            for runner in runners:
                nursery.start_soon(self._sup.stop_service, runner.name)

    async def restart(self, names: Sequence[str]) -> None:
        runners = self._select(names)
        try:
            async with trio.open_nursery() as nursery:
                for runner in runners:
                    nursery.start_soon(self._sup.restart_service, runner.name)
        except* TinitError as refused:  # a shutdown began: the reply gives its reason
            raise refused.exceptions[0] from None

    def send_signal(self, signum: int, names: Sequence[str]) -> None:
        for runner in self._select(names):
            runner.signal(signum)

    async def reload(self) -> dict[str, list[str]]:
        return await self._sup.reload()


def counts_as_up(snap: Snapshot) -> bool:
    """Whether a service is as it should be: ready, a completed oneshot, held down, or disabled.

    A service an operator stopped is where the operator wants it, so it
    does not turn ``tinit status`` or ``/readyz`` into a failure (and the
    container unhealthy); one that crashed, backs off, gave up or failed
    its health probe still does.
    """
    return snap.ready or snap.held or snap.state is State.DISABLED


def _status(snap: Snapshot, usage: Mapping[str, int], now: float, wall: float) -> dict[str, Any]:
    last_exit: dict[str, Any] | None = None
    if snap.last_exit is not None:
        last_exit = snap.last_exit.log_fields()
        if snap.last_oom:
            last_exit["oom"] = True
    return {
        "name": snap.name,
        "state": snap.state.value,
        "pid": snap.pid,
        "uptime": None if snap.started_at is None else round(now - snap.started_at, 3),
        "restarts": snap.restarts,
        "last_exit": last_exit,
        "ready": snap.ready,
        "held": snap.held,
        "memory": usage.get("memory.current"),
        "pids": usage.get("pids.current"),
        "cpu_usec": usage.get("cpu_usec"),
        "oom_kills": snap.oom_kills,
        "completed": snap.completed,
        "log_bytes": snap.log_bytes,
        "log_rotations": snap.log_rotations,
        **_schedule_status(snap, wall),
        **_notify_status(snap),
    }


def _notify_status(snap: Snapshot) -> dict[str, Any]:
    """What a service said over sd_notify: its ``STATUS=`` and ``MAINPID=``, when it did."""
    shown: dict[str, Any] = {}
    if snap.notify_status is not None:
        shown["status_text"] = snap.notify_status
    if snap.notify_pid is not None:
        shown["main_pid"] = snap.notify_pid
    return shown


def _schedule_status(snap: Snapshot, wall: float) -> dict[str, Any]:
    """A scheduled job's next run (UTC, and seconds from now) and its counters; else nothing."""
    if snap.next_run is None:
        return {}
    when = datetime.fromtimestamp(snap.next_run, UTC)
    return {
        "next_run": when.isoformat().replace("+00:00", "Z"),
        "next_run_in": round(max(snap.next_run - wall, 0.0), 3),
        "scheduled_runs": snap.scheduled_runs,
        "schedule_skips": snap.schedule_skips,
    }
