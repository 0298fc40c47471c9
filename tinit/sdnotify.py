"""The systemd notification protocol: a service's ``NOTIFY_SOCKET`` and what it says there.

A service with ``ready: {sd_notify: true}`` gets, for each run, a datagram
socket of tinit's own, named in its ``NOTIFY_SOCKET``; it sends lines of
``KEY=VALUE`` there (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``,
``MAINPID=N``), as programs built for systemd do through ``sd_notify(3)``.

Choices:

- **An abstract address** (``@tinit-notify-NAME-RANDOM``). It needs no file
  a service could replace or hide, and the service reaches it whatever its
  mount namespace, root or user. It belongs to tinit's network namespace, so
  ``tinit check`` refuses ``sd_notify`` with ``namespaces.network: none``.
- **Every sender is authenticated.** Any process of the network namespace
  may send to an abstract socket (and read its name in /proc/net/unix), so
  ``SO_PASSCRED`` makes the kernel attach the sender's pid, translated into
  tinit's PID namespace, and a message counts only when that pid belongs to
  the run (``ProcessTree.holds``: its cgroup, or without cgroups its main
  process's session). Others are dropped and counted.
- **A fresh socket per run**, closed when the run is over, when nothing of
  the run is left. What a previous run sent but tinit had not read goes with
  its socket, so it can never mark the next run ready.
- **Bounded**: a datagram over :data:`MAX_MESSAGE` bytes is dropped whole
  (4 KiB holds every field systemd defines many times over, and a status
  line longer than :data:`MAX_STATUS` is cut anyway); token buckets per
  run (:data:`RATE`, :data:`BURST`) bound the datagrams looked at, and
  beyond them the queue is drained unread and counted, at most once per token
  regained, so a flooding sender costs tinit a few syscalls per refill. The
  run's main process has a bucket of its own: it is tinit's child, so its
  pid can't be taken by another process until tinit reaps it, and no
  stranger's flood can spend its budget.
- **Descriptors are never kept**: tinit has no fd store; the fds of any
  ``SCM_RIGHTS`` are closed at once (which is also how ``BARRIER=1`` is
  acknowledged), and a datagram with more than :data:`MAX_FDS` of them, whose
  rest the kernel discarded (``MSG_CTRUNC``), is dropped.
"""

from __future__ import annotations

import array
import enum
import os
import secrets
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NoReturn

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

#: the longest datagram read; a longer one is dropped whole
MAX_MESSAGE: Final = 4096
#: the longest ``STATUS=`` kept, in characters: it is one cell of a status table
MAX_STATUS: Final = 256
#: room for this many fds in the ancillary buffer; more is a dropped datagram
MAX_FDS: Final = 16
#: datagrams looked at per second, once the burst is spent
RATE: Final = 50.0
BURST: Final = 100
#: datagrams read per wake-up before the loop gives others a turn
_BATCH: Final = 64
_UCRED: Final = struct.Struct("3i")
_ANCILLARY: Final = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(MAX_FDS * 4)
#: an abstract name is at most 107 bytes; the service's part is cut to fit
_NAME_ROOM: Final = 64
_MAX_PID: Final = 1 << 22


class Drop(enum.Enum):
    """Why a datagram did not count."""

    #: longer than MAX_MESSAGE
    OVERSIZED = "oversized"
    #: sent by a process that is not of the run, or without credentials
    STRANGER = "stranger"
    #: beyond the run's budget of datagrams
    RATE = "rate"
    #: more descriptors than MAX_FDS: the kernel cut the ancillary data
    TRUNCATED = "truncated"


@dataclass(frozen=True, slots=True)
class Message:
    """What one datagram said; keys it did not have are False or None."""

    ready: bool = False
    status: str | None = None
    watchdog: bool = False
    #: ``WATCHDOG=trigger``: the service asks to be treated as hung
    watchdog_trigger: bool = False
    main_pid: int | None = None
    stopping: bool = False
    reloading: bool = False
    errno: int | None = None


def parse(data: bytes) -> Message:
    """The fields tinit acts on in a datagram of ``KEY=VALUE`` lines; a later line wins.

    Plain locals, not a value rebuilt per line: a 4 KiB datagram can hold
    hundreds of lines, and this runs for every one let through.
    """
    ready = watchdog = trigger = stopping = reloading = False
    status: str | None = None
    main_pid: int | None = None
    errno: int | None = None
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b"=")
        if not sep:
            continue
        match key:
            case b"READY":
                ready = value == b"1"
            case b"STATUS":
                status = printable(value)
            case b"WATCHDOG":
                watchdog, trigger = value == b"1", value == b"trigger"
            case b"MAINPID":
                main_pid = _number(value, _MAX_PID)
            case b"STOPPING":
                stopping = value == b"1"
            case b"RELOADING":
                reloading = value == b"1"
            case b"ERRNO":
                errno = _number(value, 4096)
            case _:
                pass  # FDSTORE, BARRIER, EXTEND_TIMEOUT_USEC...: nothing of tinit's
    return Message(ready, status, watchdog, trigger, main_pid, stopping, reloading, errno)


