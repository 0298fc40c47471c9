"""Cgroup v2 for services: discovery, the layout, limits, kill and watching.

Layout (README, "Cgroups"), below ROOT, tinit's own cgroup::

    ROOT/tinit            tinit and every process that was in ROOT at start
    ROOT/services/NAME    one leaf per service, with its limits

Kernel rules this relies on (Documentation/admin-guide/cgroup-v2.rst):

- **No internal processes.** A non-root cgroup can enable controllers for its
  children (``cgroup.subtree_control``) only while it has no processes of
  its own, so every pid listed in ROOT's ``cgroup.procs`` is moved to
  ROOT/tinit first -- all of them, not only tinit: ``docker run --init``
  puts its tini there too. The hierarchy's real root is exempt; there only
  tinit moves, and the host's processes are left alone. Enabling may still
  fail with EBUSY right after a migration (or when ``docker exec`` lands a
  process in ROOT meanwhile), so it is retried after another evacuation.
- **nsdelegate.** Inside a cgroup namespace the kernel refuses writes to a
  namespace root's files other than ``cgroup.procs`` and
  ``cgroup.subtree_control``. Limits are only ever written to
  ROOT/services/NAME, never to ROOT, which is also what a delegating
  runtime expects.
- **Placement before exec.** The child writes "0" (itself) into the
  service's ``cgroup.procs`` between fork and exec (``spawn.ChildSpec``), so
  no fork of the service can happen outside its cgroup. ``clone3`` with
  CLONE_INTO_CGROUP would do the same, but default Docker seccomp refuses it.
- **Kill and emptiness.** Writing 1 to ``cgroup.kill`` (Linux 5.14+)
  SIGKILLs every member, forks in flight included; older kernels get
  freeze, SIGKILL each pid, thaw. ``cgroup.events`` says ``populated 0`` once
  no process is left: exiting tasks leave their cgroup when they exit, not
  when they are reaped, so no zombie keeps a cgroup populated.
- **Why inotify.** When a value in ``cgroup.events`` or ``memory.events``
  changes, the kernel calls ``kernfs_notify``, which wakes poll() with
  POLLPRI and raises IN_MODIFY for inotify. trio waits for readability
  only, and an inotify fd becomes readable, so the waits here are inotify
  watches plus a slow re-check as a safety net, never a hot polling loop.
  The kernel rate-limits these notifications per file (at most one per
  10 ms, the rest deferred by a timer, not dropped).

Everything takes its paths from a :class:`Discovery`, so pure logic runs
against a plain directory and ``/proc`` lookalikes in tests.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import signal as signals
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NoReturn

from . import _cgroupfs as fs
from .errors import EX_USAGE, TinitError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import Limits
    from .logs import Log

#: The controllers tinit enables where ROOT offers them.
CONTROLLERS: Final = frozenset({"cpu", "memory", "pids", "io"})
#: limit kind (config key) -> the controller that enforces it
LIMIT_CONTROLLERS: Final = {"memory": "memory", "cpu": "cpu", "pids": "pids"}
CPU_PERIOD: Final = 100_000  # microseconds, the kernel's default period
_CPU_MIN_QUOTA: Final = 1_000  # the kernel refuses quotas below 1 ms
#: safety re-checks behind the inotify watches (seconds)
_RECHECK: Final = 1.0
_OOM_RECHECK: Final = 5.0
_SIGNAL_PASSES: Final = 20
_NO_CGROUPS: Final = "services run without limits, tracked by process group"
#: the private subtrees tinit makes on a host; the 8 hex digits tell them from
#: those of older tinits, which hold no lock and so must never be swept
_PRIVATE: Final = re.compile(r"tinit-[0-9]+-[0-9a-f]{8}")
#: how long start-up waits for a dead tinit's leftovers to die before it moves on
_STALE_WAIT: Final = 1.0


class CgroupError(TinitError):
    """The cgroup layout could not be set up or a service cgroup not created."""

    exit_code = EX_USAGE


@dataclass(frozen=True, slots=True)
class Discovery:
    """What this machine offers tinit: where cgroup v2 is and what it allows."""

    #: the cgroup2 mount point; None when no cgroup2 is mounted
    mount: str | None
    #: tinit's own cgroup directory (ROOT); None when it cannot be reached
    root: str | None
    writable: bool
    #: controllers ROOT offers, of :data:`CONTROLLERS`
    controllers: frozenset[str]
    #: None when everything works; else one sentence: what is missing and how to grant it
    problem: str | None

    @property
    def usable(self) -> bool:
        """Placement, ``cgroup.kill`` and ``populated`` tracking are available."""
        return self.mount is not None and self.root is not None and self.writable

    def missing_limits(self, limits: Limits) -> list[str]:
        """The configured limit kinds ("memory", "cpu", "pids") this machine can't enforce."""
        return [
            kind
            for kind, controller in LIMIT_CONTROLLERS.items()
            if getattr(limits, kind) is not None
            and not (self.usable and controller in self.controllers)
        ]


