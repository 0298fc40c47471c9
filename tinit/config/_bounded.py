"""The limits of a config file, and reading a file within them.

tinit is PID 1 and root, and reads its config again on every reload, so a
config that is broken or was generated badly must cost a bounded amount of
time and memory and end in a located problem, never in a hang or a
traceback. The limits are here, with the reader of files (the config, an env
file) that never blocks on a FIFO's open, never reads a device such as
/dev/zero and never reads past the size limit; ``_compose`` holds YAML to the
others. docs/configuration.md lists them under "Limits". No yaml here, so
that importing the loader stays cheap.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tinit.safeopen import Owner

#: the config file and each env file
MAX_FILE_BYTES: Final = 1 << 20
#: mappings and lists inside each other, counting what an alias brings in
MAX_DEPTH: Final = 64
#: values in the document as the loader sees it, each alias counting what it repeats
MAX_NODES: Final = 50_000
#: characters in one string (the kernel takes at most 128 KiB per argument)
MAX_STRING: Final = 65_536
MAX_SERVICES: Final = 1_000

_CHUNK: Final = 65_536


class Unreadable(Exception):
    """A file can't be read; the message says why, in a few words."""


def read_bounded(path: str, *, pipes: bool, owner: Owner | None = None) -> bytes:
    """The bytes of the file at ``path``, at most ``MAX_FILE_BYTES`` of them.

    The file is opened non-blocking, so that a FIFO nobody writes to doesn't
    hang the open. A regular file is read, and /dev/null; with ``pipes`` a
    FIFO too, until its writers close it. Anything else (a device such as
    /dev/zero, a socket, a directory) is refused. An env file is read with
    the rights of the service it is for (``owner``, see tinit/safeopen.py),
    so that a service never reads, through tinit, a file it could not read
    itself -- unless only root controls its path (a root-only secret the
    config's author named), which tinit reads as root.
    """
    try:
        from tinit.safeopen import Access, open_for_service, root_controlled

        if owner is None or root_controlled(path):
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        else:
            fd = open_for_service(path, Access.READ, owner)
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode) and pipes:
            os.set_blocking(fd, True)
        elif not stat.S_ISREG(mode) and not _is_null_device(mode, fd):
            wanted = "a regular file or a pipe" if pipes else "a regular file"
            raise Unreadable(f"it is {_kind(mode)}, not {wanted}")
        return _read_at_most(fd)
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)


def _read_at_most(fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := os.read(fd, _CHUNK):
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise Unreadable(f"it is larger than {MAX_FILE_BYTES >> 20} MiB, the limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_null_device(mode: int, fd: int) -> bool:
    """Whether ``fd`` is /dev/null (character device 1:3), which reads as empty."""
    return stat.S_ISCHR(mode) and os.fstat(fd).st_rdev == os.makedev(1, 3)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
