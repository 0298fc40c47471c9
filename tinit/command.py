"""One-command mode: ``tinit run -- CMD ...``, a drop-in for ``tini -g --``.

The command is forked *before* trio is imported. Loading trio is most of
tinit's start-up time, and nothing needs it until there is something to
wait for. Signals are held by the mask (signals.block) from the start of
``tinit run``; once the command exists, a plain handler passes each one to
its process group at once (pending ones included), and only SIGCHLD waits
for trio. So the command starts about as fast as the interpreter does.

Then, from one trio loop: SIGCHLD drives the reaper, and when the command has exited,
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

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from .logs import Log
    from .reaper import Child


def run_command(argv: Sequence[str], *, stop_timeout: float, log: Log) -> int:
    """Run ``argv`` as the one child; return the exit code for tinit."""
    signals.block()
    # As tini does, the command gets every fd tinit was given: a socket from
    # socket activation, a pipe from the caller. tinit keeps no copy.
    inherited = spawn.inherited_fds()
    pid1 = procs.is_pid1()
    if not pid1:
        procs.become_subreaper()
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
        pass_fds={fd: fd for fd in inherited},
        listen_pid_self=os.environ.get("LISTEN_PID") == str(os.getpid()),
    )
    try:
        child, err_r = spawn.start(spec, reaper)
    except SpawnError:
        signals.unblock()
        raise
    finally:
        for fd in inherited:
            os.close(fd)
    forwarder = _Forwarder(child.pgid)
    for signum in signals.FORWARDABLE:
        signal.signal(signum, forwarder)
    # From here on signals reach the command, even while trio loads; only
    # SIGCHLD stays held until the reaper's receiver is open.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals.FORWARDABLE)

    from ._loadtrio import load_trio

    load_trio()
    import trio

    return trio.run(_supervise, child, err_r, argv[0], reaper, forwarder, stop_timeout, log)


class _Forwarder:
    """The handler of every forwarded signal: pass it to the command's group at once.

    A plain Python handler rather than trio's signal receiver: it runs as
    soon as the interpreter sees the signal, where a trip through trio's
    scheduler costs a few hundred microseconds more per signal. It is safe
    here because it touches no trio state, makes only non-blocking system
    calls, and never raises into whatever code it interrupted.
    """

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        #: the command has exited and leftovers are being stopped: a TERM or
        #: INT now means "kill them all now"
        self.cleaning = False

    def __call__(self, signum: int, frame: object) -> None:
        try:
            if self.cleaning and signum in (signal.SIGTERM, signal.SIGINT):
                procs.signal_everything(signal.SIGKILL)
            else:
                procs.signal_group(self.pgid, signum)
        except BaseException:
            pass  # nothing may escape into the interrupted code


def _controlling_tty() -> int | None:
    """fd 0 when it is this process's controlling terminal, else None."""
    try:
        os.tcgetpgrp(0)
    except OSError:
        return None
    return 0


async def _supervise(
    child: Child,
    err_r: int,
    command: str,
    reaper: Reaper,
    forwarder: _Forwarder,
    stop_timeout: float,
    log: Log,
) -> int:
    import trio

    log = log.bind(pid=child.pid)
    try:
        with trio.open_signal_receiver(signal.SIGCHLD) as received:
            signals.unblock()
            failed: SpawnError | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_sigchld, received, reaper)
                try:
                    await spawn.wait_exec(child, err_r, command)
                    log.debug("command_started", command=command)
                except SpawnError as exc:
                    failed = exc
                status = await child.wait()
                if failed is None:
                    log.info("command_exited", **status.log_fields())
                # A TERM or INT from now on means "kill them all now".
                forwarder.cleaning = True
                await procs.stop_leftovers(
                    reaper,
                    deadline=trio.current_time() + stop_timeout,
                    reason="stop_timeout",
                    log=log,
                    timeout=stop_timeout,
                )
                nursery.cancel_scope.cancel()
            if failed is not None:
                raise failed
            return status.shell_code
    finally:
        # Leaving the receiver re-raises pending signals with default
        # dispositions, which could kill a tinit that is not PID 1 on its way
        # out: hold them instead; they die with the process.
        signal.pthread_sigmask(signal.SIG_BLOCK, signals.HANDLED)


async def _serve_sigchld(received: AsyncIterator[int], reaper: Reaper) -> None:
    async for _ in received:
        reaper.reap()
