"""``tinit status --watch``: the services as a table that redraws itself about once a second.

Read-only and light like the rest of the client (it never imports trio). Each
refresh is one ``status`` request on a fresh connection, so a tinit that is
busy, restarting its services or gone costs one line of error on the screen,
never the view: the last good table stays up and the next second tries again.

The drawing is a handful of ANSI sequences rather than a terminal library.
The alternate screen leaves the user's scrollback as it was; each frame goes
to the top left, rewrites every line, and clears what the previous frame left
below; lines are cut to the terminal's width, and a resize (SIGWINCH) redraws
at once. Every change to the terminal (alternate screen, hidden cursor, no
line wrap, no echo) is undone on the way out, whether the user pressed ``q``
or Ctrl-C or the view got SIGTERM or SIGHUP.

CPU % is the growth of the service cgroup's ``usage_usec`` between two
refreshes over the time between them: 100% is one core kept busy.
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import select
import signal
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, NoReturn

from .client import format_bytes, format_duration, format_exit, request
from .errors import ControlError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

#: seconds from one refresh to the next
INTERVAL: Final = 1.0
#: the longest one refresh waits for tinit (``--timeout`` when that is shorter)
REFRESH_TIMEOUT: Final = 10.0
#: the widest a service name is shown; a longer one ends in ``~``
NAME_WIDTH: Final = 24
#: the widest any other cell is shown (a reply is data, not layout)
CELL_WIDTH: Final = 32
#: an sd_notify status line is longer than other cells, and last in its row
STATUS_WIDTH: Final = 80
COLUMNS: Final = (
    "NAME",
    "STATE",
    "PID",
    "UPTIME",
    "RESTARTS",
    "LAST-EXIT",
    "READY",
    "CPU",
    "MEMORY",
    "PIDS",
)

# Alternate screen, hidden cursor, no line wrap; and back.
_ENTER: Final = "\x1b[?1049h\x1b[?25l\x1b[?7l"
_LEAVE: Final = "\x1b[?7h\x1b[?25h\x1b[?1049l"
_HOME: Final = "\x1b[H"
_CLEAR_LINE: Final = "\x1b[K"
_CLEAR_BELOW: Final = "\x1b[J"
_FALLBACK_SIZE: Final = (80, 24)


# -- what a frame shows (pure) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One status reply and the moment it arrived (monotonic seconds)."""

    at: float
    services: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class View:
    """One frame: a title, the latest good sample with its CPU figures, the latest error."""

    title: str
    sample: Sample | None = None
    cpu: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


def parse_sample(result: object, at: float) -> Sample:
    """The services of a status reply; ControlError when it is not a list of objects."""
    if not isinstance(result, list) or not all(isinstance(s, dict) for s in result):
        raise ControlError("tinit answered a status that is not a list of services")
    return Sample(at, tuple(result))


def cpu_percent(before: Sample | None, after: Sample) -> dict[str, float]:
    """Each service's CPU % from ``before`` to ``after``, by name.

    A service absent from either sample, without a cgroup, or whose counter
    went down (its cgroup was made anew) has no figure.
    """
    if before is None or after.at <= before.at:
        return {}
    elapsed_usec = (after.at - before.at) * 1e6
    used = {str(s.get("name")): _int(s.get("cpu_usec")) for s in before.services}
    found = {}
    for service in after.services:
        name = str(service.get("name"))
        now, then = _int(service.get("cpu_usec")), used.get(name)
        if now is not None and then is not None and now >= then:
            found[name] = 100.0 * (now - then) / elapsed_usec
    return found


def render(view: View, width: int, height: int) -> list[str]:
    """The lines of one frame: at most ``height`` of them, none longer than ``width``."""
    width, height = max(width, 1), max(height, 3)
    lines = [view.title]
    if view.error is not None:
        lines.append(f"refresh failed, retrying: {_clean(view.error, 1024)}")
    elif view.sample is not None:
        lines.append(summary(view.sample))
    if view.sample is not None:
        services = view.sample.services
        table = table_lines(services, view.cpu)
        room = height - len(lines)
        if len(table) > room:
            shown = max(room - 2, 0)  # the header, the rows that fit, one line to say so
            more = len(services) - shown
            table = [*table[: shown + 1], f"... and {more} more (a taller terminal shows them)"]
            table = table[-room:]
        lines.extend(table)
    return [line[:width] for line in lines]


