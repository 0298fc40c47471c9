"""Rotating a ``file:`` output: ``PATH`` becomes ``PATH.1`` when it is full.

With ``log_rotation``, the file sink (output.py) asks its `Rotator` before
each write how much of the block of whole lines in hand may go into the
current file (`Rotator.next_step`). When none may, the old files move up by
one (``PATH.1`` to ``PATH.2`` ..., ``PATH.keep`` is replaced and so dropped),
``PATH`` becomes ``PATH.1``, and a new ``PATH`` is opened. A file therefore
never starts or ends inside a line, and holds more than ``max_size`` bytes
only when it holds a single line longer than that.

Rotating is a few renames and one open: metadata work, done inline in the
trio loop. No file is ever read.

The directory is often the service's own, and its user may put anything in
it between two rotations: ``PATH.1`` as a symbolic link to a file only root
may write, a directory named ``PATH.2``, a FIFO as the next ``PATH``. So:

- every step runs with the service's filesystem ids (safeopen.py): the
  kernel refuses whatever its user could not do itself;
- the directory is opened once, with the file, and the renames and opens go
  through that descriptor (renameat, openat), not through the path again;
- a rename moves or replaces a name, never what a symbolic link points to;
- ``PATH`` is opened with O_NOFOLLOW and O_NONBLOCK and kept only if it is a
  regular file, so ``PATH`` itself may not be a symbolic link.

What such a user can still do is no more than it can do to its own log
anyway: make a rotation fail, or delete the old files. A failed rotation
stops neither the service nor tinit. Its output goes on into the current
file up to `Rotator.cap` bytes (the room the config grants all the files
together), what comes past that is dropped and counted, and the rotation
is tried again at most once a second.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import itertools
import os
import stat
from typing import TYPE_CHECKING, Final

from .safeopen import CREATE_MODE, FileRefused, rights_of

if TYPE_CHECKING:
    from .config import LogRotation
    from .safeopen import Owner

__all__ = ["Rotator", "Step", "fitting"]

#: seconds between tries of a rotation that failed
RETRY_AFTER: Final = 1.0
_OPEN: Final = (
    os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
)


def fitting(data: bytes, start: int, used: int, limit: int) -> int:
    """How many bytes of ``data[start:]`` (whole lines) may join a file of ``used`` bytes.

    Whole lines that keep the file within ``limit``; 0 means none do (the
    file must be rotated first). An empty file takes at least one line,
    however long.
    """
    left = len(data) - start
    room = limit - used
    if left <= room:
        return left
    if room > 0:
        cut = data.rfind(b"\n", start, start + room) + 1
        if cut:
            return cut - start
    if used > 0:
        return 0
    end = data.find(b"\n", start) + 1
    return end - start if end else left


class Step(enum.Enum):
    """What the sink does next with the data in hand (`Rotator.next_step`)."""

    #: append that many bytes to the current file
    WRITE = enum.auto()
    #: rotate (`Rotator.rotate`), then ask again
    ROTATE = enum.auto()
    #: rotation failed and the current file is at `Rotator.cap`: lose that many bytes
    DROP = enum.auto()


class Rotator:
    """The rotation of one output file: its directory, its name, and where it stands.

    Made with `open_first`; `close` releases the directory.
    """

    def __init__(self, path: str, rotation: LogRotation, owner: Owner | None, dir_fd: int) -> None:
        self.path = path
        self.rotation = rotation
        self._owner = owner
        self._dir = dir_fd
        self._name = os.path.basename(path)
        self.used = 0
        """Bytes in the current file, as far as tinit knows."""
        self.rotations = 0
        """Rotations done."""
        self.error: OSError | None = None
        """Why the last rotation failed; None once one succeeds."""
        self._moved = False  # the current file was renamed away; no new PATH yet
        self._retry_at = 0.0

    @classmethod
    def open_first(
        cls, path: str, rotation: LogRotation, owner: Owner | None
    ) -> tuple[Rotator, int]:
        """The rotator of ``path`` and the file itself, open for appending.

        The file is made if missing; with ``owner``'s rights throughout.
        FileRefused (an OSError) says why it can't be. A character device
        is opened too: the caller must not rotate it.
        """
        with rights_of(owner, path):
            try:
                dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                reason = f"cannot open its directory: {os.strerror(exc.errno or errno.EIO)}"
                raise FileRefused(path, exc.errno or errno.EIO, reason) from None
            rotator = cls(path, rotation, owner, dir_fd)
            try:
                fd = rotator._open(devices=True)
            except BaseException:
                rotator.close()
                raise
        rotator.used = os.fstat(fd).st_size
        return rotator, fd

    @property
    def cap(self) -> int:
        """The most the current file takes while rotations fail: all the files' room."""
        return (self.rotation.keep + 1) * self.rotation.max_size

    def next_step(self, data: bytes, start: int, now: float) -> tuple[Step, int]:
        """What to do with ``data[start:]``, whole lines, at ``now`` (any clock in seconds)."""
        n = fitting(data, start, self.used, self.rotation.max_size)
        if n:
            return Step.WRITE, n
        if now >= self._retry_at:
            return Step.ROTATE, 0
        n = fitting(data, start, self.used, self.cap)
        if n:
            return Step.WRITE, n
        return Step.DROP, len(data) - start

    def written(self, n: int) -> None:
        self.used += n

    def rotate(self, now: float) -> int | None:
        """Move the files up by one and open a new ``PATH``: its fd, or None if that failed.

        On failure `error` says why and the caller goes on with its current
        file; the next try is due `RETRY_AFTER` seconds after ``now``. If
        the renames were done but the open failed, the next try only opens.
        """
        try:
            with rights_of(self._owner, self.path):
                if not self._moved:
                    self._shift()
                    self._moved = True
                fd = self._open(devices=False)
        except OSError as exc:
            self.error = exc
            self._retry_at = now + RETRY_AFTER
            return None
        self._moved = False
        self.error = None
        self._retry_at = 0.0
        self.rotations += 1
        self.used = os.fstat(fd).st_size
        return fd

    def close(self) -> None:
        if self._dir >= 0:
            os.close(self._dir)
            self._dir = -1

    def _shift(self) -> None:
        """PATH.keep-1 to PATH.keep (replacing it), ... PATH to PATH.1; missing ones are skipped."""
        names = [self._name] + [f"{self._name}.{i}" for i in range(1, self.rotation.keep + 1)]
        for older, newer in reversed(list(itertools.pairwise(names))):
            with contextlib.suppress(FileNotFoundError):
                os.rename(older, newer, src_dir_fd=self._dir, dst_dir_fd=self._dir)

    def _open(self, *, devices: bool) -> int:
        """``PATH`` for appending, made with mode 0640 if missing; never through a link.

        A regular file, or with ``devices`` a character device (``/dev/null``,
        which the sink then never rotates); nothing else.
        """
        try:
            try:
                new = _OPEN | os.O_CREAT | os.O_EXCL
                fd = os.open(self._name, new, CREATE_MODE, dir_fd=self._dir)
            except FileExistsError:
                fd = os.open(self._name, _OPEN, dir_fd=self._dir)
            else:
                os.fchmod(fd, CREATE_MODE)  # the umask may have taken bits away
        except OSError as exc:
            code = exc.errno or errno.EIO
            if code == errno.ELOOP:
                reason = "a symbolic link, which a rotated file may not be: refused"
            elif code == errno.ENXIO:
                reason = "a FIFO or socket, not a regular file: refused"
            else:
                reason = f"cannot open for appending: {os.strerror(code)}"
            raise FileRefused(self.path, code, reason) from None
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or (devices and stat.S_ISCHR(mode))):
            os.close(fd)
            reason = "not a regular file, which a rotated file must be: refused"
            raise FileRefused(self.path, errno.EINVAL, reason)
        return fd
