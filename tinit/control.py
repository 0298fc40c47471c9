"""The control socket: the server side of ``tinit status``, ``start`` and the rest.

`serve_control` runs inside tinit's one trio thread, next to the services, so
nothing a client does may stall it or them: every read has a deadline, a
request is at most `MAX_REQUEST` bytes, a reply that the client does not read
is dropped after the same deadline, and one connection's trouble ends that
connection only. Connections above `MAX_CONNECTIONS` are turned away rather
than let tinit run out of descriptors, which its services need.

Every request gets its reply, even the one that ends tinit (``tinit stop``
of the last service): before the server is cancelled, the supervisor calls
`ReplyDrain.finish_replies`, which refuses new requests and waits, until a
short deadline, for the replies being prepared to be sent.

The supervisor is reached through `ControlTarget`, a narrow protocol, so the
server can be tested against a fake. The wire format is described in
`tinit.client`, which holds the constants both sides share (it does not
import trio, so importing it here costs nothing).
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import socket
import stat
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

import trio

from . import __version__
from .client import MAX_REQUEST, PROTOCOL_VERSION, parse_signal
from .errors import ConfigError, ControlError, TinitError
from .state import signal_name

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping, Sequence

    from .logs import Log
    from .ringread import Run

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_REQUEST",
    "ControlTarget",
    "Metrics",
    "ReplyDrain",
    "ServiceMetrics",
    "serve_control",
]

#: seconds a client may take to send one request, or to take one reply
IDLE_TIMEOUT: Final = 10.0
#: open connections served at once; more are answered with an error and closed
MAX_CONNECTIONS: Final = 256

_RECEIVE_SIZE: Final = 16 * 1024
_UCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid
_FIELDS: Final = frozenset({"v", "cmd", "names", "signal", "n", "follow", "total"})
#: weight (`Run.weight`) of the runs packed into one ``logs`` message (one run may pass
#: it): JSON takes at most 6 bytes a character, so a message stays well under the
#: client's limit
_LOGS_MESSAGE_WEIGHT: Final = 64 * 1024
_ACTIONS: Final = frozenset({"start", "stop", "restart", "signal", "reload"})


@dataclass(frozen=True, slots=True)
class ServiceMetrics:
    """The counters and gauges of one service, for ``GET /metrics``."""

    name: str
    up: bool
    ready: bool
    restarts_total: int
    #: exits by code: ``"0"``, ``"1"``, ... or the signal name (``"SIGKILL"``)
    exits_total: Mapping[str, int] = field(default_factory=dict)
    oom_kills_total: int = 0
    #: memory held for ``tinit logs`` (bounded per service)
    log_bytes: int = 0
    #: a scheduled job's next run (seconds since the epoch), None for other services
    next_run: float | None = None
    scheduled_runs_total: int = 0
    #: scheduled times skipped because the previous run still went on
    schedule_skips_total: int = 0
    #: sd_notify datagrams dropped, by reason (sdnotify.Drop)
    notify_dropped_total: Mapping[str, int] = field(default_factory=dict)
    #: runs stopped because their sd_notify watchdog pings stopped
    watchdog_misses_total: int = 0
    #: ``MAINPID=`` refused: the pid was not of the service's run
    main_pid_refused_total: int = 0
    #: rotations of its ``file:`` output
    log_rotations_total: int = 0


@dataclass(frozen=True, slots=True)
class Metrics:
    """What tinit reports on ``GET /metrics``."""

    services: Sequence[ServiceMetrics]
    orphans_reaped_total: int
    uptime_seconds: float


class ControlTarget(Protocol):
    """What the control socket and the health endpoint need from the supervisor."""

    def status(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """One dict per service named (every service when ``names`` is empty).

        Keys: ``name``, ``state`` (a `State` value), ``pid`` (int or None),
        ``uptime`` (seconds or None), ``restarts``, ``last_exit``
        (``{"exit_code", "signal"}`` or None; ``"oom": true`` marks an OOM
        kill), ``ready`` (bool), ``memory`` (bytes or None), ``pids`` (int or
        None), ``oom_kills``; optionally ``completed`` (a oneshot that finished
        with success: counts as healthy for ``tinit status``); for a scheduled
        job ``next_run`` (ISO 8601, UTC), ``next_run_in`` (seconds),
        ``scheduled_runs`` and ``schedule_skips``; for a service that said
        them over sd_notify, ``status_text`` and ``main_pid``;
        ``log_rotations`` (of a ``file:`` output). Raises KeyError(name) for
        an unknown service.
        """
        ...

    async def start(self, names: Sequence[str]) -> None: ...

    async def stop(self, names: Sequence[str]) -> None:
        """Return once every service named is stopped."""
        ...

    async def restart(self, names: Sequence[str]) -> None: ...

    def send_signal(self, signum: int, names: Sequence[str]) -> None: ...

    async def reload(self) -> dict[str, list[str]]:
        """Re-read the config; name lists by what happened to each service.

        ``added``, ``removed``, ``changed`` (restarted), ``updated`` (new
        config taken in place, same process) and ``unchanged``.

        Raises ConfigError, changing nothing, when the new file is invalid.
        """
        ...

    def logs(self, names: Sequence[str], n: int | None, *, total: bool = False) -> Iterator[Run]:
        """The lines kept, oldest first: the last ``n`` of each service (all without ``n``).

        With ``total``, the last ``n`` of all services together. Read lazily,
        each `Run` bounded (`tinit.ringread`), from what was kept when called.
        """
        ...

    def follow(self, names: Sequence[str]) -> AsyncIterator[Run]:
        """Lines added from now on, as they arrive, until cancelled.

        "Now" is best taken when ``follow`` is called, not at the first
        iteration: the server calls ``follow`` and then `logs`, without a
        checkpoint between, and only then starts iterating.
        """
        ...

    def metrics(self) -> Metrics: ...

    def health(self) -> tuple[bool, bool]:
        """(alive: no critical service failed, ready: every service up, or down on purpose)."""
        ...


class ReplyDrain(Protocol):
    """What the supervisor holds of a running control server, for its last moments."""

    async def finish_replies(self, deadline: float) -> None:
        """Refuse new requests; return once every reply owed is sent, or at ``deadline``."""
        ...


@dataclass(frozen=True, slots=True)
class _Logs:
    """A ``logs`` reply before it is sent: names, kept lines, and new ones if followed."""

    services: list[str]
    kept: Iterator[Run]
    updates: AsyncIterator[Run] | None


class _BadRequest(Exception):
    """A request the server refuses; its message is the error sentence."""


async def serve_control(
    path: str,
    target: ControlTarget,
    log: Log,
    *,
    idle_timeout: float = IDLE_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    task_status: trio.TaskStatus[ReplyDrain] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the control socket at ``path`` until cancelled; the socket file goes with it.

    Startup failures (the directory cannot be made, another tinit answers on
    ``path``, ``path`` is not a socket) raise ControlError before
    ``task_status.started()``, which hands over the server's `ReplyDrain`.
    """
    sock, ident = await _bind(path)
    try:
        sock.listen(max(max_connections, 128))  # room for a burst of probes
        server = _Server(target, log, idle_timeout, max_connections)
        log.info("control_listening", path=path)
        task_status.started(server)
        await trio.serve_listeners(server.handle, [trio.SocketListener(sock)])
    finally:
        sock.close()
        with contextlib.suppress(OSError):
            now = os.stat(path)
            if (now.st_dev, now.st_ino) == ident:
                os.unlink(path)  # only our own: a successor may have bound it since


