"""Service output: where each service's stdout and stderr go.

An `Output` is the output of one run of one service. In ``raw`` and ``null``
mode the service gets tinit's own descriptors or ``/dev/null`` and tinit never
sees a byte. In the other modes the service writes into two pipes;
`Output.pump` reads them, cuts the bytes into whole lines, formats them and
writes them to a `Sink`, and keeps the recent lines in the service's `Ring`
for ``tinit logs``.

Nothing is dropped to keep up: when a sink cannot take more, `Sink.write`
waits, the pump stops reading, the pipe fills, and the service blocks in
``write(2)``. What tinit holds per service meanwhile is bounded
(`Output.max_buffered`). The one exception is a shutdown: once its budget
has run out (`Sink.cut_off_at`), a write takes what the destination accepts
at once and drops the rest, counted in `Sink.late_bytes` and
`Sink.late_lines`, so a slow reader cannot hold tinit's exit.

tinit starts no threads (it forks from the main thread), so every descriptor
is driven by trio's I/O readiness waits. The catch is that O_NONBLOCK belongs
to an open file description, not to a descriptor: setting it on tinit's fd 1
would also set it for every ``raw`` service sharing that description, and
programs that do not expect EAGAIN lose output or crash. `Sink.for_fd`
therefore opens a description of its own for the same pipe or terminal.

A file sink with ``log_rotation`` moves to a new file when the current one
is full, between two lines (rotation.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import select
import socket
import stat
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Final, assert_never

import trio

from tinit._lines import (
    MAX_LINE,
    READ_SIZE,
    JsonFormat,
    LineAssembler,
    PrefixFormat,
    name_prefix,
)
from tinit.rotation import Rotator, Step
from tinit.safeopen import Access, open_for_service

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .config import LogRotation
    from .logs import Log
    from .safeopen import Owner

__all__ = ["MAX_LINE", "Output", "Ring", "Sink"]

#: where sinks report a destination that fails; set by the supervisor (set_logger)
_log: Log | None = None


def set_logger(log: Log) -> None:
    """Report output failures (a closed stdout, a full disk) through ``log``."""
    global _log
    _log = log


_PIPE_BUF: Final = select.PIPE_BUF  # a pipe write up to this size is atomic (pipe(7))
_PIPE_SIZE: Final = 256 * 1024  # kernel buffer asked for service pipes: fewer wake-ups

_BLOCKING: Final = 0  # regular files, /dev/null, and what cannot be reopened
_NONBLOCKING: Final = 1  # our own O_NONBLOCK description of a pipe or terminal
_SOCKET: Final = 2  # a socket, written with MSG_DONTWAIT

_file_sinks: dict[tuple[int, int], Sink] = {}  # by (st_dev, st_ino): one sink per file


class Sink:
    """A destination of formatted output: tinit's stdout or stderr, or a file.

    Made by `for_fd` or `for_file`. Writes from concurrent tasks never
    interleave within one `write` call, and are served first come, first served.
    """

    def __init__(self, fd: int, kind: int, *, name: str, isatty: bool = False) -> None:
        self._fd = fd
        self._kind = kind
        self._sock = socket.socket(fileno=fd) if kind == _SOCKET else None
        self._lock = trio.Lock()
        self._key: tuple[int, int] | None = None
        self._users = 1
        self._closed = False
        self._newline_owed = False
        self._fifo = False  # a pipe, written through our own non-blocking description
        self._atomic = False  # write whole lines of at most _PIPE_BUF per write(2)
        self.name = name
        """What the sink writes to, for log events: ``fd 1`` or a path."""
        self.isatty = isatty
        """Whether the sink is a terminal (colors make sense)."""
        self.dropped = 0
        """Bytes lost because the destination failed (a closed pipe, a full disk)."""
        self.error: OSError | None = None
        """The error of the last write, if it failed."""
        self.deadline = math.inf
        """After this (trio clock) a write no longer waits for a slow reader; see `cut_off_at`."""
        self.late_bytes = 0
        """Bytes dropped because they could not be written before `deadline`."""
        self.late_lines = 0
        """Lines (or parts of lines) among `late_bytes`."""
        self._waiting: trio.CancelScope | None = None  # the write waiting for the reader
        self._rotator: Rotator | None = None
        self.rotations = 0
        """Rotations of a rotating file sink since it was opened."""

    @classmethod
    def for_fd(cls, fd: int) -> Sink:
        """A sink writing to what ``fd`` (tinit's 1 or 2) refers to, without stalling trio.

        ``fd`` itself is left alone, its O_NONBLOCK flag included; closing the
        sink does not close it.
        """
        mode = os.fstat(fd).st_mode
        tty = os.isatty(fd)
        name = f"fd {fd}"
        if stat.S_ISFIFO(mode) or tty:
            # Opening /proc/self/fd/N makes a new open file description of the
            # same pipe or terminal, whose O_NONBLOCK the services don't see.
            # O_NOCTTY: tinit, a session leader, must not acquire a terminal.
            flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
            try:
                own = os.open(f"/proc/self/fd/{fd}", flags)
            except OSError:
                pass  # no /proc, or ENXIO: the pipe has no reader left; see below
            else:
                sink = cls(own, _NONBLOCKING, name=name, isatty=tty)
                sink._fifo = stat.S_ISFIFO(mode)
                return sink
        if stat.S_ISSOCK(mode):
            # A socket cannot be reopened, but send(MSG_DONTWAIT) is
            # non-blocking per call and leaves the description's flags alone.
            dup = os.dup(fd)
            try:
                return cls(dup, _SOCKET, name=name)
            except OSError:
                os.close(dup)  # not a socket Python can drive: blocking writes below
        # Regular files and /dev/null never make a writer wait for a reader,
        # so blocking writes don't stall the loop. A pipe that could not be
        # reopened ends up here too: writes to it block (or fail with EPIPE).
        return cls(os.dup(fd), _BLOCKING, name=name, isatty=tty)

    @classmethod
    def for_file(
        cls, path: str, owner: Owner | None = None, rotation: LogRotation | None = None
    ) -> Sink:
        """The sink appending to the file ``path`` (``file:PATH`` mode).

        The file is opened with ``owner``'s rights (the service's; None: a
        root service's), created with mode 0640 if missing, and must be a
        regular file or a character device (safeopen.py); otherwise
        FileRefused (an OSError) says why. Every caller naming the same file
        gets the same sink, so lines from several services stay whole; each
        caller must `close` it once. With ``rotation`` the file must not be
        reached through a symbolic link (rotation.py), and is rotated if it
        is a regular file; a shared sink takes the rotation of the last caller.
        """
        rotator: Rotator | None = None
        if rotation is not None:
            rotator, fd = Rotator.open_first(path, rotation, owner)
        else:
            fd = open_for_service(path, Access.APPEND, owner)
        st = os.fstat(fd)
        if rotator is not None and not stat.S_ISREG(st.st_mode):
            rotator.close()  # /dev/null and the like: nothing to rotate
            rotator = None
        key = (st.st_dev, st.st_ino)
        shared = _file_sinks.get(key)
        if shared is not None:
            os.close(fd)
            shared._users += 1
            shared._adopt(rotator)
            return shared
        # The description is ours alone and non-blocking: a regular file
        # never says EAGAIN, a character device (a terminal) may, and is
        # then waited for like a pipe.
        kind = _NONBLOCKING if stat.S_ISCHR(st.st_mode) else _BLOCKING
        sink = cls(fd, kind, name=path)
        sink._key = key
        sink._rotator = rotator
        _file_sinks[key] = sink
        return sink

    def share_with_raw_writers(self) -> None:
        """Keep lines whole although ``raw`` services write into the same pipe.

        A non-blocking write to a full pipe takes what fits; a service's line
        written in between would land inside ours. From now on a pipe sink
        writes whole lines of up to PIPE_BUF bytes per ``write(2)``, which the
        kernel makes atomic: each goes in entirely or not at all. A longer
        line still goes in parts. Costs more system calls, so it is only
        switched on once a ``raw`` service runs.
        """
        self._atomic = self._fifo

    def cut_off_at(self, deadline: float) -> None:
        """From ``deadline`` (trio clock) on, write what fits at once and drop the rest.

        For a shutdown: its budget bounds how long output may take to reach
        a slow reader. A write waiting at ``deadline`` stops waiting then.
        """
        self.deadline = deadline
        if self._waiting is not None:
            self._waiting.deadline = deadline

    def _adopt(self, rotator: Rotator | None) -> None:
        """Rotate as a new user of the file wants, if that differs (a reload changed it)."""
        current = self._rotator
        if rotator is not None and current is not None and rotator.rotation == current.rotation:
            rotator.close()  # the current one knows where the file stands
            return
        if current is not None:
            current.close()
        self._rotator = rotator

    async def write(self, data: bytes | memoryview) -> int:
        """Write all of ``data``, waiting while the destination cannot take more.

        Past `deadline` it does not wait: what the destination does not take
        at once is dropped and counted (`late_bytes`, `late_lines`).

        A write that fails (EPIPE, ENOSPC, ...) loses ``data``: it is counted in
        `dropped`, logged, and does not raise, so one broken destination does not
        stop a service or tinit. Later writes try again.

        Returns how many times a rotating file was rotated on the way: once a
        file sink rotates, ``data`` must be whole lines.
        """
        async with self._lock:
            if self._newline_owed:
                # An earlier write was cancelled midway through a line; end that
                # line so this one does not start inside it.
                data = b"\n" + data
                self._newline_owed = False
            if self._rotator is not None and not self._closed:
                # A regular file: its writes never wait, so none is cut short.
                lines = data if isinstance(data, bytes) else bytes(data)
                return self._write_rotating(self._rotator, lines)
            # bytes, for _piece to find line ends in
            flat = (data if isinstance(data, bytes) else bytes(data)) if self._atomic else None
            whole = memoryview(flat if flat is not None else data)
            view = whole
            try:
                while view:
                    if self._closed:
                        raise trio.ClosedResourceError
                    try:
                        if self._sock is not None:
                            n = self._sock.send(view, socket.MSG_DONTWAIT)
                        elif flat is not None:
                            n = os.write(self._fd, view[: _piece(flat, len(whole) - len(view))])
                        else:
                            n = os.write(self._fd, view)
                    except BlockingIOError:
                        with trio.move_on_at(self.deadline) as self._waiting:
                            await trio.lowlevel.wait_writable(self._fd)
                        self._waiting = None
                        if trio.current_time() < self.deadline:
                            continue
                        self._late(view)
                        break
                    view = view[n:]
                    if self.error is not None:
                        self.error = None
            except (OSError, trio.ClosedResourceError) as exc:
                self._failed(exc, len(view))
            finally:
                done = len(whole) - len(view)
                if 0 < done < len(whole):
                    self._newline_owed = whole[done - 1] != 0x0A
        return 0

    def _write_rotating(self, rotator: Rotator, data: bytes) -> int:
        """Append ``data``, whole lines, rotating between two lines when the file is full."""
        rotated = start = 0
        while start < len(data):
            step, n = rotator.next_step(data, start, trio.current_time())
            match step:
                case Step.WRITE:
                    try:
                        n = os.write(self._fd, memoryview(data)[start : start + n])
                    except OSError as exc:
                        self._failed(exc, len(data) - start)
                        self._newline_owed = start > 0 and data[start - 1] != 0x0A
                        break
                    rotator.written(n)
                    start += n
                    self.error = None
                case Step.ROTATE:
                    rotated += self._rotate(rotator)
                case Step.DROP:
                    self.dropped += n
                    start += n
                case _:
                    assert_never(step)
        return rotated

    def _rotate(self, rotator: Rotator) -> int:
        """Go on in a new file; 1 if it was done, 0 if not (logged, at the first failure)."""
        failing = rotator.error is not None
        fd = rotator.rotate(trio.current_time())
        if fd is None:
            if not failing and _log is not None:
                _log.warning(
                    "output_rotate_failed",
                    sink=self.name,
                    error=str(rotator.error),
                    writes_on_up_to=rotator.cap,
                )
            return 0
        os.close(self._fd)
        self._fd = fd
        self.rotations += 1
        # Services opening the path from now on find this sink by the new file.
        st = os.fstat(fd)
        if self._key is not None and _file_sinks.get(self._key) is self:
            del _file_sinks[self._key]
        self._key = (st.st_dev, st.st_ino)
        _file_sinks.setdefault(self._key, self)
        if _log is not None:
            if failing:
                _log.info("output_rotate_recovered", sink=self.name, dropped=self.dropped)
            else:
                _log.debug("output_rotated", sink=self.name, rotations=rotator.rotations)
        return 1

    def _late(self, rest: memoryview) -> None:
        self.late_bytes += len(rest)
        self.late_lines += bytes(rest).count(b"\n") or 1

    def _failed(self, exc: OSError | trio.ClosedResourceError, lost: int) -> None:
        self.dropped += lost
        first = self.error is None
        self.error = exc if isinstance(exc, OSError) else OSError("sink closed")
        if first:
            # tinit's own log may go to the very descriptor that just failed.
            with contextlib.suppress(OSError):
                if _log is not None:
                    _log.warning("output_write_failed", sink=self.name, error=str(exc))

    def close(self) -> None:
        """Release the sink; a file sink shared by several services closes with its last user."""
        if self._closed:
            return
        if self._key is not None:
            self._users -= 1
            if self._users:
                return
            if _file_sinks.get(self._key) is self:
                del _file_sinks[self._key]
        self._closed = True
        if self._rotator is not None:
            self._rotator.close()
        if self._kind != _BLOCKING:
            with contextlib.suppress(RuntimeError):  # outside trio: nobody can be waiting
                trio.lowlevel.notify_closing(self._fd)
        if self._sock is not None:
            self._sock.close()
        else:
            os.close(self._fd)


def _piece(data: bytes, start: int) -> int:
    """How much of ``data[start:]`` to write at once so that the write is atomic.

    Whole lines, at most _PIPE_BUF bytes in all; a single longer line alone.
    """
    end = start + _PIPE_BUF
    if end >= len(data):
        return len(data) - start
    newline = data.rfind(b"\n", start, end)
    if newline < 0:
        newline = data.find(b"\n", end)
        if newline < 0:
            return len(data) - start
    return newline + 1 - start


_RECORD: Final = struct.Struct("<dBI")  # a ring record's header: time, stream, length
_STREAMS: Final = ("stdout", "stderr")
_FIRST_PAGE: Final = 512  # bytes; later pages double up to a sixteenth of the ring


class _Page:
    """A run of ring records, packed one after another in one buffer."""

    __slots__ = ("buf", "count", "first", "used")

    def __init__(self, capacity: int, first: int) -> None:
        self.buf = bytearray(capacity)
        self.used = 0
        self.first = first  # number of its first record
        self.count = 0

    def records(self, skip: int = 0) -> Iterator[tuple[float, str, bytes]]:
        offset = 0
        for index in range(self.count):
            ts, stream, length = _RECORD.unpack_from(self.buf, offset)
            offset += _RECORD.size
            if index >= skip:
                yield ts, _STREAMS[stream], bytes(self.buf[offset : offset + length])
            offset += length


class Ring:
    """A bounded memory of a service's recent output, for ``tinit logs``.

    It stores the blocks of whole lines as they were read, one timestamp per
    block, and splits them into lines only when asked. Blocks are packed into
    pages of bytes (a small header each), so what the ring costs is what it
    counts: at most ``max_bytes`` of pages, whatever the size of the blocks.
    When a new page would go past that, the oldest pages are dropped.
    """

    def __init__(self, max_bytes: int = 256 * 1024) -> None:
        self.max_bytes = max_bytes
        self._page_max = max(max_bytes // 16, 64)
        self._pages: deque[_Page] = deque()
        self._size = 0  # bytes of pages held
        self._added = 0  # blocks ever added: numbers them for followers
        self._listeners: set[Callable[[], None]] = set()

    @property
    def size(self) -> int:
        """Bytes held, headers and unused page space included."""
        return self._size

    def add(self, stream: str, data: bytes, ts: float | None = None) -> None:
        """Remember ``data``, whole newline-terminated lines from ``stream``."""
        room = self.max_bytes - _RECORD.size
        if len(data) > room:
            data = data[data.find(b"\n", len(data) - room - 1) + 1 :]
        if not data:
            return
        need = _RECORD.size + len(data)
        page = self._pages[-1] if self._pages else None
        if page is None or page.used + need > len(page.buf):
            grown = 2 * len(page.buf) if page is not None else _FIRST_PAGE
            capacity = max(need, min(grown, self._page_max))
            while self._pages and self._size + capacity > self.max_bytes:
                self._size -= len(self._pages.popleft().buf)
            page = _Page(capacity, self._added)
            self._pages.append(page)
            self._size += capacity
        when = time.time() if ts is None else ts
        _RECORD.pack_into(page.buf, page.used, when, _STREAMS.index(stream), len(data))
        start = page.used + _RECORD.size
        page.buf[start : start + len(data)] = data
        page.used = start + len(data)
        page.count += 1
        self._added += 1
        for listener in self._listeners:
            listener()

    @property
    def cursor(self) -> int:
        """A position in the ring's history: pass it to `since` later."""
        return self._added

    def since(self, cursor: int) -> tuple[int, list[tuple[float, str, str]]]:
        """Lines added after ``cursor`` that are still held, and the new cursor."""
        found: list[tuple[float, str, str]] = []
        for page in self._pages:
            if page.first + page.count > cursor:
                for ts, stream, chunk in page.records(max(cursor - page.first, 0)):
                    found.extend((ts, stream, text) for text in _split(chunk))
        return self._added, found

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, float, str, bytes]]:
        """Blocks numbered ``start`` up to ``stop``: (number, time, stream, data), oldest first.

        Only blocks still held when reached are given. Safe to suspend
        between blocks while `add` runs: a block dropped meanwhile is
        skipped, and a page already being read stays readable (its records
        never change once written), so a slow reader holds at most one page
        that the ring has let go of.
        """
        number = start
        while number < stop:
            page = next((p for p in self._pages if p.first + p.count > number), None)
            if page is None:
                return
            number = max(number, page.first)
            for ts, stream, data in page.records(number - page.first):
                if number >= stop:
                    return
                yield number, ts, stream, data
                number += 1

    def tail(self, n: int | None) -> tuple[int, int, int]:
        """Where the last ``n`` lines held start (all without ``n``): (block, lines to skip, lines).

        The block is a number for `blocks`; the lines to skip are at the head
        of that block; the last item is how many lines there are from there on.
        """
        if n is not None and n <= 0:
            return self._added, 0, 0
        count = 0
        start = self._added
        for page in reversed(self._pages):
            numbered = list(enumerate(page.records(), page.first))  # one page: bounded
            for number, (_ts, _stream, data) in reversed(numbered):
                lines = data.count(b"\n")
                if n is not None and count + lines >= n:
                    return number, count + lines - n, n
                count += lines
                start = number
        return start, 0, count

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (synchronously, cheaply) after every `add`, until `unlisten`."""
        self._listeners.add(callback)

    def unlisten(self, callback: Callable[[], None]) -> None:
        self._listeners.discard(callback)

    def lines(self, n: int | None = None) -> list[tuple[float, str, str]]:
        """The last ``n`` lines held (all without ``n``), oldest first, as (time, stream, text)."""
        if n is not None and n <= 0:
            return []
        groups: list[list[tuple[float, str, str]]] = []
        count = 0
        for page in reversed(self._pages):
            for ts, stream, chunk in reversed(list(page.records())):
                texts = _split(chunk)
                if n is not None and count + len(texts) >= n:
                    texts = texts[len(texts) - (n - count) :]
                    groups.append([(ts, stream, text) for text in texts])
                    return [line for group in reversed(groups) for line in group]
                groups.append([(ts, stream, text) for text in texts])
                count += len(texts)
        return [line for group in reversed(groups) for line in group]


def _split(chunk: bytes) -> list[str]:
    texts = chunk.decode("utf-8", "replace").split("\n")
    texts.pop()
    return texts


class Output:
    """The output of one run of one service: its pipes and the task pumping them.

    ``mode`` is ``prefix``, ``raw``, ``json``, ``null`` or ``file:/abs/path``;
    ``width`` pads names in ``prefix`` mode (the longest service name).
    ``color`` colors the prefix; pass ``sink.isatty``. A ``file:`` rotates
    by ``rotation``, and ``on_rotate`` hears how many rotations each write made.
    """

    def __init__(
        self,
        name: str,
        mode: str,
        *,
        width: int,
        stdout: Sink,
        stderr: Sink,
        ring: Ring,
        color: bool,
        rotation: LogRotation | None = None,
        on_rotate: Callable[[int], None] | None = None,
    ) -> None:
        kind = "file" if mode.startswith("file:") else mode
        if kind not in ("prefix", "raw", "json", "null", "file"):
            raise ValueError(f"unknown output mode {mode!r}")
        if kind == "file" and not os.path.isabs(mode[5:]):
            raise ValueError(f"output file must be an absolute path: {mode!r}")
        self.name = name
        self.mode = mode
        self.ring = ring
        self._kind = kind
        self._sinks = {"stdout": stdout, "stderr": stderr}
        self._prefix = PrefixFormat(name_prefix(name, width, color=color))
        self._json = JsonFormat(name)
        self._file: Sink | None = None
        self._rotation = rotation
        self._on_rotate = on_rotate
        self._child: list[int] = []
        self._read: dict[str, int] = {}
        self._held = {"stdout": 0, "stderr": 0}
        self.peak_buffered = 0
        #: grows whenever output moves (read from the service, or written on):
        #: the service runner waits for the pump while this keeps moving
        self.progress = 0
        """Most bytes `buffered` has reached."""

    @property
    def buffered(self) -> int:
        """Bytes of service output tinit holds right now, read but not yet written.

        The ring is not counted: it has a bound of its own.
        """
        return self._held["stdout"] + self._held["stderr"]

    @property
    def max_buffered(self) -> int:
        """Upper bound of `buffered`, whatever the service writes and however slow the sinks."""
        out = self._json.max_out() if self._kind == "json" else self._prefix.max_out()
        # Per stream: the last read, the partial line held back, the block
        # being formatted (held-back bytes plus one read), and its output.
        return 2 * (READ_SIZE + MAX_LINE + (MAX_LINE + READ_SIZE) + out)

    def open(self, owner: Owner | None = None) -> tuple[int, int]:
        """Make the descriptors the service gets as its fd 1 and fd 2.

        They are close-on-exec; the spawner dup2()s them into the child, and the
        caller calls `close_child_ends` once the child is forked. A ``file:``
        is opened with ``owner``'s rights (`Sink.for_file`).
        """
        if self._child or self._read:
            raise RuntimeError(f"output of {self.name} is already open")
        try:
            if self._kind == "raw":
                # Zero copy: the service writes straight to tinit's stdout and stderr.
                self._child = [os.dup(1), os.dup(2)]
                for sink in self._sinks.values():
                    sink.share_with_raw_writers()
            elif self._kind == "null":
                flags = os.O_WRONLY | os.O_CLOEXEC
                self._child = [os.open(os.devnull, flags), os.open(os.devnull, flags)]
            else:
                if self._kind == "file":
                    self._file = Sink.for_file(self.mode[5:], owner, self._rotation)
                for stream in ("stdout", "stderr"):
                    r, w = os.pipe2(os.O_CLOEXEC)
                    self._read[stream] = r
                    self._child.append(w)
                    # The read end is ours alone, so O_NONBLOCK on it is safe.
                    os.set_blocking(r, False)
                    with contextlib.suppress(OSError):  # a bigger buffer is a nicety
                        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        except BaseException:
            self.close()
            raise
        return self._child[0], self._child[1]

    def close_child_ends(self) -> None:
        """Close the service's ends in tinit, so EOF comes when the service closes them."""
        for fd in self._child:
            os.close(fd)
        self._child = []

    def close(self) -> None:
        """Close every descriptor this output holds, for when the service never ran.

        In the usual course, `close_child_ends` and the end of `pump` close them all.
        """
        self.close_child_ends()
        self._close_read_ends()

    def _close_read_ends(self) -> None:
        for fd in self._read.values():
            with contextlib.suppress(RuntimeError):  # outside trio: nobody can be waiting
                trio.lowlevel.notify_closing(fd)
            os.close(fd)
        self._read = {}
        if self._file is not None:
            self._file.close()
            self._file = None

    async def pump(self) -> None:
        """Pass the service's output on until EOF on both pipes (or cancellation).

        EOF comes once the service and every process that inherited its pipes
        have closed them. A partial last line is flushed with a newline added.
        Returns at once in ``raw`` and ``null`` mode. Closes the read ends when
        it ends, however it ends.
        """
        try:
            if self._read:
                async with trio.open_nursery() as nursery:
                    for stream, fd in self._read.items():
                        nursery.start_soon(self._pump_stream, stream, fd)
        finally:
            self._close_read_ends()

    async def _pump_stream(self, stream: str, fd: int) -> None:
        lines = LineAssembler()
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                self._held[stream] = lines.pending
                await trio.lowlevel.wait_readable(fd)
                continue
            if not data:
                break
            self.progress += 1
            ts = time.time()
            blocks = lines.feed(data)
            for body in blocks:
                await self._emit(stream, body, ts, len(data) + lines.pending)
                self.progress += 1
            if not blocks:
                await trio.lowlevel.checkpoint()
        last = lines.flush()
        if last:
            await self._emit(stream, last, time.time(), 0)
        self._held[stream] = 0

    async def _emit(self, stream: str, body: bytes, ts: float, held: int) -> None:
        # held: bytes the caller keeps while this runs (the read, the partial line)
        self.ring.add(stream, body, ts)
        if self._file is not None:
            self._hold(stream, held + len(body))
            rotated = await self._file.write(body)
            if rotated and self._on_rotate is not None:
                self._on_rotate(rotated)
            return
        sink = self._sinks[stream]
        if self._kind == "json":
            pieces: Iterator[bytes | memoryview] = self._json.blocks(body, stream, ts)
        else:
            pieces = self._prefix.blocks(body)
        for out in pieces:
            self._hold(stream, held + len(body) + len(out))
            await sink.write(out)
            del out  # before the next piece is made

    def _hold(self, stream: str, n: int) -> None:
        self._held[stream] = n
        self.peak_buffered = max(self.peak_buffered, self.buffered)
