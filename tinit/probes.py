"""Readiness and liveness probes: tcp, http, exec, notify_fd.

Each check is one attempt bounded by the probe's ``timeout`` that returns
True or False; the schedule (``interval``, ``start_timeout``, ``failures``)
belongs to the service runner.

No probe may start a thread (tinit forks from its only thread, see spawn.py),
so names are resolved without trio's threaded ``getaddrinfo``: numeric
addresses directly, ``localhost`` and other names through the blocking
resolver once, which for the names a container probes (``localhost``, names
in /etc/hosts) answers from a file. ``exec`` probes are started through
spawn.py and reaped by the one reaper, like every other child.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import TYPE_CHECKING, assert_never
from urllib.parse import urlsplit

import trio

from . import procs, spawn
from .config import ExecProbe, HttpProbe, NotifyFdProbe, TcpProbe

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .config import Probe
    from .reaper import Reaper

_MAX_STATUS_LINE = 1024


def _resolve(host: str, port: int) -> tuple[int, tuple[str, int]]:
    host = host.strip("[]")
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family, (host, port)
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return family, (str(address[0]), int(address[1]))


async def _connect(host: str, port: int) -> trio.socket.SocketType:
    family, address = _resolve(host, port)
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


async def check_tcp(host: str, port: int, timeout: float) -> bool:
    """True when a TCP connection to host:port is accepted within ``timeout``."""
    with trio.move_on_after(timeout):
        try:
            sock = await _connect(host, port)
        except OSError:
            return False
        sock.close()
        return True
    return False


async def check_http(url: str, timeout: float) -> bool:
    """True when ``GET url`` answers 2xx or 3xx within ``timeout``.

    Only the status line is read: the probe wants a verdict, not the body.
    """
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "User-Agent: tinit-probe\r\nConnection: close\r\n\r\n"
    ).encode()
    with trio.move_on_after(timeout):
        try:
            sock = await _connect(host, port)
        except OSError:
            return False
        with sock:
            try:
                await sock.send(request)
                head = b""
                while b"\r\n" not in head and len(head) < _MAX_STATUS_LINE:
                    chunk = await sock.recv(_MAX_STATUS_LINE)
                    if not chunk:
                        break
                    head += chunk
            except OSError:
                return False
        fields = head.split(b"\r\n", 1)[0].split()
        return (
            len(fields) >= 2
            and fields[0].startswith(b"HTTP/")
            and fields[1].isdigit()
            and 200 <= int(fields[1]) < 400
        )
    return False


async def check_exec(
    argv: tuple[str, ...], env: Mapping[str, str], timeout: float, reaper: Reaper
) -> bool:
    """True when ``argv`` exits 0 within ``timeout``; killed (and reaped) otherwise."""
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        child = await spawn.spawn(
            spawn.ChildSpec(argv=argv, env=env, stdin=devnull, stdout=devnull, stderr=devnull),
            reaper,
        )
    except OSError:
        return False
    except Exception:
        return False
    finally:
        os.close(devnull)
    with trio.move_on_after(timeout):
        status = await child.wait()
        return status.code == 0
    with trio.CancelScope(shield=True):
        procs.signal_group(child.pgid, signal.SIGKILL)
        await child.wait()
    return False


class NotifyPipe:
    """The s6-style readiness pipe: the service writes a newline to fd N."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.read_fd, False)
        self._closed = False

    def close_write_end(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    async def wait_ready(self) -> bool:
        """True once a newline arrives; False if the service closed the fd first."""
        while True:
            await trio.lowlevel.wait_readable(self.read_fd)
            try:
                data = os.read(self.read_fd, 4096)
            except BlockingIOError:
                continue
            if not data:
                return False
            if b"\n" in data:
                return True

    def close(self) -> None:
        self.close_write_end()
        if not self._closed:
            self._closed = True
            os.close(self.read_fd)


async def check(probe: Probe, env: Mapping[str, str], reaper: Reaper) -> bool:
    """One attempt of a tcp, http or exec probe."""
    match probe:
        case TcpProbe(address=(host, port)):
            return await check_tcp(host, port, probe.timeout)
        case HttpProbe(url=url):
            return await check_http(url, probe.timeout)
        case ExecProbe(argv=argv):
            return await check_exec(argv, env, probe.timeout, reaper)
        case NotifyFdProbe():
            raise ValueError("a notify_fd probe is not polled")
        case _:
            assert_never(probe)
