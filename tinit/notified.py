"""What a service told tinit over sd_notify, and the watchdog it asked for.

sdnotify.py reads and authenticates the datagrams; this module is what the
service runner keeps of them: per run, whether ``READY=1`` came, the last
``STATUS=``, the ``MAINPID=`` taken, when ``WATCHDOG=1`` last came; across
runs, the counters that status and /metrics show.

``MAINPID=N`` is taken only when N belongs to the run (its cgroup, or
without cgroups its main process's session), and then only for what tinit can
do with a process that is not its child: it is shown in status, and signals
for the service (``tinit signal``, the stop signal) reach it as well as the
main process's group. The run still lasts as long as tinit's own child and
what the run's tree holds: only a parent can wait for a process, so a daemon
that forks and lets its parent exit ends its run (see service.py).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .logs import Log
    from .sdnotify import Drop, Message
    from .tree import ProcessTree


class Notified:
    """One service's sd_notify state: the run going on, and totals since tinit started."""

    def __init__(self, log: Log) -> None:
        self._log = log
        #: datagrams dropped, by reason (``sdnotify.Drop`` values)
        self.drops: dict[str, int] = {}
        #: runs stopped because no ``WATCHDOG=1`` came in time
        self.watchdog_misses = 0
        #: ``MAINPID=`` refused: the pid was not of the run
        self.main_pid_refused = 0
        # -- the run going on
        #: the last ``STATUS=`` of this run
        self.status: str | None = None
        #: the ``MAINPID=`` taken in this run
        self.main_pid: int | None = None
        self._tree: ProcessTree | None = None
        self._ready = trio.Event()
        self._last_ping = -math.inf
        self._trigger = trio.Event()

    def carry(self, previous: Notified) -> None:
        """Keep the totals of the runner this one replaces."""
        self.drops = previous.drops
        self.watchdog_misses = previous.watchdog_misses
        self.main_pid_refused = previous.main_pid_refused

    def begin_run(self, tree: ProcessTree) -> None:
        """A new run: nothing it said yet, whatever an earlier run said."""
        self._tree = tree
        self.status = self.main_pid = None
        self._ready = trio.Event()
        self._trigger = trio.Event()
        self._last_ping = trio.current_time()

    def end_run(self) -> None:
        self._tree = None
        self.status = self.main_pid = None

    # -- from the socket

    def deliver(self, message: Message, sender: int) -> None:
        """Act on a datagram from ``sender``, a process of the run going on."""
        if self._tree is None:
            return  # the run is over: nothing it says counts any more
        if message.status is not None:
            self.status = message.status
            self._log.debug("service_notify_status", status=message.status, pid=sender)
        if message.main_pid is not None:
            self._take_main_pid(message.main_pid, sender)
        if message.watchdog:
            self._last_ping = trio.current_time()
        if message.watchdog_trigger:
            self._trigger.set()
        if message.stopping or message.reloading:
            what = "stopping" if message.stopping else "reloading"
            self._log.info("service_notify_state", state=what, pid=sender)
        if message.errno is not None:
            self._log.warning("service_notify_errno", errno=message.errno, pid=sender)
        if message.ready and not self._ready.is_set():
            self._log.debug("service_notify_ready", pid=sender)
            self._ready.set()

    def dropped(self, reason: Drop) -> None:
        count = self.drops.get(reason.value, 0) + 1
        self.drops[reason.value] = count
        if count & (count - 1) == 0:  # 1, 2, 4, 8...: a flood is said, not echoed
            self._log.warning("service_notify_dropped", reason=reason.value, total=count)

    def _take_main_pid(self, pid: int, sender: int) -> None:
        tree = self._tree
        if tree is not None and tree.holds(pid):
            if pid != self.main_pid:
                self.main_pid = pid
                self._log.info("service_main_pid", pid=pid, sender=sender)
            return
        self.main_pid_refused += 1
        self._log.warning(
            "service_main_pid_refused",
            pid=pid,
            sender=sender,
            reason="the process is not of the service's run",
        )

    # -- for the runner

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def wait_watchdog_missed(self, limit: float) -> float:
        """Return once ``limit`` seconds pass without a ping; how long it had been.

        The count starts when this is called (the run became ready) or at the
        last ping, whichever is later. A change of the watchdog is a restart
        (config.reloadable), so ``limit`` holds for the whole run.
        """
        self._last_ping = max(self._last_ping, trio.current_time())
        while True:
            with trio.move_on_at(self._last_ping + limit):
                await self._trigger.wait()
            now = trio.current_time()
            if self._trigger.is_set() or now >= self._last_ping + limit:
                self.watchdog_misses += 1
                return now - self._last_ping

    def signal_main(self, signum: int, group: int) -> None:
        """Signal the ``MAINPID`` taken, when it is still of the run and outside ``group``."""
        pid, tree = self.main_pid, self._tree
        if pid is None or tree is None or not tree.holds(pid):
            return
        try:
            if os.getpgid(pid) != group:
                os.kill(pid, signum)
        except OSError:
            pass  # gone since the check: nothing left to signal
