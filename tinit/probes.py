"""Readiness and liveness probes: tcp, http, exec, notify_fd (sd_notify: sdnotify.py).

Each check is one attempt bounded by the probe's ``timeout`` that returns
True or False; the schedule (``interval``, ``start_timeout``, ``failures``)
belongs to the service runner.

No probe may start a thread (tinit forks from its only thread, see spawn.py),
so names are resolved without trio's threaded ``getaddrinfo``: numeric
addresses directly, ``localhost`` and other names through the blocking
resolver once, which for the names a container probes (``localhost``, names
in /etc/hosts) answers from a file. ``exec`` probes are started through
spawn.py and reaped by the one reaper, like every other child, and run
inside the service they check (:class:`Inside`): Kubernetes runs them in the
container, and a check that runs with more rights, other limits or another
/tmp than the service can pass while the service is broken.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, assert_never

import trio

from . import childspec, procs, spawn
from .config import ExecProbe, HttpProbe, Namespaces, NotifyFdProbe, SdNotifyProbe, TcpProbe
from .errors import SpawnError, TinitError
from .probecmd import MAX_STATUS_LINE, address_of, http_passes, http_request

if TYPE_CHECKING:
    from .cgroups import ServiceCgroup
    from .config import Probe, Service
    from .reaper import Child, Reaper
    from .tree import Process

#: a service with these shares tinit's namespaces: its probes have none to join
_HOST_NAMESPACES: Final = Namespaces()


async def _connect(host: str, port: int) -> trio.socket.SocketType:
    family, address = address_of(host, port)
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
    host, port, request = http_request(url)
    with trio.move_on_after(timeout):
        try:
            sock = await _connect(host, port)
        except OSError:
            return False
        with sock:
            try:
                await sock.send(request)
                head = b""
                while b"\r\n" not in head and len(head) < MAX_STATUS_LINE:
                    chunk = await sock.recv(MAX_STATUS_LINE)
                    if not chunk:
                        break
                    head += chunk
            except OSError:
                return False
        return http_passes(head)
    return False


@dataclass(frozen=True, slots=True)
class Inside:
    """The run of a service that its exec probes run inside."""

    service: Service
    #: the run's main process: its namespaces are the ones the probe joins
    main: Process
    #: the run's cgroup, which the probe joins as the main process did
    cgroup: ServiceCgroup | None
    pid1: bool


def _start_inside(
    argv: tuple[str, ...], inside: Inside, reaper: Reaper
) -> tuple[Child, int | None]:
    """Fork the probe as the service's own process; return it with its error pipe.

    Synchronous from the check of the main process to the fork: the reaper
    cannot run in between, so ``/proc/PID`` is still the main process's and
    its namespaces are not another process's.
    """
    if inside.main.status is not None:
        raise ProcessLookupError(errno.ESRCH, "the service's main process has exited")
    opened: list[int] = []
    try:
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        opened.append(devnull)
        procs_fd = None
        if inside.cgroup is not None:
            procs_fd = inside.cgroup.open_procs()
            opened.append(procs_fd)
        enter: dict[int, int] = {}
        if inside.service.namespaces != _HOST_NAMESPACES:
            from . import namespaces

            enter = namespaces.open_of(inside.main.pid, inside.service.namespaces)
            opened.extend(enter.values())
        fds = childspec.RunFds(devnull, devnull, devnull, cgroup_procs=procs_fd)
        spec = childspec.build(inside.service, fds, pid1=inside.pid1, argv=argv, enter=enter)
        return spawn.start(spec, reaper)
    finally:
        for fd in opened:
            os.close(fd)


async def check_exec(argv: tuple[str, ...], inside: Inside, timeout: float, reaper: Reaper) -> bool:
    """True when ``argv`` exits 0 within ``timeout``; killed (and reaped) otherwise.

    It runs as the service would: its user, groups and capabilities, its
    environment and working directory, its cgroup and its namespaces
    (childspec.build). Its output goes to /dev/null.
    """
    try:
        child, err_r = _start_inside(argv, inside, reaper)
    except (OSError, TinitError):
        return False
    try:
        with trio.move_on_after(timeout):
            await spawn.wait_exec(child, err_r, argv[0])
            return (await child.wait()).code == 0
        return False
    except SpawnError:
        return False
    finally:
        if child.status is None:
            with trio.CancelScope(shield=True):
                # The pid too: the probe may not have made its own group yet.
                _kill(child.pid)
                procs.signal_group(child.pgid, signal.SIGKILL)
                await child.wait()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass  # exited meanwhile; the reaper has it


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


async def check(probe: Probe, inside: Inside, reaper: Reaper) -> bool:
    """One attempt of a tcp, http or exec probe of the run ``inside``."""
    match probe:
        case TcpProbe(address=(host, port)):
            return await check_tcp(host, port, probe.timeout)
        case HttpProbe(url=url):
            return await check_http(url, probe.timeout)
        case ExecProbe(argv=argv):
            return await check_exec(argv, inside, probe.timeout, reaper)
        case NotifyFdProbe() | SdNotifyProbe():
            raise ValueError("a notify_fd or sd_notify probe is not polled")
        case _:
            assert_never(probe)