def printable(value: bytes) -> str:
    """A status line fit for a terminal: no control characters, at most MAX_STATUS long."""
    text = value.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else " " for c in text[:MAX_STATUS])


def _number(value: bytes, limit: int) -> int | None:
    if not value.isdigit() or len(value) > 10:
        return None
    number = int(value)
    return number if 0 < number < limit else None


class Bucket:
    """A token bucket on trio's clock: ``take`` one token, or learn how long until one."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def wait(self) -> float:
        """Seconds until one token is back (0 while one is left)."""
        return max(0.0, (1.0 - self._tokens) / self._rate)


@dataclass(frozen=True, slots=True)
class _Datagram:
    data: bytes
    pid: int | None
    #: descriptors received with it, to be closed
    fds: tuple[int, ...]
    oversized: bool
    truncated: bool


class NotifySocket:
    """One run's notification socket, bound to a fresh abstract address."""

    def __init__(self, service: str) -> None:
        sock = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            name = f"tinit-notify-{service[:_NAME_ROOM]}-{secrets.token_hex(8)}"
            sock.bind("\0" + name)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        #: what the service's ``NOTIFY_SOCKET`` says
        self.address: Final = "@" + name
        #: descriptors received and closed
        self.fds_closed = 0

    def close(self) -> None:
        """Close the socket: the address is free, and what was not read is gone with it."""
        self._sock.close()

    async def serve(
        self,
        holds: Callable[[int], bool],
        deliver: Callable[[Message, int], None],
        dropped: Callable[[Drop], None],
        main: int,
    ) -> NoReturn:
        """Read datagrams forever: each from a process that ``holds`` accepts is delivered.

        ``main`` is the run's main process, whose datagrams spend a budget of their own.
        """
        now = trio.current_time()
        buckets = {True: Bucket(RATE, BURST, now), False: Bucket(RATE, BURST, now)}
        while True:
            await trio.lowlevel.wait_readable(self._sock)
            for _ in range(_BATCH):
                datagram = self._receive()
                if datagram is None:
                    break
                try:
                    reason = self._judge(datagram, buckets[datagram.pid == main], holds)
                    if reason is not None:
                        dropped(reason)
                    elif datagram.pid is not None:
                        deliver(parse(datagram.data), datagram.pid)
                finally:
                    # After the sender was checked: closing is what ends its
                    # wait for BARRIER=1, and then it may exit at once.
                    self.fds_closed += _close_all(datagram.fds)
            pause = max(bucket.wait() for bucket in buckets.values())
            if pause > 0:
                await trio.sleep(pause)  # out of budget: what queues meanwhile is drained next
            else:
                await trio.lowlevel.checkpoint()

    @staticmethod
    def _judge(datagram: _Datagram, bucket: Bucket, holds: Callable[[int], bool]) -> Drop | None:
        """Why ``datagram`` is dropped, cheapest test first; None when it counts."""
        if datagram.oversized:
            return Drop.OVERSIZED
        if datagram.truncated:
            return Drop.TRUNCATED
        if not bucket.take(trio.current_time()):
            return Drop.RATE
        if datagram.pid is None or not holds(datagram.pid):
            return Drop.STRANGER
        return None

    def _receive(self) -> _Datagram | None:
        """One datagram; None when none is waiting."""
        try:
            data, ancillary, flags, _ = self._sock.recvmsg(
                MAX_MESSAGE, _ANCILLARY, socket.MSG_CMSG_CLOEXEC
            )
        except (BlockingIOError, InterruptedError):
            return None
        pid: int | None = None
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level != socket.SOL_SOCKET:
                continue
            if kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                fds.extend(received)
            elif kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
                pid = _UCRED.unpack_from(payload)[0]
        return _Datagram(
            data=data,
            pid=pid if pid is not None and pid > 0 else None,
            fds=tuple(fds),
            oversized=bool(flags & socket.MSG_TRUNC),
            truncated=bool(flags & socket.MSG_CTRUNC),
        )


def _close_all(fds: tuple[int, ...]) -> int:
    """Close every descriptor received; return how many there were."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass  # nothing to undo: the kernel installed it, and it is closed or never was
    return len(fds)
