"""The HTTP health endpoint: ``/healthz``, ``/readyz`` and ``/metrics``.

Served with ``settings.health_listen`` from tinit's one trio thread, to any
network peer that can reach it. HTTP is parsed by h11, never by hand. Each
connection has to deliver a whole request head of at most `MAX_HEADER` bytes
within `IDLE_TIMEOUT` seconds and to take its reply within the same time, or
it is closed: a slow or malicious client (slowloris) costs one descriptor for
a bounded time and never delays another request, a service, or tinit.

At most `MAX_CONNECTIONS` connections are kept. A new one past that closes
the one that has waited longest for a request, not the newcomer: a crowd of
connections that never finish a request cannot lock out a probe, which sends
its request at once and is answered before that crowd can push it out.
Memory is bounded with them: a connection holds at most one request head.
Keep-alive works as HTTP/1.1 says.

The metrics are the Prometheus text format 0.0.4, written here so that tinit
does not depend on prometheus_client (the tests parse it with that).
"""

from __future__ import annotations

import contextlib
import http
import math
from typing import TYPE_CHECKING, Final, NoReturn

import h11
import trio

from . import __version__
from .control import IDLE_TIMEOUT, MAX_CONNECTIONS
from .errors import ControlError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .control import ControlTarget, Metrics
    from .logs import Log

__all__ = ["IDLE_TIMEOUT", "MAX_BODY", "MAX_HEADER", "render_metrics", "serve_health"]

#: the longest request head (request line and headers) read; longer ones get 431
MAX_HEADER: Final = 16 * 1024
#: the longest request body read (and thrown away); longer ones get 413
MAX_BODY: Final = 64 * 1024
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_TEXT: Final = "text/plain; charset=utf-8"
# Small reads: h11 checks MAX_HEADER only between reads, so a head can
# overshoot it by one read at most.
_RECEIVE_SIZE: Final = 4096
_METHODS: Final = (b"GET", b"HEAD")