def summary(sample: Sample) -> str:
    services = sample.services
    running = sum(1 for s in services if s.get("state") == "running")
    ready = sum(1 for s in services if s.get("ready") is True)
    restarts = sum(_int(s.get("restarts")) or 0 for s in services)
    counted = f"{len(services)} service" + ("" if len(services) == 1 else "s")
    return f"{counted}: {running} running, {ready} ready, {restarts} restarts in all"


def table_lines(services: Sequence[Mapping[str, Any]], cpu: Mapping[str, float]) -> list[str]:
    """The header and one row per service, in columns padded to their widest cell."""
    said = any(isinstance(s.get("status_text"), str) for s in services)
    rows = [[*COLUMNS, *(["STATUS"] if said else [])]]
    rows.extend([*_row(s, cpu), *([_said(s)] if said else [])] for s in services)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _row(service: Mapping[str, Any], cpu: Mapping[str, float]) -> list[str]:
    name = str(service.get("name"))
    share = cpu.get(name)
    uptime, memory = _number(service.get("uptime")), _int(service.get("memory"))
    return [
        _clean(name, NAME_WIDTH),
        _clean(service.get("state", "?")),
        _or_dash(_int(service.get("pid"))),
        "-" if uptime is None else format_duration(uptime),
        _or_dash(_int(service.get("restarts"))),
        _clean(format_exit(service.get("last_exit"))),
        "yes" if service.get("ready") is True else "no",
        "-" if share is None else f"{share:.1f}%",
        "-" if memory is None else format_bytes(max(memory, 0)),
        _or_dash(_int(service.get("pids"))),
    ]


def _said(service: Mapping[str, Any]) -> str:
    """The service's sd_notify ``STATUS=`` (the last column: the line's end cuts it)."""
    text = service.get("status_text")
    return _clean(text, STATUS_WIDTH) if isinstance(text, str) else "-"


