"""Helpers for the cgroup tests: fake /proc and cgroupfs trees, real test cgroups.

Two kinds of helper live here:

- Fakes for the host tests (pure logic): :func:`fake_proc` writes
  ``self/cgroup`` and ``self/mountinfo`` files, and :class:`FakeCgroupfs`
  turns a plain directory into a cgroupfs lookalike by standing in for
  ``tinit._cgroupfs``'s ``write``, ``mkdir`` and ``rmdir``: mkdir creates the
  interface files, writes to ``cgroup.procs`` migrate a pid, and
  ``cgroup.subtree_control`` obeys the "no internal processes" rule.
- Real things for tests on a real cgroup2 (the cgv2-vm guest, or the host's
  controller-less ``unified`` mount): a throw-away test cgroup, a reaper
  fixture body, and :func:`place`, which starts a process inside a cgroup
  before it execs.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import signal
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from tinit import _cgroupfs, spawn
from tinit.cgroups import CONTROLLERS, Discovery, ServiceCgroup
from tinit.logs import make_logger
from tinit.reaper import Reaper

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    import pytest

    from tinit.logs import Log
    from tinit.reaper import Child

V1_MOUNTS = [
    f"{30 + i} 23 0:{40 + i} / /sys/fs/cgroup/{name} rw,nosuid,nodev,noexec,relatime"
    f" shared:{10 + i} - cgroup cgroup rw,{name}"
    for i, name in enumerate(["cpu,cpuacct", "memory", "pids", "blkio", "devices"])
]


def mountinfo_line(
    point: str,
    *,
    root: str = "/",
    fstype: str = "cgroup2",
    options: str = "rw,nosuid,nodev,noexec,relatime",
    super_options: str = "rw,nsdelegate,memory_recursiveprot",
) -> str:
    """One ``/proc/self/mountinfo`` line, with mountinfo's octal escapes."""
    escaped = point.replace("\\", "\\134").replace(" ", "\\040")
    return f"27 23 0:26 {root} {escaped} {options} shared:4 - {fstype} cgroup2 {super_options}"


def fake_proc(directory: Path, cgroup: str, mountinfo: Iterable[str]) -> str:
    """Write ``self/cgroup`` and ``self/mountinfo`` below ``directory``; return it."""
    (directory / "self").mkdir(parents=True, exist_ok=True)
    (directory / "self" / "cgroup").write_text(cgroup)
    (directory / "self" / "mountinfo").write_text("\n".join(mountinfo) + "\n")
    return str(directory)


def quiet_log() -> tuple[Log, io.StringIO]:
    """A real tinit logger writing to a buffer the test can read."""
    buffer = io.StringIO()
    return make_logger("debug", "json", buffer), buffer