async def serve_health(
    host: str,
    port: int,
    target: ControlTarget,
    log: Log,
    *,
    timeout: float = IDLE_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve HTTP on ``host``:``port`` until cancelled; ``task_status.started(port)``.

    ``host`` empty or ``*`` means every address. The port reported is the one
    bound (useful with port 0). Raises ControlError when it cannot listen.
    """
    bind_host = None if host in ("", "*") else host
    try:
        listeners = await trio.open_tcp_listeners(port, host=bind_host)
    except OSError as exc:
        raise ControlError(
            f"cannot listen on {host or '*'}:{port} for health checks: {exc.strerror or exc}"
        ) from None
    server = _Server(target, log, timeout, max_connections)
    bound: int = listeners[0].socket.getsockname()[1]
    log.info("health_listening", host=host or "*", port=bound)
    task_status.started(bound)
    await trio.serve_listeners(server.handle, listeners)


class _Server:
    def __init__(self, target: ControlTarget, log: Log, timeout: float, max_conns: int) -> None:
        self.target = target
        self.log = log
        self.timeout = timeout
        self.max_connections = max_conns
        # The connections kept, the one active longest ago first (dicts keep order).
        self.open: dict[_Connection, None] = {}

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one connection; never raises (serve_listeners would end the server)."""
        connection = _Connection(stream, self)
        if self.open and len(self.open) >= self.max_connections:
            self.shed()
        self.open[connection] = None
        try:
            with connection.scope:
                await connection.serve()
        except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass  # the client went away or would not read: its loss alone
        except* Exception as group:
            for exc in group.exceptions:
                self.log.error("health_connection_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self.open.pop(connection, None)

    def shed(self) -> None:
        """Close the connection that waited longest for a request (else the oldest one)."""
        victim = next((c for c in self.open if c.idle), next(iter(self.open)))
        del self.open[victim]
        victim.scope.cancel()
        self.log.debug("health_connection_shed", reason="too many connections")

    def mark_active(self, connection: _Connection) -> None:
        """``connection`` was served a request: it is the last to be shed now."""
        if connection in self.open:
            del self.open[connection]
            self.open[connection] = None


class _Connection:
    def __init__(self, stream: trio.SocketStream, server: _Server) -> None:
        self.stream = stream
        self.server = server
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER)
        self.scope = trio.CancelScope()  # cancelled when the server sheds this connection
        self.idle = True  # waiting for (the rest of) a request

    async def serve(self) -> None:
        while True:
            close = False
            request: h11.Request | None = None
            head = False
            try:
                self.idle = True
                with trio.move_on_after(self.server.timeout):
                    request = await self.read_request()
                self.idle = False
                if request is None:
                    return  # the client is done, or too slow: nothing more is owed to it
                self.server.mark_active(self)
                head = request.method == b"HEAD"
                status, headers, body = self.route(request)
            except h11.RemoteProtocolError as exc:
                self.server.log.debug("health_request_rejected", reason=str(exc))
                status = exc.error_status_hint
                headers, body = [("Content-Type", _TEXT)], f"{_reason(status).lower()}\n".encode()
                close = True
            except _TooLarge:
                status, headers, body = 413, [("Content-Type", _TEXT)], b"request too large\n"
                close = True
            if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                return
            if close:
                headers.append(("Connection", "close"))
            await self.respond(status, headers, b"" if head else body, len(body))
            if close:
                await _linger(self.stream)
                return
            if h11.MUST_CLOSE in (self.conn.our_state, self.conn.their_state):
                return
            try:
                self.conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.stream.receive_some(_RECEIVE_SIZE))

    async def read_request(self) -> h11.Request | None:
        """The next request with its body read and dropped; None when the client is done."""
        event = await self.next_event()
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed (or PAUSED, which cannot happen here)
        received = 0
        while True:
            part = await self.next_event()
            if isinstance(part, h11.Data):
                received += len(part.data)
                if received > MAX_BODY:
                    raise _TooLarge
            elif isinstance(part, h11.EndOfMessage):
                return event
            else:
                return None  # the connection closed mid-body

    def route(self, request: h11.Request) -> tuple[int, list[tuple[str, str]], bytes]:
        path = request.target.split(b"?", 1)[0]
        text = [("Content-Type", _TEXT)]
        if path not in (b"/healthz", b"/readyz", b"/metrics"):
            return 404, text, b"not found: try /healthz, /readyz or /metrics\n"
        if request.method not in _METHODS:
            return 405, [*text, ("Allow", "GET, HEAD")], b"method not allowed\n"
        target = self.server.target
        try:
            if path == b"/metrics":
                body = render_metrics(target.metrics()).encode()
                return 200, [("Content-Type", METRICS_CONTENT_TYPE)], body
            alive, ready = target.health()
        except Exception as exc:
            self.server.log.error("health_check_failed", error=f"{type(exc).__name__}: {exc}")
            return 500, text, b"internal error\n"
        if path == b"/healthz":
            return (200, text, b"ok\n") if alive else (503, text, b"a critical service failed\n")
        return (200, text, b"ok\n") if ready else (503, text, b"not ready\n")

    async def respond(
        self, status: int, headers: list[tuple[str, str]], body: bytes, length: int
    ) -> None:
        """Send one response; ``body`` is empty for HEAD, ``length`` what GET would have sent."""
        headers = [
            *headers,
            ("Content-Length", str(length)),
            ("Cache-Control", "no-store"),
            ("Server", f"tinit/{__version__}"),
        ]
        reason = _reason(status).encode()
        out = [self.conn.send(h11.Response(status_code=status, headers=headers, reason=reason))]
        if body:
            out.append(self.conn.send(h11.Data(data=body)))
        out.append(self.conn.send(h11.EndOfMessage()))
        with trio.fail_after(self.server.timeout):
            await self.stream.send_all(b"".join(chunk for chunk in out if chunk))


async def _linger(stream: trio.SocketStream) -> None:
    """Before closing on a client that is still sending: take what it sends, a little while.

    Closing with unread bytes makes the kernel send RST, which can destroy
    the error reply before the client reads it.
    """
    with trio.move_on_after(1.0), contextlib.suppress(trio.BrokenResourceError):
        await stream.send_eof()
        received = 0
        while received < MAX_BODY and (chunk := await stream.receive_some(_RECEIVE_SIZE)):
            received += len(chunk)