async def _bind(path: str) -> tuple[trio.socket.SocketType, tuple[int, int]]:
    """A socket bound to ``path``, mode 0600, and the (st_dev, st_ino) of its file."""
    try:
        _make_directory(os.path.dirname(path) or ".")
        await _remove_stale(path)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        raise _cannot_make(path, exc) from None
    sock = trio.socket.from_stdlib_socket(raw)
    try:
        # The blocking bind of the stdlib socket, not trio's: trio binds
        # AF_UNIX sockets in a worker thread, and tinit forks its children on
        # the assumption that it never has a second thread (spawn.py).
        raw.bind(path)
        # Before listen(): until then a connect is refused, so no client ever
        # reaches the socket with the umask's mode.
        os.chmod(path, 0o600)
        st = os.stat(path)
    except OSError as exc:
        sock.close()
        raise _cannot_make(path, exc) from None
    return sock, (st.st_dev, st.st_ino)


def _make_directory(directory: str) -> None:
    """Make the socket's directory 0700 if missing, in a place only trusted users control.

    An existing directory is left as it is, but checked like a new one: see
    `check_directory`.
    """
    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        existing = directory
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        check_directory(existing, final=False)  # before making anything there
        os.makedirs(os.path.dirname(directory), mode=0o755, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
            os.chmod(directory, 0o700)  # whatever the umask took away
    check_directory(directory)


def check_directory(directory: str, *, final: bool = True) -> None:
    """Refuse a socket directory that a user other than root or tinit's own could change.

    Whoever can write to the socket's directory can put their own socket in
    its place, and a client would send them its requests. So the directory
    and every directory above it must belong to root or to tinit's user, and
    none may be writable by group or others, except that one above (not the
    socket's own, ``final``) may be if it is sticky, like /tmp: there nobody
    can rename or remove what they do not own. A symbolic link on the way
    must belong to root or tinit's user too, and its target is checked the
    same way. Raises ControlError with the first directory at fault.
    """
    trusted = (0, os.geteuid())
    path = os.path.abspath(directory)
    chains = [path]
    real = os.path.realpath(path)
    if real != path:
        chains.append(real)
    for chain in chains:
        parts = chain.split(os.sep)[1:] if chain != os.sep else []
        prefixes = [os.sep] + [os.sep + os.sep.join(parts[: i + 1]) for i in range(len(parts))]
        for prefix in prefixes:
            _check_component(prefix, trusted, last=final and prefix == chain)


def _check_component(path: str, trusted: tuple[int, int], *, last: bool) -> None:
    st = os.lstat(path)
    if st.st_uid not in trusted:
        raise ControlError(
            f"refusing the control socket's directory: {path} belongs to uid {st.st_uid}, "
            "not root or tinit's user, who could put a socket of their own in its place"
        )
    if stat.S_ISLNK(st.st_mode):
        return  # its target is on the resolved chain, checked as well
    if not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"refusing the control socket's directory: {path} is not a directory")
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and (last or not st.st_mode & stat.S_ISVTX):
        raise ControlError(
            f"refusing the control socket's directory: {path} is writable by others than "
            f"root and tinit's user (mode {stat.S_IMODE(st.st_mode):04o}): choose a "
            "directory only they can write to, such as /run/tinit"
        )


