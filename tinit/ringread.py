"""Reading the services' rings for ``tinit logs``, a bounded run of lines at a time.

A ring holds up to 256 KiB per service, and 256 KiB of empty lines is 256K
lines: made into one list of records and one JSON reply, ten such rings cost
tinit most of a gigabyte and held its loop for seconds. So nothing here
gathers more than one block of a ring at once. `read_kept` and `Follower`
hand out `Run`s, lines of one block of one service of at most `RUN_BYTES`,
lazily; the control server packs a few into each message and yields to the
loop between messages (`tinit.control`).

``-n N`` counts per service, as ``docker compose logs --tail`` does; with
``total`` it counts the lines of all services together.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from .output import Ring

__all__ = ["RUN_BYTES", "Follower", "Run", "read_kept"]

#: bytes of one block's lines (newlines counted) in one run, unless a single line is longer
RUN_BYTES: Final = 16 * 1024
#: what a run costs besides its lines, as JSON: its time, stream and the keys
_RUN_OVERHEAD: Final = 64


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive lines of one service's stream, read from the pipe at one time ``ts``."""

    ts: float
    service: str
    stream: str
    lines: tuple[str, ...]

    @property
    def weight(self) -> int:
        """What a message of runs is bounded by: characters, one per line, and the run's own.

        JSON writes a character in at most 6 bytes, so a message of runs
        weighing W is at most about 6 W bytes, however many runs it holds.
        """
        return sum(map(len, self.lines)) + len(self.lines) + _RUN_OVERHEAD + len(self.service)


def read_kept(rings: Mapping[str, Ring], n: int | None, *, total: bool = False) -> Iterator[Run]:
    """The lines held now, oldest first across services: the last ``n`` of each, or of all.

    Where to start and stop is taken when this is called; lines added later
    are not read (`Follower` takes them), and lines dropped by the ring
    before they are reached are skipped.
    """
    starts = {name: ring.tail(n) for name, ring in rings.items()}
    stops = {name: ring.cursor for name, ring in rings.items()}
    streams = [
        _runs(name, ring.blocks(starts[name][0], stops[name]), skip=starts[name][1])
        for name, ring in rings.items()
    ]
    merged = heapq.merge(*streams, key=lambda run: run.ts)
    if n is None or not total:
        return merged
    held = sum(lines for _block, _skip, lines in starts.values())
    return _drop(merged, max(held - n, 0))


def _runs(
    service: str, blocks: Iterator[tuple[int, float, str, bytes]], skip: int = 0
) -> Iterator[Run]:
    """The blocks of one ring as runs, the first ``skip`` lines of the first block left out."""
    for _number, ts, stream, data in blocks:
        start = 0
        if skip:
            parts = data.split(b"\n", skip)  # at most skip + 1 parts: the last is the rest
            start = len(data) - len(parts[-1])
            skip = 0
        yield from _cut(service, ts, stream, data, start)


def _cut(service: str, ts: float, stream: str, data: bytes, start: int) -> Iterator[Run]:
    """``data[start:]``, whole lines, as runs of at most RUN_BYTES (or one longer line)."""
    while start < len(data):
        end = data.rfind(b"\n", start, start + RUN_BYTES) + 1
        if end <= start:  # one line longer than a run: it goes alone
            end = data.find(b"\n", start) + 1 or len(data)
        lines = data[start:end].decode("utf-8", "replace").split("\n")
        lines.pop()  # the empty string after the last newline
        yield Run(ts, service, stream, tuple(lines))
        start = end


def _drop(runs: Iterator[Run], count: int) -> Iterator[Run]:
    """``runs`` without their first ``count`` lines."""
    for run in runs:
        if count >= len(run.lines):
            count -= len(run.lines)
            continue
        if count:
            run = Run(run.ts, run.service, run.stream, run.lines[count:])
            count = 0
        yield run


class Follower:
    """New lines of several rings, from the moment it was made, as runs; until cancelled.

    The start is taken here, not at the first iteration, so the control
    server can send the kept lines (`read_kept`) and then follow without
    losing or repeating one. No task of its own: the rings wake it through a
    listener. Rings are read in turn, not merged by time.
    """

    def __init__(self, rings: Mapping[str, Ring]) -> None:
        self._rings = dict(rings)
        self._cursors = {name: ring.cursor for name, ring in self._rings.items()}
        self._wake = trio.Event()
        self._pending: Iterator[Run] = iter(())
        for ring in self._rings.values():
            ring.listen(self._on_add)

    def _on_add(self) -> None:
        self._wake.set()

    def __aiter__(self) -> Follower:
        return self

    async def __anext__(self) -> Run:
        while True:
            run = next(self._pending, None)
            if run is not None:
                return run
            await self._wake.wait()
            self._wake = trio.Event()  # before reading: an add from now on wakes us again
            self._pending = self._read_new()

    def _read_new(self) -> Iterator[Run]:
        for name, ring in self._rings.items():
            blocks = ring.blocks(self._cursors[name], ring.cursor)
            for number, ts, stream, data in blocks:
                self._cursors[name] = number + 1
                yield from _cut(name, ts, stream, data, 0)

    async def aclose(self) -> None:
        for ring in self._rings.values():
            ring.unlisten(self._on_add)