class FakeCgroupfs:
    """A directory that behaves enough like cgroupfs for the layout logic."""

    def __init__(
        self,
        mount: Path,
        controllers: Sequence[str] = ("cpu", "io", "memory", "pids"),
        *,
        hierarchy_root: bool = True,
    ) -> None:
        self.mount = mount
        #: every write, as (path relative to the mount, data)
        self.writes: list[tuple[str, str]] = []
        #: controller -> errno its enabling fails with (a threaded subtree)
        self.refuse: dict[str, int] = {}
        #: file name -> errno writes to it fail with
        self.fail: dict[str, int] = {}
        #: called before each cgroup.subtree_control write (to make processes arrive)
        self.before_enable: Callable[[Path], None] | None = None
        self.hierarchy_root = hierarchy_root
        mount.mkdir(parents=True, exist_ok=True)
        self._populate(mount, frozenset(controllers), events=not hierarchy_root)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupfs:
        monkeypatch.setattr(_cgroupfs, "write", self.write)
        monkeypatch.setattr(_cgroupfs, "mkdir", self.mkdir)
        monkeypatch.setattr(_cgroupfs, "rmdir", self.rmdir)
        return self

    def cgroup(self, *parts: str) -> Path:
        """Make a cgroup below the mount (and its parents); return its path."""
        path = self.mount
        for part in parts:
            path = path / part
            self.mkdir(str(path))
        return path

    def _populate(self, path: Path, controllers: frozenset[str], *, events: bool) -> None:
        files = {
            "cgroup.controllers": " ".join(sorted(controllers)),
            "cgroup.subtree_control": "",
            "cgroup.procs": "",
            "cgroup.max.depth": "max",
        }
        if events:
            files |= {
                "cgroup.events": "populated 0\nfrozen 0\n",
                "cgroup.kill": "",
                "cgroup.freeze": "0",
                "cgroup.type": "domain",
                "cpu.stat": "usage_usec 0\n",
            }
            if "memory" in controllers:
                files |= {
                    "memory.max": "max",
                    "memory.oom.group": "0",
                    "memory.current": "0",
                    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
                }
            if "cpu" in controllers:
                files["cpu.max"] = "max 100000"
            if "pids" in controllers:
                files |= {"pids.max": "max", "pids.current": "0"}
        for name, content in files.items():
            (path / name).write_text(content)

    # -- the kernel's side of the three operations ---------------------------

    def mkdir(self, path: str) -> bool:
        target = Path(path)
        try:
            target.mkdir()
        except FileExistsError:
            return False
        offered = frozenset((target.parent / "cgroup.subtree_control").read_text().split())
        self._populate(target, offered, events=True)
        return True

    def rmdir(self, path: str) -> None:
        target = Path(path)
        if not target.is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if self.procs(target) or any(p.is_dir() for p in target.iterdir()):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        shutil.rmtree(target)

    def write(self, path: str, data: str) -> None:
        target = Path(path)
        self.writes.append((str(target.relative_to(self.mount)), data))
        if not target.is_file():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if target.name in self.fail:
            code = self.fail[target.name]
            raise OSError(code, os.strerror(code), path)
        if target.name == "cgroup.procs":
            self._migrate(int(data), target.parent)
        elif target.name == "cgroup.subtree_control":
            self._enable(target.parent, data.split())
        else:
            target.write_text(data)

    def _migrate(self, pid: int, cgroup: Path) -> None:
        for procs in self.mount.rglob("cgroup.procs"):
            if pid in self.procs(procs.parent):
                self.set_procs(procs.parent, [p for p in self.procs(procs.parent) if p != pid])
        self.set_procs(cgroup, [*self.procs(cgroup), pid])

    def _enable(self, cgroup: Path, tokens: list[str]) -> None:
        if self.before_enable is not None:
            self.before_enable(cgroup)
        offered = set((cgroup / "cgroup.controllers").read_text().split())
        enabled = set((cgroup / "cgroup.subtree_control").read_text().split())
        for token in tokens:
            name = token[1:]
            if name not in offered:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), name)
            if name in self.refuse:
                raise OSError(self.refuse[name], os.strerror(self.refuse[name]), name)
        exempt = cgroup == self.mount and self.hierarchy_root
        if not exempt and self.procs(cgroup):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(cgroup))
        for token in tokens:
            (enabled.add if token[0] == "+" else enabled.discard)(token[1:])
        (cgroup / "cgroup.subtree_control").write_text(" ".join(sorted(enabled)))

    # -- for the tests --------------------------------------------------------

    def procs(self, cgroup: Path) -> list[int]:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]

    def set_procs(self, cgroup: Path, pids: Iterable[int]) -> None:
        pids = list(pids)
        (cgroup / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))
        events = cgroup / "cgroup.events"
        if events.exists():
            events.write_text(f"populated {int(bool(pids))}\nfrozen 0\n")

    def read(self, cgroup: Path, name: str) -> str:
        return (cgroup / name).read_text().strip()


# -- real cgroups ----------------------------------------------------------------


