"""tinit's own log events (docs/configuration.md, ``settings.log_format``), through structlog.

structlog is imported on the first event that passes the level filter, not
before: in one-command mode tinit is quiet by default, and importing
structlog costs about as much as everything else on the path to the child's
exec. Events are written to stderr, one line each, ``console`` or ``json``.
"""

from __future__ import annotations

import sys
from typing import Any, Final, TextIO

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
    __slots__ = ("_logger", "fmt", "out", "stream", "threshold")

    def __init__(self, level: str, fmt: str, stream: TextIO) -> None:
        self.threshold = LEVELS[level]
        self.fmt = fmt
        self.stream = stream
        self.out = _Out(stream)
        self._logger: Any = None

    def emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if self._logger is None:
            self._logger = self._build()
        try:
            getattr(self._logger, level)(event, **fields)
        except OSError:
            pass  # stderr is gone (closed pipe): nothing useful left to do with the event

    def _build(self) -> Any:
        import structlog

        renderer: Any
        if self.fmt == "json":
            renderer = structlog.processors.JSONRenderer()
        else:
            renderer = structlog.dev.ConsoleRenderer(
                colors=_isatty(self.stream), pad_event_to=24, sort_keys=False
            )
        return structlog.wrap_logger(
            structlog.PrintLogger(self.out),  # type: ignore[arg-type]
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                renderer,
            ],
            cache_logger_on_first_use=True,
        )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def make_logger(level: str = "info", fmt: str = "console", stream: TextIO | None = None) -> Log:
    """A root logger writing to ``stream`` (stderr by default)."""
    return Log(_Core(level, fmt, sys.stderr if stream is None else stream), {})


class _Out:
    """What structlog writes to: the stream itself, or a spool while one is set."""

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