def _clean(value: object, width: int = CELL_WIDTH) -> str:
    """``value`` as text that cannot move the cursor or colour the screen, cut to ``width``."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= width else text[: width - 1] + "~"


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


# -- the loop ---------------------------------------------------------------------------


def refresh(view: View, path: str, names: Sequence[str], timeout: float) -> View:
    """The view after one more status request: new figures, or the old ones and the error."""
    title = f"tinit on {_clean(path, 256)}  {time.strftime('%H:%M:%S')}  (q or Ctrl-C: quit)"
    try:
        reply = request(path, {"cmd": "status", "names": list(names)}, timeout)
        if not reply["ok"]:
            raise ControlError(str(reply.get("error") or "tinit refused the request"))
        sample = parse_sample(reply.get("result"), time.monotonic())
    except ControlError as exc:
        return replace(view, title=title, error=str(exc))
    return View(title, sample, cpu_percent(view.sample, sample))


def run_watch(path: str, names: Sequence[str], timeout: float) -> int:
    """Show the view on the terminal that is stdout until the user quits; return 0.

    Ctrl-C, ``q``, SIGTERM and SIGHUP all end it the same way: the terminal
    put back as it was, and exit code 0.
    """
    keys = 0 if os.isatty(0) else None
    try:
        with open_terminal(1, keys) as terminal:
            _run_view(terminal, path, names, min(timeout, REFRESH_TIMEOUT))
    except (KeyboardInterrupt, _Stopped):
        pass
    return 0


def _run_view(terminal: Terminal, path: str, names: Sequence[str], timeout: float) -> None:
    view = View(f"tinit on {_clean(path, 256)}")
    while True:
        view = refresh(view, path, names, timeout)
        terminal.draw(view)
        next_at = time.monotonic() + INTERVAL
        while (event := terminal.wait(next_at)) is _Event.RESIZED:
            terminal.draw(view)
        if event is _Event.QUIT:
            return


# -- the terminal ---------------------------------------------------------------------


class _Event(enum.Enum):
    TICK = enum.auto()
    RESIZED = enum.auto()
    QUIT = enum.auto()


class _Stopped(BaseException):
    """SIGTERM or SIGHUP: end the view as Ctrl-C does (a BaseException, like KeyboardInterrupt)."""


def _stop(signum: int, frame: object) -> NoReturn:
    raise _Stopped


def _ignore(signum: int, frame: object) -> None:
    """SIGWINCH needs a handler for the wake-up pipe to hear of it; the pipe does the rest."""


class Terminal:
    """The terminal as the view uses it: draw a frame, wait for the next tick or key."""

    def __init__(self, out: int, keys: int | None, wake: int) -> None:
        self._out = out
        self._keys = keys
        self._wake = wake

    def size(self) -> tuple[int, int]:
        try:
            columns, lines = os.get_terminal_size(self._out)
        except OSError:
            return _FALLBACK_SIZE
        return columns, lines

    def draw(self, view: View) -> None:
        lines = render(view, *self.size())
        frame = _HOME + (_CLEAR_LINE + "\r\n").join(lines) + _CLEAR_LINE + _CLEAR_BELOW
        try:
            _write_all(self._out, frame)
        except OSError:
            raise _Stopped from None  # the terminal hung up: nobody is left to look

    def wait(self, until: float) -> _Event:
        """Until the monotonic time ``until``, a resize, or ``q`` on the keyboard."""
        while (left := until - time.monotonic()) > 0:
            watched = [self._wake] if self._keys is None else [self._wake, self._keys]
            ready, _, _ = select.select(watched, [], [], left)
            if self._wake in ready and _drain_resized(self._wake):
                return _Event.RESIZED
            if self._keys is not None and self._keys in ready:
                typed = os.read(self._keys, 64)
                if not typed:
                    self._keys = None  # the keyboard is gone; Ctrl-C and signals still work
                elif b"q" in typed.lower():
                    return _Event.QUIT
        return _Event.TICK


@contextlib.contextmanager
def open_terminal(out: int, keys: int | None) -> Iterator[Terminal]:
    """Take over the terminal on ``out`` (and read keys from ``keys``); put it all back after.

    Each change registers its undoing as soon as it is made, so whatever
    interrupts the set-up, what was done is undone. Ctrl-C, SIGTERM and SIGHUP
    are ignored while that happens: a second Ctrl-C must not leave the
    terminal half restored.
    """
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH)
    with contextlib.ExitStack() as undo:
        before = {signum: signal.getsignal(signum) for signum in handled}
        undo.callback(_set_handlers, before)
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGHUP, _stop)
        signal.signal(signal.SIGWINCH, _ignore)
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        undo.callback(os.close, wake_read)
        undo.callback(os.close, wake_write)
        undo.callback(
            signal.set_wakeup_fd, signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        )
        if keys is not None:
            _quiet_keys(keys, undo)
        _write_all(out, _ENTER)
        undo.callback(_write_quietly, out, _LEAVE)
        undo.callback(_set_handlers, dict.fromkeys(handled[:3], signal.SIG_IGN))
        yield Terminal(out, keys, wake_read)


def _quiet_keys(keys: int, undo: contextlib.ExitStack) -> None:
    """Keys reach the view one by one and are not echoed over the table."""
    import termios

    saved = termios.tcgetattr(keys)
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ICANON)
    termios.tcsetattr(keys, termios.TCSANOW, quiet)
    undo.callback(termios.tcsetattr, keys, termios.TCSANOW, saved)


def _set_handlers(handlers: Mapping[signal.Signals, Any]) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def _drain_resized(wake: int) -> bool:
    """Empty the wake-up pipe; True if SIGWINCH was among the signals in it."""
    seen = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(wake, 256):
            seen += chunk
    return signal.SIGWINCH in seen


def _write_all(fd: int, text: str) -> None:
    data = text.encode("utf-8", "replace")
    while data:
        data = data[os.write(fd, data) :]


def _write_quietly(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        _write_all(fd, text)
