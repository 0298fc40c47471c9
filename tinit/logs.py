"""tinit's own log events (docs/configuration.md, ``settings.log_format``).

Events are written to stderr, one line each, ``console`` (aligned columns
and ``key=value`` pairs, coloured on a terminal) or ``json`` (one object per
line, with ``event``, ``level`` and ``timestamp`` keys). They are rendered
here with the standard library alone: a logging framework's import (about
30 ms and 4 MB, asyncio included) would sit on the path from ``docker run``
to the first service's exec, and its per-event processor chain would cost
more than the rendering itself, paid on every start and exit of every
service.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable

LEVELS: Final = {"debug": 10, "info": 20, "warning": 30, "error": 40}
FORMATS: Final = ("console", "json")
#: how long one spooled write may wait for a stalled stderr before it is given up
_WRITE_GRACE: Final = 5.0


class Log:
    """A bound event logger: ``log.info("service_started", pid=12)``.

    Cheap to create and to bind; filtering happens before anything is
    formatted, so a disabled ``debug`` call costs one comparison.
    """

    __slots__ = ("_bound", "_core")

    def __init__(self, core: _Core, bound: dict[str, Any]) -> None:
        self._core = core
        self._bound = bound

    def bind(self, **fields: Any) -> Log:
        return Log(self._core, {**self._bound, **fields})

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self._core.threshold

    def debug(self, event: str, **fields: Any) -> None:
        if self._core.threshold <= 10:
            self._core.emit("debug", event, {**self._bound, **fields})

    def info(self, event: str, **fields: Any) -> None:
        if self._core.threshold <= 20:
            self._core.emit("info", event, {**self._bound, **fields})

    def warning(self, event: str, **fields: Any) -> None:
        if self._core.threshold <= 30:
            self._core.emit("warning", event, {**self._bound, **fields})

    def error(self, event: str, **fields: Any) -> None:
        self._core.emit("error", event, {**self._bound, **fields})

    def spool(self, limit: int = 1 << 20) -> Spool:
        """From now on, queue events for an async writer instead of writing them.

        See :class:`Spool`; ``limit`` bounds the bytes held.
        """
        spool = Spool(self._core.out, limit)
        self._core.out.spool = spool
        return spool


class _Core:
    __slots__ = ("out", "render", "threshold")

    def __init__(self, level: str, fmt: str, stream: TextIO) -> None:
        self.threshold = LEVELS[level]
        self.out = _Out(stream)
        self.render = _render_json if fmt == "json" else _console_renderer(_isatty(stream))

    def emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        try:
            self.out.write(self.render(level, event, fields, time.time()))
            self.out.flush()
        except OSError:
            pass  # stderr is gone (closed pipe): nothing useful left to do with the event


def _timestamp(now: float) -> str:
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{micros:06d}Z"


def _render_json(level: str, event: str, fields: dict[str, Any], now: float) -> str:
    record = {**fields, "event": event, "level": level, "timestamp": _timestamp(now)}
    return json.dumps(record, default=repr) + "\n"


#: ANSI colours for a terminal: the level's, then dim (timestamp), key and value
_LEVEL_COLOURS: Final = {
    "debug": "\x1b[32m",
    "info": "\x1b[32m",
    "warning": "\x1b[33m",
    "error": "\x1b[31;1m",
}
_DIM: Final = "\x1b[2m"
_BOLD: Final = "\x1b[1m"
_KEY: Final = "\x1b[36m"
_VALUE: Final = "\x1b[35m"
_RESET: Final = "\x1b[0m"
#: the event name column: names are padded to this width when fields follow
_EVENT_WIDTH: Final = 24
#: the level column: the longest level name and its brackets
_LEVEL_WIDTH: Final = 9


def _console_value(value: Any) -> str:
    """A value as ``key=`` shows it: bare when unambiguous, else its repr.

    repr escapes control characters, so a service's name or a kernel's error
    text can never paint the operator's terminal or forge a second line.
    """
    if isinstance(value, str) and value.isprintable() and value and not _UNSAFE.search(value):
        return value
    return repr(value)


_UNSAFE: Final = re.compile(r"[\s'\"=\\]")


def _console_renderer(colours: bool) -> Callable[[str, str, dict[str, Any], float], str]:
    if not colours:

        def render(level: str, event: str, fields: dict[str, Any], now: float) -> str:
            head = f"{_timestamp(now)} [{level:<{_LEVEL_WIDTH}}] "
            if not fields:
                return f"{head}{event}\n"
            pairs = " ".join(f"{key}={_console_value(value)}" for key, value in fields.items())
            return f"{head}{event:<{_EVENT_WIDTH}} {pairs}\n"

        return render

    def render_coloured(level: str, event: str, fields: dict[str, Any], now: float) -> str:
        colour = _LEVEL_COLOURS.get(level, "")
        head = f"{_DIM}{_timestamp(now)}{_RESET} [{colour}{level:<{_LEVEL_WIDTH}}{_RESET}] {_BOLD}"
        if not fields:
            return f"{head}{event}{_RESET}\n"
        pairs = " ".join(
            f"{_KEY}{key}{_RESET}={_VALUE}{_console_value(value)}{_RESET}"
            for key, value in fields.items()
        )
        return f"{head}{event:<{_EVENT_WIDTH}}{_RESET} {pairs}\n"

    return render_coloured


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def make_logger(level: str = "info", fmt: str = "console", stream: TextIO | None = None) -> Log:
    """A root logger writing to ``stream`` (stderr by default)."""
    return Log(_Core(level, fmt, sys.stderr if stream is None else stream), {})


class _Out:
    """Where rendered events go: the stream itself, or a spool while one is set."""

    __slots__ = ("__weakref__", "spool", "stream")

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.spool: Spool | None = None

    def write(self, text: str) -> None:
        if self.spool is not None:
            self.spool.put(text)
        else:
            self.stream.write(text)

    def flush(self) -> None:
        if self.spool is None:
            self.stream.flush()


class Spool:
    """tinit's own events, queued for a trio task that writes them without blocking.

    A blocking write to a stderr nobody reads (a stalled log collector)
    would freeze tinit's one thread: no reaping, no signals. Events wait
    here instead, bounded by ``limit`` bytes; past that the newest are
    counted and dropped, and the count is reported once writing resumes.
    """

    def __init__(self, out: _Out, limit: int) -> None:
        self._out = out
        self._limit = limit
        self._queue: list[bytes] = []
        self._size = 0
        self.dropped = 0
        #: a write had to be given up: stderr is not being read
        self.stalled = False
        self._wake: Any = None

    def put(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        if self._size + len(data) > self._limit:
            self.dropped += 1
            return
        self._queue.append(data)
        self._size += len(data)
        if self._wake is not None:
            self._wake.set()

    async def serve(self, sink: Any) -> None:
        """Write queued events to ``sink`` (an output.Sink) until cancelled."""
        import trio

        while True:
            if not self._queue:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            await self._drain_once(sink)

    async def _drain_once(self, sink: Any) -> None:
        import trio

        batch, self._queue, self._size = b"".join(self._queue), [], 0
        if self.dropped:
            note = f"tinit: {self.dropped} log events were dropped: stderr was not being read\n"
            batch = note.encode() + batch
            self.dropped = 0
        # Taken off the queue, so it must not be lost to a cancellation
        # halfway through; a reader stalled for good still can't hold it forever.
        with trio.CancelScope(shield=True), trio.move_on_after(_WRITE_GRACE) as waited:
            await sink.write(batch)
        if waited.cancelled_caught:
            self.stalled = True

    async def close(self, sink: Any, grace: float = 1.0) -> None:
        """Write what is queued (for at most ``grace`` seconds), then write directly again."""
        import trio

        with trio.move_on_after(grace):
            while self._queue or self.dropped:
                await self._drain_once(sink)
        if not self._queue and not self.stalled and sink.error is None:
            self._out.spool = None
        # else stderr is stalled or broken: later events stay queued, bounded,
        # and are lost with the process rather than hang its exit