class _TooLarge(Exception):
    """The request body is longer than MAX_BODY."""


def _reason(status: int) -> str:
    with contextlib.suppress(ValueError):
        return http.HTTPStatus(status).phrase
    return ""


# -- Prometheus text format 0.0.4 ------------------------------------------------------


def render_metrics(metrics: Metrics) -> str:
    """``metrics`` in the Prometheus text exposition format 0.0.4."""
    out: list[str] = []
    services = list(metrics.services)

    def family(
        name: str, kind: str, text: str, samples: Iterable[tuple[dict[str, str], float]]
    ) -> None:
        out.append(f"# HELP {name} {_escape_help(text)}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{_labels(labels)} {_value(value)}")

    def per_service(values: Iterable[float]) -> list[tuple[dict[str, str], float]]:
        return [({"service": s.name}, v) for s, v in zip(services, values, strict=True)]

    family(
        "tinit_service_up",
        "gauge",
        "Whether the service's main process is running (1) or not (0).",
        per_service(float(s.up) for s in services),
    )
    family(
        "tinit_service_ready",
        "gauge",
        "Whether the service is ready (1) or not (0).",
        per_service(float(s.ready) for s in services),
    )
    family(
        "tinit_service_restarts_total",
        "counter",
        "Restarts of the service since tinit started.",
        per_service(s.restarts_total for s in services),
    )
    family(
        "tinit_service_exits_total",
        "counter",
        "Exits of the service's main process, by exit code or signal name.",
        (
            ({"service": s.name, "code": code}, count)
            for s in services
            for code, count in sorted(s.exits_total.items())
        ),
    )
    family(
        "tinit_service_oom_kills_total",
        "counter",
        "Processes of the service killed by the kernel's OOM killer.",
        per_service(s.oom_kills_total for s in services),
    )
    family(
        "tinit_service_log_bytes",
        "gauge",
        "Bytes of recent output tinit keeps in memory for tinit logs (bounded per service).",
        per_service(s.log_bytes for s in services),
    )
    family(
        "tinit_service_log_rotations_total",
        "counter",
        "Rotations of the service's output file (log_rotation) since tinit started.",
        per_service(s.log_rotations_total for s in services),
    )
    scheduled = [s for s in services if s.next_run is not None]
    if scheduled:  # the families appear only where there are scheduled jobs
        family(
            "tinit_service_next_run_timestamp_seconds",
            "gauge",
            "When a scheduled job runs next, in seconds since the epoch.",
            (({"service": s.name}, s.next_run or 0.0) for s in scheduled),
        )
        family(
            "tinit_service_scheduled_runs_total",
            "counter",
            "Runs of a scheduled job started since tinit started.",
            (({"service": s.name}, s.scheduled_runs_total) for s in scheduled),
        )
        family(
            "tinit_service_schedule_skips_total",
            "counter",
            "Scheduled times of a job skipped because its previous run was still going on.",
            (({"service": s.name}, s.schedule_skips_total) for s in scheduled),
        )
    family(
        "tinit_service_notify_dropped_total",
        "counter",
        "sd_notify datagrams dropped: oversized, stranger (not of the service), rate, truncated.",
        (
            ({"service": s.name, "reason": reason}, count)
            for s in services
            for reason, count in sorted(s.notify_dropped_total.items())
        ),
    )
    family(
        "tinit_service_watchdog_misses_total",
        "counter",
        "Runs stopped because the service's sd_notify WATCHDOG=1 pings stopped.",
        per_service(s.watchdog_misses_total for s in services),
    )
    family(
        "tinit_service_main_pid_refused_total",
        "counter",
        "sd_notify MAINPID= refused because the pid was not of the service's run.",
        per_service(s.main_pid_refused_total for s in services),
    )
    family(
        "tinit_orphans_reaped_total",
        "counter",
        "Orphaned processes reaped by tinit (not services' main processes).",
        [({}, metrics.orphans_reaped_total)],
    )
    family(
        "tinit_uptime_seconds",
        "gauge",
        "Seconds since tinit started.",
        [({}, metrics.uptime_seconds)],
    )
    return "\n".join(out) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
