"""The sd_notify socket and parser (sdnotify.py), in-process: no PID 1 needed."""

from __future__ import annotations

import array
import os
import socket
import subprocess
import sys

import pytest
import trio

from tinit import sdnotify
from tinit.sdnotify import Bucket, Drop, Message, NotifySocket, parse


def test_parse_takes_known_keys_and_ignores_the_rest() -> None:
    message = parse(b"READY=1\nSTATUS=up \x1b[31mred\nMAINPID=42\nFDSTORE=1\nnonsense\nERRNO=2")
    assert message == Message(ready=True, status="up  [31mred", main_pid=42, errno=2)
    assert parse(b"WATCHDOG=trigger").watchdog_trigger
    assert parse(b"WATCHDOG=1").watchdog
    assert parse(b"READY=0\nMAINPID=-3\nMAINPID=99999999999") == Message()
    assert parse(b"STOPPING=1").stopping and parse(b"RELOADING=1").reloading
    assert len(parse(b"STATUS=" + b"x" * 5000).status or "") == sdnotify.MAX_STATUS


def test_the_bucket_refills_at_its_rate() -> None:
    bucket = Bucket(10.0, 2, now=0.0)
    assert bucket.take(0.0) and bucket.take(0.0)
    assert not bucket.take(0.0)
    assert bucket.wait() == pytest.approx(0.1)
    assert bucket.take(0.1)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_socket_authenticates_bounds_and_closes_what_it_is_sent() -> None:
    delivered: list[tuple[Message, int]] = []
    dropped: list[Drop] = []
    me = os.getpid()
    trusted = {"yes": True}

    async def main() -> None:
        sd = NotifySocket("web")
        assert sd.address.startswith("@tinit-notify-web-")
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        target = "\0" + sd.address[1:]
        before = _open_fds()
        r, w = os.pipe()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    sd.serve, lambda pid: trusted["yes"] and pid == me, _deliver, dropped.append, 1
                )
                peer.sendto(b"STATUS=one", target)
                peer.sendto(b"x" * (sdnotify.MAX_MESSAGE + 1), target)
                fds = array.array("i", [r, w])
                rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
                peer.sendmsg([b"FDSTORE=1"], rights, 0, target)
                many = array.array("i", [r] * (sdnotify.MAX_FDS + 8))
                peer.sendmsg(
                    [b"READY=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, many)], 0, target
                )
                await trio.sleep(0.2)
                trusted["yes"] = False
                peer.sendto(b"READY=1", target)
                await trio.sleep(0.2)
                nursery.cancel_scope.cancel()
        finally:
            os.close(r)
            os.close(w)
            peer.close()
            sd.close()
        assert _open_fds() == before - 2  # less the socket and the peer: nothing received stays
        assert sd.fds_closed >= 2 + sdnotify.MAX_FDS

    def _deliver(message: Message, pid: int) -> None:
        delivered.append((message, pid))

    trio.run(main)
    assert [(m.status, pid) for m, pid in delivered] == [("one", me), (None, me)]
    assert dropped == [Drop.OVERSIZED, Drop.TRUNCATED, Drop.STRANGER]


def test_a_flood_is_cut_to_the_budget() -> None:
    delivered: list[Message] = []
    dropped: list[Drop] = []

    async def main() -> None:
        sd = NotifySocket("flood")
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        target = "\0" + sd.address[1:]
        sent = 0
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    sd.serve,
                    lambda pid: True,
                    lambda m, pid: delivered.append(m),
                    dropped.append,
                    os.getpid(),
                )
                with trio.move_on_after(1.0):
                    while True:
                        try:
                            peer.sendto(b"WATCHDOG=1", target)
                            sent += 1
                        except BlockingIOError:
                            await trio.lowlevel.checkpoint()
                        if sent % 32 == 0:
                            await trio.lowlevel.checkpoint()
                await trio.sleep(0.1)
                nursery.cancel_scope.cancel()
        finally:
            peer.close()
            sd.close()
        assert sent > sdnotify.BURST + 2 * sdnotify.RATE

    trio.run(main)
    # one second: the burst and a second's tokens at most, the rest dropped
    assert len(delivered) <= sdnotify.BURST + 1.5 * sdnotify.RATE
    assert dropped and set(dropped) == {Drop.RATE}


FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.settimeout(0.5)
end = time.monotonic() + 2.5
while time.monotonic() < end:
    try:
        s.sendto(b"READY=1", "\\0" + sys.argv[1][1:])
    except OSError:
        pass
"""

#: the main process: once the flood is on, one READY=1 through the same full queue
MAIN = """
import socket, sys, time
time.sleep(0.7)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"READY=1", "\\0" + sys.argv[1][1:])
time.sleep(0.5)
"""


def test_a_strangers_flood_does_not_crowd_out_the_main_process() -> None:
    """The main process's budget is its own: its READY=1 gets through a flood from outside."""
    delivered: list[tuple[Message, int]] = []
    dropped: list[Drop] = []
    sd = NotifySocket("crowded")
    floods = [subprocess.Popen([sys.executable, "-c", FLOOD, sd.address]) for _ in range(3)]
    sender = subprocess.Popen([sys.executable, "-c", MAIN, sd.address])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                sd.serve,
                lambda pid: pid == sender.pid,
                lambda m, pid: delivered.append((m, pid)),
                dropped.append,
                sender.pid,
            )
            with trio.move_on_after(3.0):
                while not delivered:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        for process in (*floods, sender):
            process.kill()
            process.wait()
        sd.close()
    assert [pid for _, pid in delivered] == [sender.pid]
    assert Drop.RATE in dropped and Drop.STRANGER in dropped
