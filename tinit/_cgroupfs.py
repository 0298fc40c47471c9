"""Low-level file I/O for cgroups.py: cgroupfs files, /proc parsing, inotify.

Every interface file is written with one ``write(2)`` on an fd opened without
``O_CREAT``: the kernel parses each write as one command, and a cgroupfs file
that is missing means the feature (or the controller) is missing, never that
it should be created. Tests replace :func:`write`, :func:`mkdir` and
:func:`rmdir` to imitate the kernel's side effects in a plain directory.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_IN_MODIFY: Final = 0x00000002
_IN_IGNORED: Final = 0x00008000
_INOTIFY_HEADER: Final = 16  # struct inotify_event: wd, mask, cookie, len


def read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def read_keyed(path: str) -> dict[str, int]:
    """A flat keyed file (``cgroup.events``, ``memory.events``, ``cpu.stat``)."""
    values: dict[str, int] = {}
    for line in read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def read_pids(path: str) -> list[int]:
    """The pids in a ``cgroup.procs`` file."""
    return [int(word) for word in read(path).split()]


def write(path: str, data: str) -> None:
    """Write ``data`` to an existing interface file in one ``write(2)``."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data.encode("ascii"))
    finally:
        os.close(fd)


def mkdir(path: str) -> bool:
    """Create a cgroup directory; False when it already existed."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return False
    return True


def rmdir(path: str) -> None:
    os.rmdir(path)


# -- /proc -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of ``/proc/self/mountinfo`` (the fields cgroups.py needs)."""

    point: str
    #: the path of the mounted filesystem's own root (for cgroupfs: a cgroup path)
    root: str
    fstype: str
    #: per-mount options and superblock options, together
    options: frozenset[str]


_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \040, \011, \012, \134.
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 6 or len(fields) < sep + 3:
            continue
        options = set(fields[5].split(","))
        options.update(fields[sep + 3].split(",") if len(fields) > sep + 3 else ())
        mounts.append(
            Mount(
                point=_unescape(fields[4]),
                root=_unescape(fields[3]),
                fstype=fields[sep + 1],
                options=frozenset(options),
            )
        )
    return mounts