def discover(*, proc: str = "/proc") -> Discovery:
    """Find tinit's cgroup v2 from ``/proc/self/cgroup`` and ``/proc/self/mountinfo``."""
    try:
        path = fs.unified_path(fs.read(f"{proc}/self/cgroup"))
        mounts = fs.parse_mountinfo(fs.read(f"{proc}/self/mountinfo"))
    except OSError as exc:
        reason = f"cannot read {proc}/self ({exc.strerror}): mount /proc; {_NO_CGROUPS}"
        return Discovery(None, None, False, frozenset(), reason)
    unified = [m for m in mounts if m.fstype == "cgroup2"]
    if path is None or not unified:
        return Discovery(None, None, False, frozenset(), _problem_no_cgroup2())
    found = fs.choose_mount(path, unified)
    if found is None:
        mount = min(unified, key=fs.preference)
        return Discovery(mount.point, None, False, frozenset(), _problem_outside(path, mount))
    mount, rel = found
    root = os.path.normpath(os.path.join(mount.point, rel))
    if not os.path.isdir(root):
        return Discovery(mount.point, None, False, frozenset(), _problem_outside(path, mount))
    try:
        offered = frozenset(fs.read(os.path.join(root, "cgroup.controllers")).split())
    except OSError:
        offered = frozenset()
    controllers = offered & CONTROLLERS
    if "ro" in mount.options:
        return Discovery(mount.point, root, False, controllers, _problem_read_only(mount.point))
    if not os.access(root, os.W_OK):
        return Discovery(mount.point, root, False, controllers, _problem_denied(mount.point, root))
    missing = sorted(set(LIMIT_CONTROLLERS.values()) - controllers)
    problem = _problem_missing(mount.point, root, missing, fs.v1_controllers(mounts))
    return Discovery(mount.point, root, True, controllers, problem)


def _problem_no_cgroup2() -> str:
    return (
        "cgroup v2 is not mounted (a cgroup v1-only host, or no /sys/fs/cgroup in the container):"
        " use a host with the unified hierarchy (`systemd.unified_cgroup_hierarchy=1`)"
        f" or `mount -t cgroup2 none /sys/fs/cgroup`; {_NO_CGROUPS}"
    )


def _problem_outside(path: str, mount: fs.Mount) -> str:
    return (
        f"tinit's cgroup {path} is not visible in the cgroup2 mount at {mount.point}:"
        " run with a private cgroup namespace (`docker run --cgroupns=private`)"
        f" and cgroup2 mounted inside it; {_NO_CGROUPS}"
    )


def _problem_read_only(point: str) -> str:
    return (
        f"cgroup v2 is mounted read-only at {point}: run with `docker run --privileged`"
        " or a writable cgroup namespace (`--cgroupns=private` with a writable mount),"
        " podman `--security-opt unmask=/sys/fs/cgroup`, containerd `cgroup_writable = true`;"
        f" {_NO_CGROUPS}"
    )


def _problem_denied(point: str, root: str) -> str:
    return (
        f"cgroup v2 at {point} is not writable by tinit (uid {os.getuid()}) at {root}:"
        " run tinit as root or have the runtime delegate that cgroup to its user"
        f" (systemd `Delegate=yes`); {_NO_CGROUPS}"
    )