def _cannot_make(path: str, exc: OSError) -> ControlError:
    return ControlError(f"cannot make the control socket {path}: {exc.strerror or exc}")


async def _remove_stale(path: str) -> None:
    """Unlink ``path`` if it is a socket nobody answers on (left by a crashed tinit)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(
            f"{path} exists and is not a socket: remove it or choose another --control-socket"
        )
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        try:
            with trio.fail_after(1.0):
                await probe.connect(path)
        except ConnectionRefusedError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        except FileNotFoundError:
            return
        except (trio.TooSlowError, OSError):
            pass  # a full backlog or something stranger: somebody is there
    raise ControlError(
        f"another tinit is already listening on {path}: "
        "stop it or give this one another --control-socket"
    )


class _Server:
    def __init__(
        self, target: ControlTarget, log: Log, idle_timeout: float, max_connections: int
    ) -> None:
        self.target = target
        self.log = log
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.active = 0
        self._capacity_warned = -math.inf
        #: requests read whose reply is not sent yet (a follow counts until its first)
        self.owed = 0
        self._settled = trio.Event()
        #: the end is near: new requests are refused
        self.closing = False

    async def finish_replies(self, deadline: float) -> None:
        self.closing = True
        with trio.move_on_at(deadline):
            while self.owed:
                self._settled = trio.Event()
                await self._settled.wait()

    def settle(self) -> None:
        """One reply owed was sent (or can never be)."""
        self.owed -= 1
        self._settled.set()

    def over_capacity(self) -> None:
        """Log a connection turned away: a warning at most every 10 s, or a flood would follow."""
        now = trio.current_time()
        fields = {"reason": "too many connections", "limit": self.max_connections}
        if now - self._capacity_warned >= 10:
            self._capacity_warned = now
            self.log.warning("control_request_rejected", **fields)
        else:
            self.log.debug("control_request_rejected", **fields)

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one connection; never raises (serve_listeners would end the server)."""
        self.active += 1
        try:
            await _Connection(stream, self).serve()
        except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass  # the client went away or stopped reading: its loss alone
        except* Exception as group:
            for exc in group.exceptions:
                self.log.error("control_connection_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self.active -= 1


class _Connection:
    def __init__(self, stream: trio.SocketStream, server: _Server) -> None:
        self.stream = stream
        self.server = server
        self.target = server.target
        self.log = server.log
        self.buffer = bytearray()
        self.pid = self.uid = -1
        self.warned = False  # one warning per connection: a bad client can't flood the log
        self.owing = False  # a request was read and its reply is not sent yet

    async def serve(self) -> None:
        if self.server.active > self.server.max_connections:
            self.server.over_capacity()
            await self.send_error("tinit is serving too many control connections; try again")
            await self.linger(0.1)  # short: these are the connections over the limit
            return
        if not self.peer_allowed():
            await self.send_error(f"permission denied: uid {self.uid} may not control tinit")
            await self.linger()
            return
        while True:
            line = await self.read_line()
            if line is None:
                return
            if self.server.closing:
                await self.send_error("tinit is exiting: the request was not carried out")
                return
            self.owing = True
            self.server.owed += 1
            try:
                await self.answer(line)
            finally:
                self.settle()

    def settle(self) -> None:
        """The reply owed for the request being answered is sent (or never will be)."""
        if self.owing:
            self.owing = False
            self.server.settle()

    def peer_allowed(self) -> bool:
        try:
            raw = self.stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            self.pid, self.uid, _gid = _UCRED.unpack(raw)
        except (OSError, struct.error) as exc:
            self.reject(f"cannot read the peer's credentials: {exc}")
            return False
        if self.uid in (0, os.getuid()):
            return True
        self.reject("permission denied")
        return False

    def reject(self, reason: str) -> None:
        report = self.log.debug if self.warned else self.log.warning
        self.warned = True
        report("control_request_rejected", reason=reason, peer_pid=self.pid, peer_uid=self.uid)

    async def read_line(self) -> bytes | None:
        """The next request line; None at EOF, after the deadline, or when it is too long."""
        with trio.move_on_after(self.server.idle_timeout):
            while True:
                end = self.buffer.find(b"\n")
                if end > MAX_REQUEST or (end < 0 and len(self.buffer) > MAX_REQUEST):
                    self.reject("request too large")
                    await self.send_error(f"request too large (the limit is {MAX_REQUEST} bytes)")
                    await self.linger()
                    return None
                if end >= 0:
                    line = bytes(self.buffer[:end])
                    del self.buffer[: end + 1]
                    return line
                chunk = await self.stream.receive_some(_RECEIVE_SIZE)
                if not chunk:
                    if self.buffer.strip():
                        self.reject("request not ended by a newline")
                    return None
                self.buffer += chunk
        if self.buffer:
            self.reject("request not finished in time")
        return None

    async def answer(self, line: bytes) -> None:
        try:
            request = _parse(line)
        except _BadRequest as exc:
            self.reject(str(exc))
            await self.send_error(str(exc))
            return
        cmd = request["cmd"]
        if cmd in _ACTIONS:
            extra = {"signal": signal_name(request["signal"])} if cmd == "signal" else {}
            self.log.info(
                "control_command",
                cmd=cmd,
                services=request["names"],
                **extra,
                peer_pid=self.pid,
                peer_uid=self.uid,
            )
        else:
            self.log.debug("control_request", cmd=cmd, peer_pid=self.pid, peer_uid=self.uid)
        logs: _Logs | None = None
        try:
            if cmd == "logs":
                logs = self.open_logs(request)
            else:
                result = await self.run(request)
        except _BadRequest as exc:
            self.reject(str(exc))
            await self.send_error(str(exc))
        except KeyError as exc:
            name = exc.args[0] if exc.args else "?"
            await self.send_error(f"unknown service {name!r}")
        except ConfigError as exc:
            await self.send(
                {
                    "v": PROTOCOL_VERSION,
                    "ok": False,
                    "error": "the new config is invalid; nothing was changed",
                    "problems": [str(p) for p in exc.problems],
                }
            )
        except TinitError as exc:
            await self.send_error(str(exc))
        except Exception as exc:
            self.log.error("control_command_failed", cmd=cmd, error=f"{type(exc).__name__}: {exc}")
            await self.send_error(f"internal error in tinit: {type(exc).__name__}: {exc}")
        else:
            if logs is None:
                await self.send({"v": PROTOCOL_VERSION, "ok": True, "result": result})
            else:
                await self.stream_logs(logs)

    async def run(self, request: dict[str, Any]) -> Any:
        cmd: str = request["cmd"]
        names: list[str] = request["names"]
        target = self.target
        if cmd == "ping":
            return {"pid": os.getpid(), "version": __version__}
        if cmd == "reload":
            return await target.reload()
        services = target.status(names)  # KeyError for an unknown name, before any action
        if cmd == "status":
            return services
        if not names:
            raise _BadRequest(f"{cmd} needs at least one service name")
        if cmd == "signal":
            target.send_signal(request["signal"], names)
        elif cmd == "start":
            await target.start(names)
        elif cmd == "stop":
            await target.stop(names)
        else:
            await target.restart(names)
        return None

    def open_logs(self, request: dict[str, Any]) -> _Logs:
        """What a ``logs`` request will send; KeyError for an unknown service, before any reply."""
        names: list[str] = request["names"]
        services = _names(self.target.status(names))
        # follow() before logs(), with no checkpoint between: a follower that
        # takes its starting point when called neither misses nor repeats a line.
        updates = self.target.follow(names) if request["follow"] else None
        kept = self.target.logs(names, request["n"], total=request["total"])
        return _Logs(services, kept, updates)

    async def stream_logs(self, logs: _Logs) -> None:
        """Send a ``logs`` reply as a stream of bounded messages (`tinit.client` has the forms).

        The kept lines go a few runs per message: ``send`` waits for the
        client and yields to the loop, so the other requests and the services
        go on meanwhile, and tinit holds one message at a time.
        """
        try:
            await self.send_result({"services": logs.services})
            batch: list[Run] = []
            weight = 0
            for run in logs.kept:
                if batch and weight + run.weight > _LOGS_MESSAGE_WEIGHT:
                    await self.send_result({"lines": _runs(batch)})
                    batch, weight = [], 0
                batch.append(run)
                weight += run.weight
            if batch:
                await self.send_result({"lines": _runs(batch)})
            await self.send_result({"end": True})
            if logs.updates is None:
                return
            self.settle()  # what follows is a stream, not a reply tinit owes
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.wait_closed, nursery.cancel_scope)
                async for run in logs.updates:
                    await self.send_result({"lines": _runs([run])})
        finally:
            aclose = getattr(logs.updates, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    await aclose()

    async def send_result(self, result: dict[str, Any]) -> None:
        await self.send({"v": PROTOCOL_VERSION, "ok": True, "result": result})

    async def wait_closed(self, scope: trio.CancelScope) -> None:
        """While following: discard what the client sends; at its EOF, end the stream."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while await self.stream.receive_some(_RECEIVE_SIZE):
                pass
        scope.cancel()

    async def linger(self, seconds: float = 1.0) -> None:
        """Before closing on a client that is still sending: take what it sends, a little while.

        Closing with unread bytes resets the connection, and the reset can
        destroy the error reply before the client reads it.
        """
        with trio.move_on_after(seconds), contextlib.suppress(trio.BrokenResourceError):
            await self.stream.send_eof()
            received = 0
            while received < 4 * MAX_REQUEST:
                chunk = await self.stream.receive_some(_RECEIVE_SIZE)
                if not chunk:
                    break
                received += len(chunk)

    async def send_error(self, message: str) -> None:
        await self.send({"v": PROTOCOL_VERSION, "ok": False, "error": message})

    async def send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=_jsonable)
        with trio.fail_after(self.server.idle_timeout):
            await self.stream.send_all(text.encode("utf-8", "replace") + b"\n")


def _parse(line: bytes) -> dict[str, Any]:
    """Check one request line; return it with every field present and typed."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):
        raise _BadRequest("the request is not valid JSON") from None
    if not isinstance(request, dict):
        raise _BadRequest("the request must be a JSON object")
    v = request.get("v")
    if v != PROTOCOL_VERSION or isinstance(v, bool):
        raise _BadRequest(
            f"unsupported protocol version {v!r} (this tinit speaks {PROTOCOL_VERSION})"
        )
    unknown = sorted(set(request) - _FIELDS)
    if unknown:
        raise _BadRequest(f"unknown field {unknown[0]!r} in the request")
    cmd = request.get("cmd")
    if cmd not in ("status", "start", "stop", "restart", "signal", "reload", "logs", "ping"):
        raise _BadRequest(f"unknown command {cmd!r}")
    names = request.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise _BadRequest("names must be a list of service names")
    if names and cmd in ("reload", "ping"):
        raise _BadRequest(f"{cmd} takes no service names")
    request["names"] = list(dict.fromkeys(names))
    if cmd == "signal":
        raw = request.get("signal")
        if not isinstance(raw, str):
            raise _BadRequest('signal needs a signal name, like "SIGHUP"')
        try:
            request["signal"] = parse_signal(raw)
        except ValueError as exc:
            raise _BadRequest(str(exc)) from None
    elif "signal" in request:
        raise _BadRequest(f"{cmd} takes no signal")
    n = request.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise _BadRequest("n must be a number of lines, 0 or more")
    request["n"] = n
    follow = request.get("follow", False)
    if not isinstance(follow, bool):
        raise _BadRequest("follow must be true or false")
    request["follow"] = follow
    total = request.get("total", False)
    if not isinstance(total, bool):
        raise _BadRequest("total must be true or false")
    request["total"] = total
    if cmd != "logs" and (n is not None or follow or total):
        raise _BadRequest(f"{cmd} takes neither n nor follow nor total")
    return request


def _names(services: list[dict[str, Any]]) -> list[str]:
    return [str(s.get("name")) for s in services]


def _runs(runs: Sequence[Run]) -> list[dict[str, Any]]:
    return [
        {"ts": run.ts, "service": run.service, "stream": run.stream, "lines": run.lines}
        for run in runs
    ]


def _jsonable(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