def unified_path(proc_cgroup: str) -> str | None:
    """The cgroup v2 path from ``/proc/PID/cgroup`` (its ``0::PATH`` line)."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def v1_controllers(mounts: list[Mount]) -> frozenset[str]:
    """Controllers bound to cgroup v1 hierarchies (as mount options name them)."""
    found: set[str] = set()
    for mount in mounts:
        if mount.fstype == "cgroup":
            found.update(mount.options)
    return frozenset(found)


def choose_mount(path: str, mounts: list[Mount]) -> tuple[Mount, str] | None:
    """The cgroup2 mount through which cgroup ``path`` is reachable, and its relative path.

    Prefers ``/sys/fs/cgroup``, then a hybrid host's ``/sys/fs/cgroup/unified``.
    None when ``path`` is outside every mount (a cgroup namespace shows a
    cgroup outside its root as ``/../...``).
    """
    reachable = []
    for mount in mounts:
        if mount.fstype != "cgroup2" or not path.startswith("/") or path.startswith("/.."):
            continue
        rel = os.path.relpath(path, mount.root)
        if rel != ".." and not rel.startswith("../"):
            reachable.append((mount, rel))
    if not reachable:
        return None
    return min(reachable, key=lambda item: preference(item[0]))


def preference(mount: Mount) -> tuple[int, int]:
    for rank, suffix in enumerate(("/sys/fs/cgroup", "/sys/fs/cgroup/unified")):
        if mount.point.endswith(suffix):
            return rank, len(mount.point)
    return 2, len(mount.point)


# -- the layout's moves --------------------------------------------------------


def migrate(source: str, target: str, *, only: int | None = None, passes: int = 5) -> int:
    """Move every process of cgroup ``source`` into ``target``; return how many moved.

    Repeats while new processes show up (bounded). ``only``: move just that
    pid, if it is there. Raises OSError, with the pid as its filename, for a
    process that can't be moved.
    """
    procs = os.path.join(target, "cgroup.procs")
    moved = 0
    for _ in range(passes):
        pids = read_pids(os.path.join(source, "cgroup.procs"))
        if only is not None:
            pids = [pid for pid in pids if pid == only]
        if not pids:
            break
        for pid in pids:
            try:
                write(procs, str(pid))
                moved += 1
            except ProcessLookupError:
                pass  # exited meanwhile
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(pid)) from None
    return moved


def enable(
    directory: str, wanted: frozenset[str], evacuate: Callable[[], object], retries: int = 5
) -> tuple[frozenset[str], dict[str, str]]:
    """Enable ``wanted`` controllers for the children of ``directory``.

    Returns what is enabled and, for each refused controller, the error.
    EBUSY (processes in ``directory``) is retried after ``evacuate()`` with
    short sleeps, then raised.
    """
    control = os.path.join(directory, "cgroup.subtree_control")
    enabled = frozenset(read(control).split())
    todo = sorted(wanted - enabled)
    if not todo:
        return wanted, {}
    delay = 0.01
    for attempt in range(retries):
        try:
            write(control, " ".join(f"+{c}" for c in todo))
            return wanted, {}
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                break
            if attempt == retries - 1:
                raise
            time.sleep(delay)
            delay *= 2
            evacuate()
    # One controller refused (a threaded subtree refuses memory and io with
    # EOPNOTSUPP) fails the whole write: enable them one by one, keep the rest.
    ok = set(enabled & wanted)
    refused: dict[str, str] = {}
    for controller in todo:
        try:
            write(control, f"+{controller}")
            ok.add(controller)
        except OSError as exc:
            refused[controller] = exc.strerror or str(exc)
    return frozenset(ok), refused


# -- inotify -----------------------------------------------------------------


class FileWatch:
    """An inotify watch for IN_MODIFY on one file, awaited from trio.

    cgroupfs calls ``kernfs_notify`` whenever the value of an events file
    changes, which raises IN_MODIFY for inotify (and POLLPRI for poll, which
    trio cannot wait for).

    Every watch shares one inotify instance per trio run (see _Inotify):
    closing an inotify instance waits for an RCU grace period (about 10 ms
    here), so one instance per wait put that much on tinit's only thread for
    every service stopped, and the per-user instance limit (128) could run out.
    """

    def __init__(self, path: str) -> None:
        self._inotify = _Inotify.current()
        self._watched = self._inotify.add(path)
        self._closed = False

    @property
    def alive(self) -> bool:
        """False once the kernel dropped the watch (the file or cgroup is gone)."""
        return self._watched.alive

    async def wait(self, timeout: float) -> None:
        """Return after the next change, or after ``timeout`` seconds at the latest."""
        import trio

        with trio.move_on_after(timeout):
            await self._watched.changed.wait()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._inotify.remove(self._watched)


class _Watched:
    __slots__ = ("alive", "changed", "refs", "wd")

    def __init__(self, wd: int) -> None:
        import trio

        self.wd = wd
        self.refs = 1
        self.alive = True
        self.changed = trio.Event()


class _Inotify:
    """The one inotify instance of a trio run, and the system task that reads it."""

    def __init__(self) -> None:
        import trio

        libc = _libc()
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), "inotify")
        self.fd = fd
        self._watches: dict[int, _Watched] = {}
        trio.lowlevel.spawn_system_task(self._serve, name="tinit inotify")

    @classmethod
    def current(cls) -> _Inotify:
        instance: _Inotify | None = _inotify_var().get(None)
        if instance is None:
            instance = cls()
            _inotify_var().set(instance)
        return instance

    def add(self, path: str) -> _Watched:
        # The same file watched twice gets the same watch descriptor back.
        wd = _libc().inotify_add_watch(self.fd, os.fsencode(path), _IN_MODIFY)
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        watched = self._watches.get(wd)
        if watched is not None and watched.alive:
            watched.refs += 1
            return watched
        watched = self._watches[wd] = _Watched(wd)
        return watched

    def remove(self, watched: _Watched) -> None:
        watched.refs -= 1
        if watched.refs > 0 or self._watches.get(watched.wd) is not watched:
            return
        del self._watches[watched.wd]
        if watched.alive:
            _libc().inotify_rm_watch(self.fd, watched.wd)  # EINVAL if already gone: fine

    async def _serve(self) -> None:
        import trio

        try:
            while True:
                await trio.lowlevel.wait_readable(self.fd)
                self._drain()
        finally:
            _inotify_var().set(None)
            self._watches.clear()
            os.close(self.fd)

    def _drain(self) -> None:
        import trio

        while True:
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                return
            offset = 0
            while offset + _INOTIFY_HEADER <= len(data):
                wd = int.from_bytes(data[offset : offset + 4], "little", signed=True)
                mask = int.from_bytes(data[offset + 4 : offset + 8], "little")
                length = int.from_bytes(data[offset + 12 : offset + 16], "little")
                offset += _INOTIFY_HEADER + length
                watched = self._watches.get(wd)
                if watched is None:
                    continue
                if mask & _IN_IGNORED:
                    watched.alive = False
                    del self._watches[wd]
                watched.changed.set()
                watched.changed = trio.Event()


_INOTIFY: Any = None


def _inotify_var() -> Any:
    """The RunVar holding this trio run's _Inotify (made on first use: trio loads lazily)."""
    global _INOTIFY
    if _INOTIFY is None:
        import trio

        _INOTIFY = trio.lowlevel.RunVar("tinit_inotify")
    return _INOTIFY


class _Sleep:
    """Stands in for a FileWatch where inotify is unavailable: a timed re-check."""

    alive = True

    def __init__(self, interval: float) -> None:
        self._interval = interval

    async def wait(self, timeout: float) -> None:
        import trio

        await trio.sleep(min(timeout, self._interval))


@contextmanager
def open_watch(path: str, fallback_interval: float = 0.1) -> Iterator[FileWatch | _Sleep]:
    """Watch ``path`` for changes; degrade to a short timed re-check without inotify.

    The watch is in place when this returns, so a check of the file made
    afterwards cannot miss a change that happens after the check.
    """
    try:
        watch: FileWatch | _Sleep = FileWatch(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        watch = _Sleep(fallback_interval)
    try:
        yield watch
    finally:
        if isinstance(watch, FileWatch):
            watch.close()


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_init1.restype = ctypes.c_int
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_add_watch.restype = ctypes.c_int
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.inotify_rm_watch.restype = ctypes.c_int
        _LIBC = libc
    return _LIBC