def _problem_missing(
    point: str, root: str, missing: list[str], on_v1: frozenset[str]
) -> str | None:
    if not missing:
        return None
    names = " and ".join(missing) if len(missing) < 3 else "cpu, memory and pids"
    if all(c in on_v1 for c in missing) and len(missing) == 3:
        return (
            f"cgroup v2 at {point} has no limit controllers (a v1/v2 hybrid host keeps cpu,"
            " memory and pids on cgroup v1): boot the host with"
            " `systemd.unified_cgroup_hierarchy=1` for them; services still get their own"
            " cgroup (placement, cgroup.kill and populated tracking work),"
            " but memory, cpu and pids limits are not enforced"
        )
    plural = "s" if len(missing) > 1 else ""
    them = "them" if plural else "it"
    if all(c in on_v1 for c in missing):
        grant = "boot the host with `systemd.unified_cgroup_hierarchy=1` (now bound to cgroup v1)"
    else:
        grant = (
            f"enable {them} in the parent cgroup's cgroup.subtree_control"
            " (the runtime's cgroup delegation, systemd `Delegate=yes`)"
        )
    return (
        f"cgroup v2 at {point} does not offer the {names} controller{plural} to {root}:"
        f" {grant}; {names} limits are not enforced"
    )


def cpu_max(cores: float | None) -> str:
    """The ``cpu.max`` line for a limit in cores: ``"QUOTA PERIOD"``, or ``"max PERIOD"``."""
    if cores is None:
        return f"max {CPU_PERIOD}"
    quota = max(_CPU_MIN_QUOTA, round(cores * CPU_PERIOD))
    return f"{quota} {CPU_PERIOD}"


class Cgroups:
    """tinit's cgroup layout, made once at start by :meth:`setup`."""

    def __init__(self, root: str, controllers: frozenset[str], *, private: bool = False) -> None:
        self.root = root
        #: ROOT is a subtree tinit made for itself, removed by close()
        self.private = private
        self.services = os.path.join(root, "services")
        #: controllers enabled for the service cgroups
        self.controllers = controllers
        #: the locked directory fd that marks a private ROOT as alive
        self._owner: int | None = None

    @classmethod
    def setup(cls, discovery: Discovery, log: Log) -> Cgroups:
        """Evacuate ROOT into ROOT/tinit, enable controllers, make ROOT/services.

        Blocking (short sleeps between EBUSY retries): it runs once, at start.
        Raises CgroupError with a one-line message when the layout can't be made.
        """
        if not discovery.usable or discovery.root is None:
            raise CgroupError(discovery.problem or "cgroup v2 is not usable")
        root = discovery.root
        if _shared(root):
            return cls._setup_shared(root, discovery, log)
        leaf = os.path.join(root, "tinit")
        _mkdir(leaf)

        def evacuate() -> int:
            try:
                return fs.migrate(root, leaf)
            except OSError as exc:
                raise CgroupError(
                    f"cannot move process {exc.filename} from {root} to {leaf}: {exc.strerror}"
                ) from None

        moved = evacuate()
        enabled = _enable(root, discovery.controllers, evacuate, log)
        services = os.path.join(root, "services")
        _mkdir(services)
        enabled = _enable(services, enabled, lambda: 0, log)
        log.debug("cgroups_ready", root=root, moved=moved, controllers=sorted(enabled))
        return cls(root, enabled)

    @classmethod
    def _setup_shared(cls, root: str, discovery: Discovery, log: Log) -> Cgroups:
        """The layout when ROOT is not tinit's alone: a private subtree, nothing moved.

        On a host (the hierarchy's real root, or a cgroup that holds processes
        of other PID namespaces: they read as pid 0), evacuating ROOT would
        move processes that are none of tinit's business, and ROOT/services
        would be shared by every tinit there. So tinit leaves everything where
        it is and works in ROOT/tinit-ID, removed again at exit.
        """
        _remove_stale(root, log)
        base, owner = _claim_private(root)
        try:
            offered = frozenset(fs.read(os.path.join(root, "cgroup.subtree_control")).split())
        except OSError:
            offered = frozenset()
        enabled = _enable(base, discovery.controllers & offered, lambda: 0, log)
        services = os.path.join(base, "services")
        _mkdir(services)
        enabled = _enable(services, enabled, lambda: 0, log)
        log.debug("cgroups_ready", root=base, shared_parent=root, controllers=sorted(enabled))
        cgroups = cls(base, enabled, private=True)
        cgroups._owner = owner
        return cgroups

    def create(self, name: str, limits: Limits, oom_group: bool) -> ServiceCgroup:
        """Make (or reuse, when empty) ROOT/services/NAME and write its limits.

        A limit whose controller is not enabled is skipped silently (the
        warning was given once, at start).
        """
        if not name or "/" in name or name.startswith(".") or "\0" in name:
            raise CgroupError(f"{name!r} cannot name a cgroup")
        path = os.path.join(self.services, name)
        try:
            created = fs.mkdir(path)
        except OSError as exc:
            raise CgroupError(f"cannot create cgroup {path}: {exc.strerror}") from None
        if not os.path.isdir(path):
            raise CgroupError(f"service name {name!r} collides with the cgroup file {path}")
        cgroup = ServiceCgroup(name, path, self.controllers)
        if not created and cgroup.populated():
            raise CgroupError(f"cgroup {path} still has processes of an earlier run")
        try:
            cgroup.apply(limits, oom_group)
        except CgroupError:
            if created:
                cgroup.remove()
            raise
        return cgroup

    def close(self) -> None:
        """Remove the empty service cgroups, then ROOT/services; best effort, never raises."""
        try:
            names = os.listdir(self.services)
        except OSError:
            return
        paths = [*(os.path.join(self.services, n) for n in names), self.services]
        if self.private:
            paths.append(self.root)
        for path in paths:
            if os.path.isdir(path):
                try:
                    _rmdir(path)
                except OSError:
                    pass  # tinit is on its way out; a leftover cgroup dies with the container
        if self._owner is not None:
            os.close(self._owner)
            self._owner = None


