"""Opening a file on a service's behalf: with the service's rights, and never waiting.

tinit runs as root, its services usually do not. A path in a service's
config (``stdin:``, ``output: file:``) may lie in a directory the service
owns, so the service can put a symbolic link there to a file only root may
open; opened as root, tinit would hand the service that file, or append the
service's output to it. The rule: **a service never gets, through tinit,
access to a file it could not open itself.**

How: the open happens with the service's filesystem ids. ``setfsuid`` and
``setfsgid``, with the service's supplementary groups, make the kernel check
every step of the path, symbolic links included, as the service's user would
see it -- exactly, with no check of our own to get wrong or race. Changing
the filesystem uid away from 0 also takes the file capabilities
(``CAP_DAC_OVERRIDE`` and the like) out of tinit's effective set; setting it
back restores them. tinit has a single thread and nothing awaits between the
switch and the switch back, so nothing else runs with the service's ids. A
file it creates belongs to the service's user, as if the service had made it.

The open never waits and never loops: it is non-blocking (a FIFO without a
peer fails at once instead of waiting for one), only regular files and
character devices (``/dev/null``) are kept, and a missing file is looked for
at most twice around its creation. A symbolic link to a missing file is
refused, never followed to create its target. Every failure is one
`FileRefused` naming the path and why; the caller turns it into a failed
start of the service.

A root service (no ``user:``, or ``user: root``) may open anything, so its
files are opened with tinit's own rights: pass ``owner=None``.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "CREATE_MODE",
    "Access",
    "FileRefused",
    "Owner",
    "open_for_service",
    "rights_of",
    "root_controlled",
]

#: the mode of a file tinit creates for a service's output
CREATE_MODE: Final = 0o640
_COMMON: Final = os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

# Resolved once, in tinit; setfsuid and setfsgid are one system call each.
_libc: Final = ctypes.CDLL(None, use_errno=True)
_libc.setfsuid.argtypes = [ctypes.c_uint]
_libc.setfsuid.restype = ctypes.c_int
_libc.setfsgid.argtypes = [ctypes.c_uint]
_libc.setfsgid.restype = ctypes.c_int


class Access(enum.Enum):
    """What tinit does with the file."""

    #: read it: a service's stdin, an env file; the descriptor is blocking again
    READ = enum.auto()
    #: append to it, creating it with mode 0640 if missing; stays non-blocking
    APPEND = enum.auto()


@dataclass(frozen=True, slots=True)
class Owner:
    """The ids a service runs with, whose rights an open on its behalf uses."""

    uid: int
    gid: int
    groups: tuple[int, ...]


class FileRefused(OSError):
    """A file tinit did not open for a service; ``str()`` names the path and why."""

    def __init__(self, path: str, code: int, reason: str) -> None:
        super().__init__(code, reason, path)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def open_for_service(path: str, access: Access, owner: Owner | None) -> int:
    """Open ``path`` as ``owner`` would; return a close-on-exec fd, or raise FileRefused.

    ``owner=None`` opens with tinit's own rights (a root service). A READ fd
    is blocking, as a service expects its stdin: a caller that reads it in
    tinit itself must also refuse character devices other than /dev/null (a
    terminal would block the read), and bound what it reads.
    """
    with rights_of(owner, path):
        fd = _open(path, access, owner)
    try:
        _check_kind(fd, path)
        if access is Access.READ:
            # The reader is the service (or a bounded read in tinit): it gets
            # the file description as a program expects it, blocking.
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


#: symbolic links followed by root_controlled before it gives up, as the kernel's limit
_MAX_LINKS: Final = 40


def root_controlled(path: str) -> bool:
    """Whether only root can change what ``path`` leads to: a root-owned regular file.

    Every directory on the way, every symbolic link followed and the file
    itself must belong to root, and no directory may be writable by others
    (a sticky one, like /tmp, is fine: others can't replace root's entries
    there). Then reading the file as root hands a service only what the
    config's author pointed at, as systemd's ``EnvironmentFile=`` does for
    root-only secrets. Answers False for anything else, and never raises.
    """
    parts = [p for p in os.path.abspath(path).split("/") if p]
    current, links = "/", 0
    try:
        while parts:
            if not _trusted(os.lstat(current), directory=True):
                return False
            candidate = os.path.join(current, parts.pop(0))
            st = os.lstat(candidate)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if st.st_uid != 0 or links > _MAX_LINKS:
                    return False
                target = os.readlink(candidate)
                base = "/" if target.startswith("/") else current
                parts = [p for p in os.path.join(base, target).split("/") if p] + parts
                current = "/"
                continue
            current = candidate
        final = os.lstat(current)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(final.st_mode) and _trusted(final, directory=False)


def _trusted(st: os.stat_result, *, directory: bool) -> bool:
    if st.st_uid != 0:
        return False
    if directory and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
        return True
    return not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _open(path: str, access: Access, owner: Owner | None) -> int:
    who = "" if owner is None else f" as uid {owner.uid}"
    try:
        if access is Access.READ:
            return os.open(path, os.O_RDONLY | _COMMON)
        return _open_append(path)
    except FileRefused:
        raise
    except OSError as exc:
        code = exc.errno or errno.EIO
        if code == errno.ENXIO:
            # O_NONBLOCK: a FIFO without a reader, or a socket, refuses at once.
            reason = "a FIFO or socket, not a regular file: refused"
        else:
            mode = "reading" if access is Access.READ else "appending"
            reason = f"cannot open for {mode}{who}: {os.strerror(code)}"
        raise FileRefused(path, code, reason) from None


def _open_append(path: str) -> int:
    """Open for appending, creating the file with exactly mode 0640 if missing."""
    flags = os.O_WRONLY | os.O_APPEND | _COMMON
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, CREATE_MODE)
    except FileExistsError:
        # Made by someone else in between, or a symbolic link to nowhere.
        try:
            return os.open(path, flags)
        except FileNotFoundError:
            raise FileRefused(
                path, errno.ENOENT, "a symbolic link to a missing file: refused"
            ) from None
    # The umask may have taken bits away; the file is promised as 0640.
    os.fchmod(fd, CREATE_MODE)
    return fd


def _check_kind(fd: int, path: str) -> None:
    """Keep regular files and character devices: nothing else is safe to hand on."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode) or stat.S_ISCHR(mode):
        return
    if stat.S_ISFIFO(mode):
        kind = "a FIFO"
    elif stat.S_ISDIR(mode):
        kind = "a directory"
    elif stat.S_ISBLK(mode):
        kind = "a block device"
    else:
        kind = "not a regular file"
    raise FileRefused(path, errno.EINVAL, f"{kind}, not a regular file: refused")


