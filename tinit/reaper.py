"""The reaper: the one owner of ``waitpid`` in tinit.

Nothing else in the process waits on a child. ``trio.run_process``,
``Process.wait`` and ``Popen.wait`` all call ``waitpid(pid)`` themselves, and
two waiters on one pid means one of them gets ECHILD -- which CPython turns
into exit status 0, so a crash looks like a clean exit. With a single owner
that cannot happen: every status is read here, once, and handed to whoever
registered the pid.

trio is imported on first use, not at import time: in one-command mode the
command is forked before trio is loaded (see command.py).

Why no "spawn in flight" stash is needed: children are forked from the trio
thread and registered with :meth:`Reaper.watch` before the spawning code
reaches its first checkpoint, so the reaper -- which also runs on the trio
thread -- can never see a pid before it is registered. See spawn.py.

SIGCHLD coalesces (and trio's signal receiver merges repeats as well), so one
notification may stand for any number of dead children: :meth:`reap` drains
``waitpid(-1, WNOHANG)`` until it says there is nothing more. A dead child is
never missed: Python's C-level handler records every SIGCHLD before trio
reads it, and every drain runs to exhaustion, so no periodic sweep is needed
(and none is done: an idle tinit makes no wake-ups).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from .state import ExitStatus

if TYPE_CHECKING:
    import trio

#: Called with (pid, status) for every reaped process nobody registered.
OrphanHook = Callable[[int, ExitStatus], None]


class Child:
    """A process tinit started; its exit status arrives through the reaper."""

    __slots__ = ("_done", "pgid", "pid", "status")

    def __init__(self, pid: int, pgid: int) -> None:
        self.pid: Final = pid
        self.pgid: Final = pgid
        self.status: ExitStatus | None = None
        self._done: trio.Event | None = None

    async def wait(self) -> ExitStatus:
        """Wait until the process has exited and been reaped."""
        if self.status is None:
            if self._done is None:
                self._done = _event()
            await self._done.wait()
        assert self.status is not None
        return self.status

    def _deliver(self, status: ExitStatus) -> None:
        self.status = status
        if self._done is not None:
            self._done.set()

    def __repr__(self) -> str:
        state = "running" if self.status is None else self.status.describe()
        return f"<Child pid={self.pid} {state}>"


class Reaper:
    """Reaps every child of this process and routes each status to its owner."""

    def __init__(self, on_orphan: OrphanHook | None = None) -> None:
        self._children: dict[int, Child] = {}
        self._on_orphan = on_orphan
        self._changed: trio.Event | None = None
        #: False once a drain ended with ECHILD: no child (and so, for a PID 1
        #: or a subreaper, no descendant) is left.
        self.has_children = True
        self.orphans_reaped = 0

    def watch(self, pid: int, pgid: int | None = None) -> Child:
        """Register a freshly forked pid. Must run before the next checkpoint."""
        child = Child(pid, pid if pgid is None else pgid)
        self._children[pid] = child
        self.has_children = True
        return child

    def reap(self) -> int:
        """Collect every child that has exited so far; return how many."""
        count = 0
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.has_children = False
                break
            if pid == 0:
                break
            count += 1
            self._dispatch(pid, ExitStatus.from_wait_status(status))
        if (count or not self.has_children) and self._changed is not None:
            self._changed.set()
            self._changed = None
        return count

    def _dispatch(self, pid: int, status: ExitStatus) -> None:
        # The pid leaves the table in the same step that delivers its status:
        # after this, the number may be reused and must mean nothing to us.
        child = self._children.pop(pid, None)
        if child is not None:
            child._deliver(status)
            return
        self.orphans_reaped += 1
        if self._on_orphan is not None:
            self._on_orphan(pid, status)

    @property
    def running(self) -> int:
        """How many registered children have not been reaped yet."""
        return len(self._children)

    async def wait_changed(self) -> None:
        """Wait until the next drain that reaped something or found no children."""
        if self._changed is None:
            self._changed = _event()
        await self._changed.wait()

    async def wait_all_gone(self) -> None:
        """Wait until this process has no child left at all."""
        self.reap()
        while self.has_children:
            await self.wait_changed()


def _event() -> trio.Event:
    import trio

    return trio.Event()