class ServiceCgroup:
    """One service's cgroup, ROOT/services/NAME."""

    __slots__ = ("_stat_fds", "controllers", "name", "path")

    def __init__(self, name: str, path: str, controllers: frozenset[str]) -> None:
        self.name = name
        self.path = path
        self.controllers = controllers
        #: open fds of the gauges `stats` reads, kept so a status of many
        #: services is a few pread calls, not hundreds of open/close pairs
        self._stat_fds: dict[str, int] | None = None

    def __repr__(self) -> str:
        return f"<ServiceCgroup {self.path}>"

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def apply(self, limits: Limits, oom_group: bool) -> None:
        """Write the limits (``max`` for those not set), where the controller is enabled."""
        writes: list[tuple[str, str]] = []
        if "memory" in self.controllers:
            writes.append(("memory.max", "max" if limits.memory is None else str(limits.memory)))
            writes.append(("memory.oom.group", "1" if oom_group else "0"))
        if "cpu" in self.controllers:
            writes.append(("cpu.max", cpu_max(limits.cpu)))
        if "pids" in self.controllers:
            writes.append(("pids.max", "max" if limits.pids is None else str(limits.pids)))
        for filename, value in writes:
            try:
                fs.write(self._file(filename), value)
            except OSError as exc:
                raise CgroupError(
                    f"cannot set {filename} of service {self.name} to {value}: {exc.strerror}"
                ) from None

    def open_procs(self) -> int:
        """An ``O_WRONLY|O_CLOEXEC`` fd of ``cgroup.procs`` for ``ChildSpec.cgroup_procs``.

        The caller closes it once the child is forked.
        """
        return os.open(self._file("cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)

    def pids(self) -> list[int]:
        """The processes in the cgroup now; empty when it is gone."""
        try:
            return fs.read_pids(self._file("cgroup.procs"))
        except FileNotFoundError:
            return []

    def populated(self) -> bool:
        """True while any process is in the cgroup (``cgroup.events``)."""
        try:
            return fs.read_keyed(self._file("cgroup.events")).get("populated", 0) != 0
        except FileNotFoundError:
            return False

    def signal(self, signum: int) -> int:
        """Send ``signum`` to every process in the cgroup; return how many were sent to.

        Passes repeat until one finds no new pid (a process may fork while it
        is being signalled), at most a bounded number of times. tinit's
        children and orphans stay zombies until tinit reaps them on this same
        thread, so their pids can't be reused between the listing and the kill.
        """
        seen: set[int] = set()
        for _ in range(_SIGNAL_PASSES):
            new = [pid for pid in self.pids() if pid not in seen]
            if not new:
                break
            for pid in new:
                seen.add(pid)
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass  # exited since the listing
        return len(seen)

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, forks in flight included."""
        try:
            fs.write(self._file("cgroup.kill"), "1")
        except FileNotFoundError:
            if os.path.isdir(self.path):
                self.kill_frozen()

    def kill_frozen(self) -> None:
        """``kill`` for kernels before 5.14: freeze, SIGKILL each pid, thaw.

        A frozen process cannot fork, and a SIGKILLed one still dies while
        frozen; without ``cgroup.freeze`` (before 5.2) the signal passes alone
        have to catch up with forks.
        """
        freeze = self._file("cgroup.freeze")
        try:
            fs.write(freeze, "1")
            frozen = True
        except OSError:
            frozen = False
        try:
            self.signal(signals.SIGKILL)
        finally:
            if frozen:
                try:
                    fs.write(freeze, "0")
                except OSError:
                    pass  # the cgroup went away meanwhile

    async def wait_empty(self) -> None:
        """Return once ``cgroup.events`` says ``populated 0`` (watched, not polled)."""
        try:
            with fs.open_watch(self._file("cgroup.events")) as watch:
                while self.populated() and watch.alive:
                    await watch.wait(_RECHECK)
        except FileNotFoundError:
            return  # the cgroup is gone, so it is empty

    def oom_kills(self) -> int:
        """How many processes the OOM killer has killed in this cgroup (``memory.events``)."""
        try:
            return fs.read_keyed(self._file("memory.events")).get("oom_kill", 0)
        except OSError:
            return 0

    async def watch_oom(self, on_oom: Callable[[int], None]) -> NoReturn:
        """Call ``on_oom(total)`` whenever ``oom_kill`` grows after the call; runs until cancelled.

        Start it before the service, so the count starts from the fresh cgroup.
        """
        import trio

        if "memory" not in self.controllers:
            await trio.sleep_forever()
        try:
            with fs.open_watch(self._file("memory.events")) as watch:
                seen = self.oom_kills()
                while watch.alive:
                    await watch.wait(_OOM_RECHECK)
                    total = self.oom_kills()
                    if total > seen:
                        seen = total
                        on_oom(total)
        except FileNotFoundError:
            pass  # no memory.events: nothing will ever be reported
        await trio.sleep_forever()

    def stats(self) -> dict[str, int]:
        """``memory.current``, ``memory.peak``, ``pids.current`` and ``cpu_usec``, where there."""
        if self._stat_fds is None:
            self._stat_fds = {}
            wanted = [name for name, controller in _GAUGES if controller in self.controllers]
            for name in [*wanted, "cpu.stat"]:
                try:
                    self._stat_fds[name] = os.open(self._file(name), os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    pass  # an older kernel without this file
        found: dict[str, int] = {}
        for name, fd in self._stat_fds.items():
            try:
                if name == "cpu.stat":
                    found["cpu_usec"] = _usage_usec(os.pread(fd, _CPU_STAT_MAX, 0))
                else:
                    found[name] = int(os.pread(fd, 64, 0))
            except (OSError, ValueError):
                pass  # the cgroup is going away
        return found

    def _close_stats(self) -> None:
        for fd in (self._stat_fds or {}).values():
            os.close(fd)
        self._stat_fds = None

    def remove(self) -> None:
        """Remove the cgroup if it is empty; a busy or missing one is left as it is."""
        self._close_stats()
        _rmdir(self.path)


#: what `ServiceCgroup.stats` reports, and the controller each needs
_GAUGES: Final = (
    ("memory.current", "memory"),
    ("memory.peak", "memory"),
    ("pids.current", "pids"),
)
#: how much of ``cpu.stat`` `ServiceCgroup.stats` reads: every cgroup v2 cgroup has
#: that file whatever its controllers, and ``usage_usec``, the CPU time its
#: processes have used, is its first line (the whole file is a few hundred bytes)
_CPU_STAT_MAX: Final = 1024


def _usage_usec(data: bytes) -> int:
    """``usage_usec`` of a ``cpu.stat`` text; ValueError when it is not there."""
    for line in data.splitlines():
        key, _, value = line.partition(b" ")
        if key == b"usage_usec":
            return int(value)
    raise ValueError("cpu.stat has no usage_usec")


def _claim_private(root: str) -> tuple[str, int]:
    """Make a private ROOT/tinit-ID and hold it; return its path and the locked fd.

    The owner of a private subtree holds an ``flock`` on its directory for as
    long as it runs, and the kernel drops the lock when the owner dies, however
    it dies. So a subtree that can be locked belongs to a dead tinit
    (:func:`_remove_stale`). Between ``mkdir`` and ``flock`` another tinit's
    sweep may take the new directory for stale; the inode check after the lock
    catches that, and a fresh name is tried.
    """
    for _ in range(3):
        base = os.path.join(root, f"tinit-{os.getpid()}-{os.urandom(4).hex()}")
        _mkdir(base)
        fd = _lock(base)
        if fd is not None:
            return base, fd
    raise CgroupError(f"cannot hold a private cgroup under {root}: another tinit keeps taking it")


def _lock(path: str) -> int | None:
    """An fd of directory ``path`` holding its lock, or None (held elsewhere, or gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _remove_stale(root: str, log: Log) -> None:
    """Remove the private subtrees under ``root`` whose tinit is gone, killing what is left.

    A tinit killed with SIGKILL on a host cannot remove its subtree, and what
    its services started may still run there, unsupervised. Best effort and
    bounded: a subtree that won't empty in time is reported and left.
    """
    try:
        names = [n for n in os.listdir(root) if _PRIVATE.fullmatch(n)]
    except OSError:
        return
    for name in names:
        path = os.path.join(root, name)
        fd = _lock(path)
        if fd is None:
            continue  # its tinit is alive (or another sweep has it)
        try:
            killed = _empty(path)
            removed = _remove_tree(path)
        finally:
            os.close(fd)
        event = log.info if removed else log.warning
        event(
            "stale_cgroup_removed" if removed else "stale_cgroup_left", cgroup=path, killed=killed
        )


def _empty(base: str) -> int:
    """SIGKILL every process below ``base``; wait (bounded) until none is left; return a count."""
    groups = [ServiceCgroup(os.path.basename(top), top, frozenset()) for top, _, _ in os.walk(base)]
    count = 0
    for cgroup in groups:
        with contextlib.suppress(OSError):
            count += len(cgroup.pids())
    # cgroup.kill is recursive; each one for kernels without it (kill_frozen).
    for cgroup in reversed(groups):
        with contextlib.suppress(OSError):
            cgroup.kill()
    deadline = time.monotonic() + _STALE_WAIT
    top = ServiceCgroup(os.path.basename(base), base, frozenset())
    while top.populated() and time.monotonic() < deadline:
        time.sleep(0.01)
    return count


def _remove_tree(base: str) -> bool:
    """rmdir every cgroup below ``base``, deepest first, then ``base``; True if it is gone."""
    for top, _dirs, _files in os.walk(base, topdown=False):
        try:
            fs.rmdir(top)
        except OSError:
            pass
    return not os.path.exists(base)


def _shared(root: str) -> bool:
    """Whether ROOT holds processes tinit must not move (see Cgroups._setup_shared)."""
    if not os.path.exists(os.path.join(root, "cgroup.events")):
        return True  # the hierarchy's real root: the host's own
    try:
        return 0 in fs.read_pids(os.path.join(root, "cgroup.procs"))
    except OSError:
        return False


def _mkdir(path: str) -> None:
    try:
        fs.mkdir(path)
    except OSError as exc:
        raise CgroupError(f"cannot create cgroup {path}: {exc.strerror}") from None


def _rmdir(path: str) -> None:
    try:
        fs.rmdir(path)
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOENT, errno.ENOTEMPTY):
            raise


def _enable(
    directory: str, wanted: frozenset[str], evacuate: Callable[[], object], log: Log
) -> frozenset[str]:
    try:
        enabled, refused = fs.enable(directory, wanted, evacuate)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            left = fs.read_pids(os.path.join(directory, "cgroup.procs"))
            raise CgroupError(
                f"cannot enable controllers for the children of {directory}: processes"
                f" {left} stay in it (the kernel's no-internal-processes rule)"
            ) from None
        raise CgroupError(f"cannot enable controllers in {directory}: {exc.strerror}") from None
    for controller, error in refused.items():
        log.warning(
            "cgroup_controller_unavailable", controller=controller, cgroup=directory, error=error
        )
    return enabled
