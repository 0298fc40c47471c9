"""One-command mode: ``tinit run -- CMD ...``, a drop-in for ``tini -g --``.

The command is forked *before* trio is imported. Loading trio is most of
tinit's start-up time, and nothing needs it until there is something to
wait for; signals that arrive in between are held pending by the signal
mask (signals.block) and delivered once the receiver is open. So the
command starts about as fast as the interpreter does.

Then, from one trio loop: every handled signal goes to the command's
process group, SIGCHLD drives the reaper, and when the command has exited,
whatever is left (orphans it left behind, or everything else in the PID
namespace) gets SIGTERM, then SIGKILL after ``stop_timeout``. tinit exits
with the command's status only once nothing is left.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

from . import procs, signals, spawn
from .errors import SpawnError
from .reaper import Reaper
from .state import signal_name

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from .logs import Log
    from .reaper import Child


def run_command(argv: Sequence[str], *, stop_timeout: float, log: Log) -> int:
    """Run ``argv`` as the one child; return the exit code for tinit."""
    signals.block()
    spawn.mark_inherited_fds_cloexec()
    pid1 = procs.is_pid1()
    if not pid1:
        become_subreaper()
    reaper = Reaper(
        on_orphan=lambda pid, st: log.debug("orphan_reaped", pid=pid, **st.log_fields())
    )
    spec = spawn.ChildSpec(
        argv=argv,
        env=os.environ,
        new_session=False,
        foreground_tty=_controlling_tty(),
        # Not PID 1: nothing else guarantees the command dies with tinit.
        pdeathsig=None if pid1 else signal.SIGKILL,
    )
    try:
        child, err_r = spawn.start(spec, reaper)
    except SpawnError:
        signals.unblock()
        raise

    import trio

    return trio.run(_supervise, child, err_r, argv[0], reaper, stop_timeout, log)


def become_subreaper() -> None:
    """Make orphaned descendants come to this process instead of the real PID 1."""
    import prctl

    prctl.set_child_subreaper(True)


def _controlling_tty() -> int | None:
    """fd 0 when it is this process's controlling terminal, else None."""
    try:
        os.tcgetpgrp(0)
    except OSError:
        return None
    return 0


async def _supervise(
    child: Child, err_r: int, command: str, reaper: Reaper, stop_timeout: float, log: Log
) -> int:
    import trio

    log = log.bind(pid=child.pid)
    leftovers = _Leftovers(reaper, stop_timeout, log)
    try:
        with trio.open_signal_receiver(*signals.HANDLED) as received:
            signals.unblock()
            failed: SpawnError | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_signals, received, child, reaper, leftovers, log)
                try:
                    await spawn.wait_exec(child, err_r, command)
                    log.debug("command_started", command=command)
                except SpawnError as exc:
                    failed = exc
                status = await child.wait()
                if failed is None:
                    log.info("command_exited", **status.log_fields())
                await leftovers.clean_up()
                nursery.cancel_scope.cancel()
            if failed is not None:
                raise failed
            return status.shell_code
    finally:
        # Leaving the receiver re-raises pending signals with default
        # dispositions, which could kill a tinit that is not PID 1 on its way
        # out: hold them instead; they die with the process.
        signal.pthread_sigmask(signal.SIG_BLOCK, signals.HANDLED)


async def _serve_signals(
    received: AsyncIterator[int],
    child: Child,
    reaper: Reaper,
    leftovers: _Leftovers,
    log: Log,
) -> None:
    async for signum in received:
        if signum == signal.SIGCHLD:
            reaper.reap()
            continue
        log.debug("signal_received", signal=signal_name(signum))
        if leftovers.cleaning and signum in (signal.SIGTERM, signal.SIGINT):
            leftovers.kill_now()
            continue
        procs.signal_group(child.pgid, signum)


class _Leftovers:
    """Stops what outlives the command: TERM, then KILL after the timeout."""

    def __init__(self, reaper: Reaper, stop_timeout: float, log: Log) -> None:
        self._reaper = reaper
        self._timeout = stop_timeout
        self._log = log
        self.cleaning = False

    async def clean_up(self) -> None:
        import trio

        self._reaper.reap()
        if not self._reaper.has_children:
            return
        self.cleaning = True
        count = procs.signal_everything(signal.SIGTERM)
        self._log.info("stopping_leftovers", processes=count, timeout=self._timeout)
        with trio.move_on_after(self._timeout):
            await self._reaper.wait_all_gone()
            return
        self._log.warning("killing_leftovers", reason="stop_timeout", timeout=self._timeout)
        self.kill_now()
        await self._reaper.wait_all_gone()

    def kill_now(self) -> None:
        procs.signal_everything(signal.SIGKILL)
