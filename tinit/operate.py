"""What the control socket and the health endpoint see of the supervisor.

:class:`Operator` implements control.ControlTarget over a running
:class:`~tinit.supervisor.Supervisor`: it reads service state for ``tinit
status``, ``/readyz`` and ``/metrics``, and turns requests into the
supervisor's own start, stop, restart and reload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from . import procs
from .control import Metrics, ServiceMetrics
from .state import State

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from .output import Ring
    from .service import ServiceRunner
    from .supervisor import Supervisor

Line = tuple[float, str, str, str]


class Operator:
    def __init__(self, supervisor: Supervisor) -> None:
        self._sup = supervisor

    def _select(self, names: Sequence[str]) -> list[ServiceRunner]:
        runners = self._sup.runners
        if not names:
            return list(runners.values())
        missing = [name for name in names if name not in runners]
        if missing:
            raise KeyError(missing[0])
        return [runners[name] for name in dict.fromkeys(names)]

    # -- reading ----------------------------------------------------------------

    def status(self, names: Sequence[str]) -> list[dict[str, Any]]:
        now = trio.current_time()
        return [_status(runner, now) for runner in self._select(names)]

    def health(self) -> tuple[bool, bool]:
        alive = not self._sup.critical_failed
        ready = all(_ready(r) for r in self._sup.runners.values())
        return alive, ready

    def metrics(self) -> Metrics:
        services = [
            ServiceMetrics(
                name=r.name,
                up=r.child is not None,
                ready=_ready(r),
                restarts_total=r.restarts,
                exits_total=dict(r.exits),
                oom_kills_total=r.oom_kills,
                log_bytes=r.ring.size,
            )
            for r in self._sup.runners.values()
        ]
        return Metrics(
            services=services,
            orphans_reaped_total=self._sup.reaper.orphans_reaped,
            uptime_seconds=trio.current_time() - self._sup.started_at,
        )

    def logs(self, names: Sequence[str], n: int | None) -> list[Line]:
        lines = [
            (ts, r.name, stream, text)
            for r in self._select(names)
            for ts, stream, text in r.ring.lines(n)
        ]
        lines.sort(key=lambda line: line[0])  # stable: each ring's own order is kept
        return lines if n is None else lines[-n:] if n > 0 else []

    def follow(self, names: Sequence[str]) -> AsyncIterator[Line]:
        return _Follower({r.name: r.ring for r in self._select(names)})

    # -- acting -----------------------------------------------------------------

    async def start(self, names: Sequence[str]) -> None:
        for runner in self._select(names):
            await self._sup.start_service(runner.name)

    async def stop(self, names: Sequence[str]) -> None:
        runners = self._select(names)
        async with trio.open_nursery() as nursery:
            for runner in runners:
                nursery.start_soon(self._sup.stop_service, runner.name)

    async def restart(self, names: Sequence[str]) -> None:
        runners = self._select(names)
        async with trio.open_nursery() as nursery:
            for runner in runners:
                nursery.start_soon(self._sup.restart_service, runner.name)

    def send_signal(self, signum: int, names: Sequence[str]) -> None:
        for runner in self._select(names):
            if runner.child is not None:
                procs.signal_group(runner.child.pgid, signum)

    async def reload(self) -> dict[str, list[str]]:
        return await self._sup.reload()


def _ready(runner: ServiceRunner) -> bool:
    """Running and ready, or a oneshot that completed (it is done, not down)."""
    if runner.service.oneshot and runner.outcome == "completed":
        return True
    return runner.state is State.RUNNING and runner.child is not None


def _status(runner: ServiceRunner, now: float) -> dict[str, Any]:
    last = runner.last_status
    last_exit: dict[str, Any] | None = None
    if last is not None:
        last_exit = last.log_fields()
        if runner.last_oom:
            last_exit["oom"] = True
    stats = runner.cgroup.stats() if runner.cgroup is not None else {}
    return {
        "name": runner.name,
        "state": runner.state.value,
        "pid": None if runner.child is None else runner.child.pid,
        "uptime": None if runner.started_at is None else round(now - runner.started_at, 3),
        "restarts": runner.restarts,
        "last_exit": last_exit,
        "ready": _ready(runner),
        "memory": stats.get("memory.current"),
        "pids": stats.get("pids.current"),
        "cpu_usec": stats.get("cpu_usec"),
        "oom_kills": runner.oom_kills,
        "completed": runner.service.oneshot and runner.outcome == "completed",
        "log_bytes": runner.ring.size,
    }


class _Follower:
    """New lines of several rings, merged, from the moment it was made.

    The start is taken here, not at the first iteration, so the control
    server can send the lines kept so far and then follow without losing or
    repeating one. No task of its own: rings wake it through a listener.
    """

    def __init__(self, rings: dict[str, Ring]) -> None:
        self._rings = rings
        self._cursors = {name: ring.cursor for name, ring in rings.items()}
        self._wake = trio.Event()
        self._pending: list[Line] = []
        for ring in rings.values():
            ring.listen(self._on_add)

    def _on_add(self) -> None:
        self._wake.set()

    def __aiter__(self) -> _Follower:
        return self

    async def __anext__(self) -> Line:
        while not self._pending:
            self._wake = trio.Event()
            for name, ring in self._rings.items():
                self._cursors[name], lines = ring.since(self._cursors[name])
                self._pending.extend((ts, name, stream, text) for ts, stream, text in lines)
            if not self._pending:
                await self._wake.wait()
        return self._pending.pop(0)

    async def aclose(self) -> None:
        for ring in self._rings.values():
            ring.unlisten(self._on_add)