def read(path: str | Path) -> str:
    return Path(path).read_text().strip()


def pids_in(cgroup: str | Path) -> list[int]:
    return [int(p) for p in read(Path(cgroup) / "cgroup.procs").split()]


def discovery_for(root: str | Path, mount: str = "/sys/fs/cgroup") -> Discovery:
    """A Discovery that makes ``root`` (a real test cgroup) tinit's ROOT."""
    offered = frozenset(read(Path(root) / "cgroup.controllers").split())
    return Discovery(mount, str(root), True, offered & CONTROLLERS, None)


def unified_of(pid: int) -> str | None:
    """The cgroup v2 path of process ``pid`` (None when it is gone)."""
    try:
        return _cgroupfs.unified_path(Path(f"/proc/{pid}/cgroup").read_text())
    except OSError:
        return None


def descendants_of(pid: int) -> list[int]:
    """The children of ``pid``, zombies included."""
    try:
        return [int(p) for p in read(f"/proc/{pid}/task/{pid}/children").split()]
    except OSError:
        return []


def state_of(pid: int) -> str | None:
    """The one-letter state of ``pid`` (``Z`` for a zombie), None when it is gone."""
    try:
        return read(f"/proc/{pid}/stat").rpartition(")")[2].split()[0]
    except OSError:
        return None


def move(pid: int, cgroup: ServiceCgroup) -> None:
    """Move one process into ``cgroup`` (as an administrator would)."""
    _cgroupfs.write(os.path.join(cgroup.path, "cgroup.procs"), str(pid))


def make_test_cgroup(parent: str | Path) -> Path:
    path = Path(parent) / f"tinit-test-{uuid.uuid4().hex[:10]}"
    path.mkdir()
    return path


def destroy(path: Path, *, timeout: float = 10.0) -> None:
    """Kill everything in the cgroup tree at ``path`` and remove it, deepest first."""
    if not path.is_dir():
        return
    cgroups = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    cgroups.append(path)
    for cgroup in cgroups:
        _kill_all(cgroup)
    deadline = time.monotonic() + timeout
    for cgroup in cgroups:
        while True:
            with contextlib.suppress(OSError):
                cgroup.rmdir()
            if not cgroup.exists():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"test cgroup {cgroup} could not be removed: {pids_in(cgroup)}")
            _kill_all(cgroup)
            time.sleep(0.02)


def _kill_all(cgroup: Path) -> None:
    kill = cgroup / "cgroup.kill"
    if kill.exists():
        with contextlib.suppress(OSError):
            kill.write_text("1")
        return
    with contextlib.suppress(OSError):
        for pid in pids_in(cgroup):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def serve_reaper(
    reaper: Reaper, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Drive ``reaper`` from SIGCHLD, as tinit does (see tinit/command.py)."""
    with trio.open_signal_receiver(signal.SIGCHLD) as received:
        task_status.started()
        reaper.reap()
        async for _ in received:
            reaper.reap()


async def place(
    target: ServiceCgroup | str | Path,
    argv: Sequence[str],
    reaper: Reaper,
    *,
    stdout: int | None = None,
) -> Child:
    """Start ``argv`` inside a cgroup (a service's, or a cgroup directory) before it execs."""
    fd = _open_procs(target)
    try:
        spec = spawn.ChildSpec(
            argv=argv, env=dict(os.environ), stdout=stdout, cgroup_procs=fd, new_session=True
        )
        child, err_r = spawn.start(spec, reaper)
    finally:
        os.close(fd)
    await spawn.wait_exec(child, err_r, argv[0])
    return child


def _open_procs(target: ServiceCgroup | str | Path) -> int:
    if isinstance(target, ServiceCgroup):
        return target.open_procs()
    return os.open(Path(target) / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)


def exists(path: str | Path) -> bool:
    return os.path.lexists(path)


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check`` (a test's view of real process state) until it holds."""
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.02)
