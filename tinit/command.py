"""One-command mode: ``tinit run -- CMD ...``, a drop-in for ``tini -g --``.

The command is forked first, as soon as the interpreter is up. Signals are
held by the mask (signals.block) from the start of ``tinit run``; once the
command exists, a plain handler passes each one to its process group at
once (pending ones included). SIGCHLD stays blocked and is taken with
``sigwaitinfo``: each one drains the reaper (reaper.py, the one owner of
``waitpid`` here too), and between them tinit sleeps in the kernel, with no
wake-ups, no event loop and no thread.

trio is loaded only when there is something to wait for with a deadline:
when the command has exited and processes are left (orphans it left
behind, or everything else in the PID namespace). They get SIGTERM, then
SIGKILL after ``stop_timeout`` (procs.stop_leftovers, shared with services
mode). A command that leaves nothing behind never pays for trio: its
tinit stays about as small and as quick to start and to exit as the
interpreter. tinit exits with the command's status only once nothing is
left.
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
    from .state import ExitStatus


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
    try:
        # From here on signals reach the command at once; SIGCHLD stays held
        # for sigwaitinfo (see _reap_until).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals.FORWARDABLE)
        failed: SpawnError | None = None
        try:
            spawn.wait_exec_blocking(err_r, argv[0])
            log.debug("command_started", command=argv[0], pid=child.pid)
        except SpawnError as exc:
            failed = exc
        status = _reap_until(child, reaper)
        if failed is None:
            log.info("command_exited", pid=child.pid, **status.log_fields())
        # A TERM or INT from now on means "kill them all now".
        forwarder.cleaning = True
        reaper.reap()
        if reaper.has_children:
            _stop_leftovers(reaper, stop_timeout, log.bind(pid=child.pid))
        if failed is not None:
            raise failed
        return status.shell_code
    finally:
        # Pending signals with default dispositions could kill a tinit that
        # is not PID 1 on its way out: hold them instead; they die with it.
        signal.pthread_sigmask(signal.SIG_BLOCK, signals.HANDLED)


def _reap_until(child: Child, reaper: Reaper) -> ExitStatus:
    """Reap every child that exits until ``child`` has; return its status.

    SIGCHLD is blocked, so one that arrives between a drain and the wait
    stays pending and ends the wait at once: no exit is missed, and none
    is waited for twice.
    """
    while True:
        reaper.reap()
        if child.status is not None:
            return child.status
        signal.sigwaitinfo({signal.SIGCHLD})


def _stop_leftovers(reaper: Reaper, stop_timeout: float, log: Log) -> None:
    """SIGTERM what the command left, then SIGKILL at ``stop_timeout``, on a trio loop."""
    from ._loadtrio import load_trio

    load_trio()
    import trio

    trio.run(_serve_stop_leftovers, reaper, stop_timeout, log)


async def _serve_stop_leftovers(reaper: Reaper, stop_timeout: float, log: Log) -> None:
    import trio

    with trio.open_signal_receiver(signal.SIGCHLD) as received:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_sigchld, received, reaper)
            await procs.stop_leftovers(
                reaper,
                deadline=trio.current_time() + stop_timeout,
                reason="stop_timeout",
                log=log,
                timeout=stop_timeout,
            )
            nursery.cancel_scope.cancel()


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


async def _serve_sigchld(received: AsyncIterator[int], reaper: Reaper) -> None:
    async for _ in received:
        reaper.reap()
