"""tinit's own log events (SPEC §10), through structlog.

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


class _Core:
    __slots__ = ("_logger", "fmt", "stream", "threshold")

    def __init__(self, level: str, fmt: str, stream: TextIO) -> None:
        self.threshold = LEVELS[level]
        self.fmt = fmt
        self.stream = stream
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
            structlog.PrintLogger(self.stream),
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
