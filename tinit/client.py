"""The client commands: ``status``, ``start``, ``stop``, ``restart``, ``signal``,
``reload`` and ``logs`` talk to the running tinit over its control socket.

This module must stay quick to import: ``tinit status`` is a health probe, run
every few seconds, and importing trio alone costs more than the whole round
trip may. So it uses blocking ``socket`` and ``json`` only, and it never
imports trio (tests check that). The server side is `tinit.control`.

The protocol is one JSON object per line both ways. A request is
``{"v": 1, "cmd": ..., ...}``; a reply is ``{"v": 1, "ok": true, "result": ...}``
or ``{"v": 1, "ok": false, "error": "one sentence"}``.

``logs`` is answered by a stream of replies instead, each at most
`MAX_LOGS_MESSAGE` bytes, so that neither side ever holds every kept line at
once: first ``{"services": [names]}``, then any number of
``{"lines": [run, ...]}``, a run being ``{"ts", "service", "stream",
"lines": [text, ...]}`` (lines of one service's stream read at one time),
then ``{"end": true}`` once the kept lines are sent. With ``follow``, more
``{"lines": [...]}`` replies come after the end, as the services write.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, Any, Final

from .errors import ControlError, UsageError
from .replies import PROTOCOL_VERSION as PROTOCOL_VERSION
from .replies import (
    logs_header,
    logs_part,
    parse_reply,
    problems,
    reload_result,
    status_result,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

DEFAULT_CONTROL_SOCKET: Final = "/run/tinit/control.sock"
#: the largest request the server reads; longer ones close the connection
MAX_REQUEST: Final = 64 * 1024
#: how long a client command waits for its reply by default (stop may take a while)
DEFAULT_TIMEOUT: Final = 30.0
#: the longest reply believed: a status of hundreds of services takes a small part of it
MAX_REPLY: Final = 4 * 1024 * 1024
#: the longest message of a ``logs`` stream: tinit packs about 64 KiB of text in each,
#: which JSON's escapes may make at most six times longer
MAX_LOGS_MESSAGE: Final = 1024 * 1024
_RECEIVE_SIZE: Final = 256 * 1024
_UCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid

COMMANDS: Final = ("status", "start", "stop", "restart", "signal", "reload", "logs")


def socket_path(arg: str | None) -> str:
    """``--control-socket``, else ``$TINIT_CONTROL_SOCKET``, else the default path."""
    return arg or os.environ.get("TINIT_CONTROL_SOCKET") or DEFAULT_CONTROL_SOCKET


def parse_signal(text: str) -> int:
    """The number of the signal named ``text``: ``SIGHUP``, ``hup``, ``SIGRTMIN+3`` or ``1``.

    Raises ValueError with a sentence for anything else.
    """
    raw = text.strip()
    if raw.isdigit():
        number = int(raw)
        if 1 <= number < signal.NSIG:
            return number
        raise ValueError(f"signal number {number} is out of range (1-{signal.NSIG - 1})")
    name = raw.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    for base in ("SIGRTMIN", "SIGRTMAX"):
        if name == base or name.startswith(base + "+") or name.startswith(base + "-"):
            offset = name[len(base) :] or "+0"
            if offset[1:].isdigit():
                start = signal.SIGRTMIN if base == "SIGRTMIN" else signal.SIGRTMAX
                number = start + int(offset)
                if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                    return number
            raise ValueError(f"{text!r} is not a real-time signal this system has")
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(
            f"unknown signal {text!r} (give a name like SIGHUP or HUP, or a number)"
        ) from None


# -- the wire ---------------------------------------------------------------------


class Connection:
    """One open connection to the control socket; `request` is the one-shot form.

    Before anything is sent, the process listening is checked to be root or
    this user: anyone else may have bound a socket at that path, and its
    answers are not tinit's. The ``timeout`` bounds the whole exchange
    (connect, request, reply), and a reply is at most ``max_reply`` bytes.
    """

    def __init__(self, path: str, timeout: float | None, max_reply: int = MAX_REPLY) -> None:
        self.path = path
        self.timeout = timeout
        self.max_reply = max_reply
        self._buffer = bytearray()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._sock.settimeout(timeout)
            self._connect()
            self._check_peer()
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            self.close()
            raise ControlError(
                f"no tinit is listening on {path} (is it running? is the path right: "
                "--control-socket or TINIT_CONTROL_SOCKET)"
            ) from None
        except PermissionError:
            self.close()
            raise ControlError(
                f"permission denied connecting to {path}: run as root or as the user tinit runs as"
            ) from None
        except TimeoutError:
            self.close()
            raise self._timed_out() from None
        except OSError as exc:
            self.close()
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        except ControlError:
            self.close()
            raise

    def _connect(self) -> None:
        # A full backlog makes connect() on a non-blocking AF_UNIX socket fail
        # with EAGAIN (it never says EINPROGRESS): wait a little and try again.
        pause = 0.001
        while True:
            try:
                self._sock.connect(self.path)
                return
            except BlockingIOError:
                if self._deadline is not None and time.monotonic() + pause > self._deadline:
                    raise TimeoutError from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def _check_peer(self) -> None:
        """Refuse a server that runs as neither root nor this user (SO_PEERCRED)."""
        raw = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        pid, uid, _gid = _UCRED.unpack(raw)
        if uid not in (0, os.geteuid()):
            raise ControlError(
                f"the process answering on {self.path} (pid {pid}) runs as uid {uid}, "
                "neither root nor you: not trusting it as tinit"
            )

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_forever(self) -> None:
        """From now on, wait for messages without a time limit (``logs -f``)."""
        self._deadline = None
        self._sock.settimeout(None)

    def _timed_out(self) -> ControlError:
        return ControlError(
            f"tinit on {self.path} did not answer within {self.timeout:g}s "
            "(give more time with --timeout)"
        )

    def _arm(self) -> None:
        """Let the next blocking call take only what is left of the exchange's time."""
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise self._timed_out()
            self._sock.settimeout(left)

    def send(self, payload: dict[str, Any]) -> None:
        data = json.dumps({"v": PROTOCOL_VERSION, **payload}, separators=(",", ":")) + "\n"
        self._arm()
        try:
            self._sock.sendall(data.encode())
        except TimeoutError:
            raise self._timed_out() from None
        except OSError as exc:
            raise ControlError(f"lost the connection to tinit on {self.path}: {exc}") from None

    def receive(self) -> dict[str, Any] | None:
        """The next message from tinit, or None when tinit closed the connection."""
        line = self._receive_line()
        return None if line is None else parse_reply(line, self.path)

    def _receive_line(self) -> bytes | None:
        searched = 0  # the buffer before this holds no newline: never scan it twice
        while (end := self._buffer.find(b"\n", searched)) < 0:
            searched = len(self._buffer)
            if searched > self.max_reply:
                raise ControlError(
                    f"the reply from {self.path} is longer than {self.max_reply} bytes: not tinit's"
                )
            self._arm()
            try:
                chunk = self._sock.recv(min(_RECEIVE_SIZE, self.max_reply + 1 - searched))
            except TimeoutError:
                raise self._timed_out() from None
            except OSError as exc:
                raise ControlError(f"lost the connection to tinit on {self.path}: {exc}") from None
            if not chunk:
                if self._buffer:
                    raise ControlError(f"tinit on {self.path} closed the connection mid-reply")
                return None
            self._buffer += chunk
        if end > self.max_reply:
            raise ControlError(
                f"the reply from {self.path} is longer than {self.max_reply} bytes: not tinit's"
            )
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def call(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return its reply (``ok`` true or false)."""
        self.send(payload)
        reply = self.receive()
        if reply is None:
            raise ControlError(f"tinit on {self.path} closed the connection without a reply")
        return reply


def request(
    path: str, payload: dict[str, Any], timeout: float | None = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """Send one request to the tinit at ``path``; return its reply, ``ok`` true or false.

    ``"v"`` is added. Raises ControlError when no tinit listens there, the
    connection fails, or no reply comes within ``timeout`` seconds.
    """
    with Connection(path, timeout) as conn:
        return conn.call(payload)


def _result(reply: dict[str, Any]) -> Any:
    if not reply["ok"]:
        raise ControlError(str(reply.get("error") or "tinit refused the request"))
    return reply.get("result")


# -- the command line -------------------------------------------------------------


def _timeout(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of lines, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more lines, got {value}")
    return value


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the client subcommands to ``tinit``'s subparsers."""

    def add(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
        parser.add_argument(
            "--control-socket",
            metavar="PATH",
            help=f"the running tinit's socket (default: $TINIT_CONTROL_SOCKET, "
            f"else {DEFAULT_CONTROL_SOCKET})",
        )
        parser.add_argument(
            "--timeout",
            type=_timeout,
            default=DEFAULT_TIMEOUT,
            metavar="SECONDS",
            help=f"how long to wait for tinit's answer (default {DEFAULT_TIMEOUT:g})",
        )
        return parser

    status = add(
        "status",
        "show the services of the running tinit; exit 0 if all are running and ready"
        " (a completed oneshot or a service stopped with `tinit stop` counts as fine)",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument(
        "--watch",
        action="store_true",
        help="redraw the table every second, with CPU %%, until q or Ctrl-C "
        "(without a terminal: print it once)",
    )
    status.add_argument("names", nargs="*", metavar="NAME")
    for verb in ("start", "stop", "restart"):
        add(verb, f"{verb} services of the running tinit").add_argument(
            "names", nargs="+", metavar="NAME"
        )
    sig = add("signal", "send a signal to services' process groups")
    sig.add_argument("signal", metavar="SIGNAL")
    sig.add_argument("names", nargs="+", metavar="NAME")
    add("reload", "re-read the config file and apply the difference (as SIGHUP)")
    logs = add("logs", "print recent output of services, kept in memory by tinit")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument(
        "-n", "--lines", type=_count, metavar="N", help="only the last N lines of each service"
    )
    logs.add_argument(
        "--total", action="store_true", help="with -n: the last N lines of all services together"
    )
    logs.add_argument("names", nargs="*", metavar="NAME")


def run(args: argparse.Namespace) -> int:
    """Run the client subcommand ``args.command``; return the exit code.

    Errors (no tinit, refused, unknown service, timeout) raise ControlError,
    a bad signal name UsageError; the caller prints them.
    """
    path = socket_path(args.control_socket)
    timeout: float = args.timeout
    names: list[str] = list(getattr(args, "names", []))
    command: str = args.command
    if command == "status":
        if args.watch and args.json:
            raise UsageError("--watch draws a table for a person; it does not go with --json")
        if args.watch and sys.stdout.isatty():
            from .watch import run_watch

            return run_watch(path, names, timeout)
        reply = request(path, {"cmd": "status", "names": names}, timeout)
        services = status_result(_result(reply), path)
        if args.json:
            print(json.dumps(services, indent=2))
        else:
            print(format_status(services), end="")
        return 0 if all(_healthy(s) for s in services) else 1
    if command in ("start", "stop", "restart"):
        _result(request(path, {"cmd": command, "names": names}, timeout))
        return 0
    if command == "signal":
        try:
            signum = parse_signal(args.signal)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            sig = signal.Signals(signum).name
        except ValueError:
            sig = str(signum)  # a real-time signal: its number says it exactly
        _result(request(path, {"cmd": "signal", "signal": sig, "names": names}, timeout))
        return 0
    if command == "reload":
        return _reload(path, timeout)
    if command == "logs":
        if args.total and args.lines is None:
            raise UsageError("--total counts the lines of -n N: give -n too")
        return _logs(path, timeout, args)
    raise UsageError(f"unknown client command {command!r}")


def _healthy(service: dict[str, Any]) -> bool:
    """Running and ready, a oneshot that completed, a job waiting for its next run, stopped
    by an operator (``held``), or disabled and not started.

    A service stopped with ``tinit stop`` is down on purpose, and a disabled
    one is where its config wants it: counting either would turn a
    container's HEALTHCHECK unhealthy for a deliberate act.
    """
    if service.get("completed") or service.get("held") or service.get("state") == "disabled":
        return True
    if "next_run" in service:  # a scheduled job: ready while its schedule is served
        return service.get("ready") is True
    return service.get("state") == "running" and service.get("ready") is True


def _reload(path: str, timeout: float) -> int:
    reply = request(path, {"cmd": "reload"}, timeout)
    if not reply["ok"]:
        for problem in problems(reply, path):
            print(f"tinit: {problem}", file=sys.stderr)
        raise ControlError(str(reply.get("error") or "tinit refused to reload"))
    diff = reload_result(reply.get("result"), path)
    shown = False
    for key, names in diff.items():
        if names:
            print(f"{key}: {', '.join(names)}")
            shown = True
    if not shown:
        print("nothing changed")
    return 0


def _logs(path: str, timeout: float, args: argparse.Namespace) -> int:
    """``tinit logs``: print the kept lines as they stream in, then new ones with ``-f``."""
    follow: bool = args.follow
    payload: dict[str, Any] = {"cmd": "logs", "names": list(args.names), "follow": follow}
    if args.lines is not None:
        payload["n"] = args.lines
    if args.total:
        payload["total"] = True
    try:
        with Connection(path, timeout, max_reply=MAX_LOGS_MESSAGE) as conn:
            services = logs_header(_result(conn.call(payload)), path)
            width = max((len(s) for s in services), default=0)
            while (runs := logs_part(_result(_next(conn)), path)) is not None:
                _print_runs(runs, width)
            if not follow:
                return 0
            sys.stdout.flush()
            conn.wait_forever()  # following has no end but the user's Ctrl-C
            while (message := conn.receive()) is not None:
                runs = logs_part(_result(message), path)
                if runs is None:
                    raise ControlError(f"tinit on {path} ended the kept lines twice")
                _print_runs(runs, width)
                sys.stdout.flush()
            return 0  # tinit ended
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader (say `| head`) is gone: quietly stop, and keep Python's
        # flush at exit from complaining about the same pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def _next(conn: Connection) -> dict[str, Any]:
    message = conn.receive()
    if message is None:
        raise ControlError(f"tinit on {conn.path} closed the connection mid-reply")
    return message


#: what separates a service's name from its line in ``tinit logs``: ``!`` marks stderr
STREAM_MARKS: Final = {"stdout": "|", "stderr": "!"}


def _print_runs(runs: Sequence[dict[str, Any]], width: int) -> None:
    """Print runs of lines to stdout, each as ``NAME | line``, or ``NAME ! line`` from stderr."""
    for run in runs:
        mark = STREAM_MARKS.get(run["stream"], "?")
        label = f"{run['service']:<{width}} {mark} "
        sys.stdout.write("".join(f"{label}{line}\n" for line in run["lines"]))


# -- the status table ---------------------------------------------------------------

_COLUMNS: Final = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST-EXIT", "READY", "MEMORY")


def format_status(services: Sequence[dict[str, Any]]) -> str:
    """The ``tinit status`` table, one row per service, columns padded."""
    scheduled = any(s.get("next_run_in") is not None for s in services)
    said = any(isinstance(s.get("status_text"), str) for s in services)
    rows = [
        [*_COLUMNS, "PIDS", *(["NEXT-RUN"] if scheduled else []), *(["STATUS"] if said else [])]
    ]
    for s in services:
        rows.append(
            [
                str(s.get("name", "?")),
                str(s.get("state", "?")),
                _or_dash(s.get("pid")),
                "-" if s.get("uptime") is None else format_duration(float(s["uptime"])),
                str(s.get("restarts", 0)),
                format_exit(s.get("last_exit")),
                "yes" if s.get("ready") else "no",
                "-" if s.get("memory") is None else format_bytes(int(s["memory"])),
                _or_dash(s.get("pids")),
                *([_next_run(s.get("next_run_in"))] if scheduled else []),
                *([_status_text(s.get("status_text"))] if said else []),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def _next_run(seconds: object) -> str:
    """``in 4m12s`` for a scheduled job; ``-`` for any other service."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "-"
    return f"in {format_duration(float(seconds))}"


def _status_text(text: object) -> str:
    """A service's sd_notify ``STATUS=``, fit for a terminal; ``-`` without one."""
    if not isinstance(text, str):
        return "-"
    return "".join(c if c.isprintable() else "?" for c in text)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def format_duration(seconds: float) -> str:
    """``45s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    total = max(int(seconds), 0)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_bytes(n: int) -> str:
    """``512B``, ``980.0K``, ``12.3M``, ``1.5G`` (powers of 1024)."""
    if n < 1024:
        return f"{n}B"
    value = float(n)
    for unit in "KMGTP":
        value /= 1024
        if value < 1024 or unit == "P":
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    raise AssertionError("unreachable")


def format_exit(last: object) -> str:
    """``-`` before any exit; ``OOM`` for an OOM kill; else the signal name or exit code."""
    if not isinstance(last, dict):
        return "-"
    if last.get("oom"):
        return "OOM"
    sig = last.get("signal")
    if isinstance(sig, int) and not isinstance(sig, bool):
        try:
            return signal.Signals(sig).name
        except ValueError:
            return f"signal {sig}"
    if sig:
        return str(sig)
    code = last.get("exit_code")
    return "-" if code is None else str(code)
