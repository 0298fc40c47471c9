"""A fake supervisor behind the `ControlTarget` seam, and a stand-in for cli.py's dispatch.

`FakeTarget` keeps services as plain records and output as one list, so the
control socket and the health endpoint can be tested without processes.
Every call that would act on services is recorded in ``calls``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from tinit.control import Metrics, ServiceMetrics
from tinit.errors import ConfigError, Problem, TinitError
from tinit.ringread import Run
from tinit.state import State, signal_name

Line = tuple[float, str, str, str]


def _run(line: Line) -> Run:
    ts, service, stream, text = line
    return Run(ts, service, stream, (text,))


@dataclass
class FakeService:
    name: str
    state: State = State.RUNNING
    pid: int | None = 100
    ready: bool = True
    restarts: int = 0
    last_exit: dict[str, Any] | None = None
    memory: int | None = 12_900_000
    pids: int | None = 1
    oom_kills: int = 0
    log_bytes: int = 0
    log_rotations: int = 0
    started: float = field(default_factory=time.monotonic)
    exits: dict[str, int] = field(default_factory=dict)
    signals: list[int] = field(default_factory=list)
    completed: bool = False
    held: bool = False
    notify_drops: dict[str, int] = field(default_factory=dict)
    watchdog_misses: int = 0


class FakeTarget:
    """In-memory services answering the control protocol; ``calls`` records every action."""

    def __init__(self, *names: str) -> None:
        self.services = {name: FakeService(name, pid=100 + i) for i, name in enumerate(names)}
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.lines: list[Line] = []
        self.reload_result: dict[str, list[str]] = {
            "added": [],
            "removed": [],
            "changed": [],
            "updated": [],
            "unchanged": sorted(self.services),
        }
        self.reload_problems: list[Problem] = []
        self.alive = True
        self.orphans_reaped = 0
        self.stop_delay = 0.0
        self.followers = 0  # follow() iterators running now
        self._new_line = trio.lowlevel.ParkingLot()

    # -- helpers for tests ------------------------------------------------------------

    def add_line(self, service: str, text: str, stream: str = "stdout") -> None:
        self.lines.append((time.time(), service, stream, text))
        self._new_line.unpark_all()

    def snapshot(self) -> dict[str, tuple[State, int | None, int, tuple[int, ...]]]:
        """What a request might have disturbed: state, pid, restarts, signals received."""
        return {n: (s.state, s.pid, s.restarts, tuple(s.signals)) for n, s in self.services.items()}

    def states(self) -> dict[str, str]:
        return {n: s.state.value for n, s in self.services.items()}

    def _pick(self, names: Sequence[str]) -> list[FakeService]:
        for name in names:
            if name not in self.services:
                raise KeyError(name)
        return [self.services[n] for n in names] if names else list(self.services.values())

    # -- ControlTarget ----------------------------------------------------------------

    def status(self, names: Sequence[str]) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                "name": s.name,
                "state": s.state.value,
                "pid": s.pid,
                "uptime": now - s.started if s.state is State.RUNNING else None,
                "restarts": s.restarts,
                "last_exit": s.last_exit,
                "ready": s.ready,
                "memory": s.memory,
                "pids": s.pids,
                "oom_kills": s.oom_kills,
                "log_bytes": s.log_bytes,
                "log_rotations": s.log_rotations,
                **({"completed": True} if s.completed else {}),
                **({"held": True} if s.held else {}),
            }
            for s in self._pick(names)
        ]

    async def start(self, names: Sequence[str]) -> None:
        services = self._pick(names)
        self.calls.append(("start", tuple(names)))
        for s in services:
            s.state, s.ready, s.started = State.RUNNING, True, time.monotonic()
        await trio.lowlevel.checkpoint()

    async def stop(self, names: Sequence[str]) -> None:
        services = self._pick(names)
        self.calls.append(("stop", tuple(names)))
        await trio.sleep(self.stop_delay)
        for s in services:
            s.state, s.pid, s.ready = State.STOPPED, None, False
            s.last_exit = {"exit_code": None, "signal": "SIGTERM"}
            s.exits["SIGTERM"] = s.exits.get("SIGTERM", 0) + 1

    async def restart(self, names: Sequence[str]) -> None:
        services = self._pick(names)
        self.calls.append(("restart", tuple(names)))
        for s in services:
            s.restarts += 1
            s.exits["0"] = s.exits.get("0", 0) + 1
            s.last_exit = {"exit_code": 0, "signal": None}
            s.state, s.ready = State.RUNNING, True
        await trio.lowlevel.checkpoint()

    def send_signal(self, signum: int, names: Sequence[str]) -> None:
        services = self._pick(names)
        self.calls.append((f"signal {signal_name(signum)}", tuple(names)))
        for s in services:
            s.signals.append(signum)

    async def reload(self) -> dict[str, list[str]]:
        self.calls.append(("reload", ()))
        await trio.lowlevel.checkpoint()
        if self.reload_problems:
            raise ConfigError(self.reload_problems)
        return self.reload_result

    def logs(self, names: Sequence[str], n: int | None, *, total: bool = False) -> Iterator[Run]:
        """One run per line; ``n`` per service, or of all with ``total``."""
        self._pick(names)
        kept = [line for line in self.lines if not names or line[1] in names]
        if n is not None and total:
            kept = kept[len(kept) - n :] if n else []
        elif n is not None:
            counts: dict[str, int] = {}
            for line in reversed(kept):
                counts[line[1]] = counts.get(line[1], 0) + 1
            seen: dict[str, int] = {}
            tail = []
            for line in kept:
                seen[line[1]] = seen.get(line[1], 0) + 1
                if counts[line[1]] - seen[line[1]] < n:
                    tail.append(line)
            kept = tail
        return iter([_run(line) for line in kept])

    def follow(self, names: Sequence[str]) -> AsyncIterator[Run]:
        self._pick(names)
        start = len(self.lines)  # taken now, as the ControlTarget protocol asks

        async def lines() -> AsyncIterator[Run]:
            self.followers += 1
            try:
                seen = start
                while True:
                    while seen == len(self.lines):
                        await self._new_line.park()
                    new, seen = self.lines[seen:], len(self.lines)
                    for line in new:
                        if not names or line[1] in names:
                            yield _run(line)
            finally:
                self.followers -= 1

        return lines()

    def metrics(self) -> Metrics:
        return Metrics(
            services=[
                ServiceMetrics(
                    name=s.name,
                    up=s.state is State.RUNNING,
                    ready=s.ready,
                    restarts_total=s.restarts,
                    exits_total=dict(s.exits),
                    oom_kills_total=s.oom_kills,
                    log_bytes=s.log_bytes,
                    notify_dropped_total=dict(s.notify_drops),
                    watchdog_misses_total=s.watchdog_misses,
                    log_rotations_total=s.log_rotations,
                )
                for s in self.services.values()
            ],
            orphans_reaped_total=self.orphans_reaped,
            uptime_seconds=12.5,
        )

    def health(self) -> tuple[bool, bool]:
        ready = all(s.state is State.RUNNING and s.ready for s in self.services.values())
        return self.alive, ready


# -- the client commands as cli.py will run them ------------------------------------------


def client_main(argv: Sequence[str]) -> int:
    """Parse ``argv`` with the client's subparsers and run it, printing errors like cli.py."""
    from tinit import client
    from tinit.cli import _Parser

    parser = _Parser(prog="tinit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    client.add_parsers(sub)
    try:
        return client.run(parser.parse_args(list(argv)))
    except TinitError as exc:
        print(f"tinit: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(client_main(sys.argv[1:]))