@contextlib.contextmanager
def rights_of(owner: Owner | None, path: str) -> Iterator[None]:
    """Make the kernel check file access as ``owner``; tinit's own ids again after.

    Nothing may await inside: every task would run with ``owner``'s rights.
    A failure to switch is a FileRefused naming ``path``.
    """
    euid, egid = os.geteuid(), os.getegid()
    if owner is None or (owner.uid == euid and owner.gid == egid):
        yield
        return
    groups = os.getgroups()
    changed = False
    try:
        try:
            os.setgroups(list(owner.groups))
            changed = True
            _set_fs_id(_libc.setfsgid, owner.gid, "group")
            _set_fs_id(_libc.setfsuid, owner.uid, "user")
        except PermissionError as exc:
            reason = f"tinit cannot take the rights of uid {owner.uid} to open it: {exc.strerror}"
            raise FileRefused(path, errno.EPERM, reason) from None
        yield
    finally:
        # Back to tinit's own ids, which it may always take again.
        _libc.setfsuid(euid)
        _libc.setfsgid(egid)
        if changed:
            os.setgroups(groups)


def _set_fs_id(call: Callable[[int], int], wanted: int, what: str) -> None:
    # setfsuid and setfsgid return the id from before the call, and fail
    # silently: a second call tells whether the first one took.
    call(wanted)
    if call(wanted) != wanted:
        raise PermissionError(errno.EPERM, f"cannot set the filesystem {what} id to {wanted}")
