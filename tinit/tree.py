"""One run of a service as processes: starting its main process, and the tree it grows.

A run is its main process and everything that process starts. The run loop
(service.py) needs these of that tree: whether anything of it is left (and
how many processes, to report leftovers), a signal to it, SIGKILL to all of
it, and a wait until nothing of it is left.
How those are done depends on what tinit can see of the tree:

- with a cgroup per service, the cgroup holds the whole run, daemons that
  left the process group with ``setsid`` included, and the kernel says when
  it is empty (:class:`CgroupTree`);
- without one, the main process's group is all tinit can reach
  (:class:`GroupTree`): a process that left it is out of reach until it
  exits and is reaped as an orphan.

:class:`Spawner` picks one of the two once per run, when it starts the main
process, so the loop reads the same either way and a test can hand it a
fake that starts nothing.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Final, Protocol

import trio

from . import procs, spawn

if TYPE_CHECKING:
    from .cgroups import ServiceCgroup
    from .reaper import Child, Reaper
    from .state import ExitStatus

#: first and longest pause between checks that a process group is gone
_GROUP_RECHECK_FIRST: Final = 0.005
_GROUP_RECHECK_MAX: Final = 0.1


class Process(Protocol):
    """A run's main process, as the reaper reports it (``reaper.Child`` is one)."""

    @property
    def pid(self) -> int: ...

    @property
    def pgid(self) -> int: ...

    @property
    def status(self) -> ExitStatus | None:
        """How it ended, once it has been reaped; None until then."""
        ...

    async def wait(self) -> ExitStatus:
        """Wait until it has exited and been reaped."""
        ...


class ProcessTree(Protocol):
    """Every process of one run of a service."""

    def alive(self) -> bool:
        """Anything of the run is left (an unreaped main process counts)."""
        ...

    def signal_group(self, signum: int) -> None:
        """Signal the main process's group (the stop signal, forwarded signals)."""
        ...

    def signal_all(self, signum: int) -> None:
        """Signal everything of the run that can be found."""
        ...

    def kill(self) -> None:
        """SIGKILL everything of the run."""
        ...

    def count_others(self) -> int:
        """How many processes of the run, besides the main process, can be found now."""
        ...

    def holds(self, pid: int) -> bool:
        """Whether process ``pid`` (in tinit's PID namespace) belongs to the run now."""
        ...

    async def wait_gone(self, *, pass_on: int | None = None) -> None:
        """Wait until the main process is reaped and nothing of the run is left.

        With ``pass_on``, once the main process is gone, send that signal to
        what is left outside its group: the group had it, they did not.
        """
        ...


class Launch(Protocol):
    """A main process just started: it has not necessarily exec'd yet."""

    @property
    def process(self) -> Process: ...

    @property
    def tree(self) -> ProcessTree: ...

    async def wait_exec(self) -> None:
        """Return once it has exec'd; raise SpawnError when set-up or exec failed."""
        ...


class Spawner(Protocol):
    """Starts the main process of a run (:class:`OsSpawner` forks it)."""

    def start(self, spec: spawn.ChildSpec, cgroup: ServiceCgroup | None) -> Launch:
        """Start it, synchronously; raise TinitError or OSError when it can't be.

        ``cgroup`` is the run's cgroup (the child joins it through
        ``spec.cgroup_procs``), or None without cgroups.
        """
        ...


class GroupTree:
    """A run reached through its main process's group: all tinit has without cgroups."""

    __slots__ = ("_main", "_reaper")

    def __init__(self, main: Process, reaper: Reaper) -> None:
        self._main = main
        self._reaper = reaper

    def alive(self) -> bool:
        return procs.group_exists(self._main.pgid)

    def signal_group(self, signum: int) -> None:
        procs.signal_group(self._main.pgid, signum)

    def signal_all(self, signum: int) -> None:
        procs.signal_group(self._main.pgid, signum)

    def kill(self) -> None:
        procs.signal_group(self._main.pgid, signal.SIGKILL)

    def count_others(self) -> int:
        return sum(1 for pid in procs.group_members(self._main.pgid) if pid != self._main.pid)

    def holds(self, pid: int) -> bool:
        # The main process's session, which its group is part of: every run
        # starts one (spawn.py), only its own processes can be in it, and it
        # also holds what ``pid: private`` runs in a group of its own.
        try:
            return os.getsid(pid) == self._main.pid
        except OSError:
            return False  # gone, or never was

    async def wait_gone(self, *, pass_on: int | None = None) -> None:
        # pass_on has nobody to reach: a process outside the group is out of sight
        await self._main.wait()
        await self._wait_group_gone()

    async def _wait_group_gone(self) -> None:
        """Wait until no process of the group is left (reaped ones included).

        Members that die are reaped by tinit when they are its children or
        orphans, so the reaper's progress is the natural wake-up; the short
        timed re-check covers members reaped by a parent inside the group.
        """
        pause = _GROUP_RECHECK_FIRST
        while procs.group_exists(self._main.pgid):
            with trio.move_on_after(pause):
                await self._reaper.wait_changed()
            pause = min(pause * 2, _GROUP_RECHECK_MAX)


class CgroupTree:
    """A run reached through the service's cgroup, which holds all of it."""

    __slots__ = ("_cgroup", "_main")

    def __init__(self, main: Process, cgroup: ServiceCgroup) -> None:
        self._main = main
        self._cgroup = cgroup

    def alive(self) -> bool:
        return self._main.status is None or self._cgroup.populated()

    def signal_group(self, signum: int) -> None:
        procs.signal_group(self._main.pgid, signum)

    def signal_all(self, signum: int) -> None:
        self._signal_each(signum, spare_group=False)

    def kill(self) -> None:
        self._cgroup.kill()

    def count_others(self) -> int:
        return sum(1 for pid in self._cgroup.pids() if pid != self._main.pid)

    def holds(self, pid: int) -> bool:
        try:
            return pid in self._cgroup.pids()
        except OSError:
            return False  # unreadable: nothing can be vouched for

    async def wait_gone(self, *, pass_on: int | None = None) -> None:
        await self._main.wait()
        if pass_on is not None:
            self._signal_each(pass_on, spare_group=True)
        await self._cgroup.wait_empty()

    def _signal_each(self, signum: int, *, spare_group: bool) -> None:
        for pid in self._cgroup.pids():
            try:
                if spare_group and os.getpgid(pid) == self._main.pgid:
                    continue
                os.kill(pid, signum)
            except OSError:
                pass  # gone meanwhile


class OsSpawner:
    """Forks the main process (spawn.py) and registers it with the one reaper."""

    __slots__ = ("_reaper",)

    def __init__(self, reaper: Reaper) -> None:
        self._reaper = reaper

    def start(self, spec: spawn.ChildSpec, cgroup: ServiceCgroup | None) -> Launch:
        child, err_r = spawn.start(spec, self._reaper)
        tree: ProcessTree = (
            GroupTree(child, self._reaper) if cgroup is None else CgroupTree(child, cgroup)
        )
        return _Forked(child, tree, err_r, spec.argv[0])


class _Forked:
    """A forked main process; its error pipe says whether the exec went through."""

    __slots__ = ("_command", "_err_r", "process", "tree")

    def __init__(self, child: Child, tree: ProcessTree, err_r: int | None, command: str) -> None:
        self.process: Final = child
        self.tree: Final = tree
        self._err_r = err_r
        self._command = command

    async def wait_exec(self) -> None:
        await spawn.wait_exec(self.process, self._err_r, self._command)
