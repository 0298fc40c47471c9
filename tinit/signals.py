"""Which signals tinit handles, and how the process is prepared for them.

As PID 1 the kernel drops every signal whose disposition is the default, so
tinit must catch each signal it wants to act on or pass on
(the README's "Signals" section says which). One trio signal receiver, owned by one task,
takes all of them; trio merges repeats of one signal, which is harmless for
SIGCHLD (the reaper drains to exhaustion) and for shutdown requests.

Not forwarded, on purpose:

- SIGKILL, SIGSTOP: cannot be caught.
- SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS: faults. A real
  fault in tinit must crash it, not loop in a handler (tini does the same).
- SIGCHLD: tinit's own business, it drives the reaper.
- SIGPIPE, SIGXFSZ: the kernel sends them to tinit about tinit's own writes;
  Python already ignores them.
- SIGTTIN, SIGTTOU: ignored, so tinit is never stopped when it writes to a
  terminal whose foreground belongs to the command. SIG_IGN would survive
  exec, which is why every child resets all dispositions before it (spawn.py).
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

#: Cannot be caught, so nothing can pass them on.
UNCATCHABLE: Final = frozenset({signal.SIGKILL, signal.SIGSTOP})
#: Faults. A real fault in tinit must crash it, not loop in a handler (tini
#: does the same), so these keep their default action.
FAULTS: Final = frozenset(
    {
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGFPE,
        signal.SIGILL,
        signal.SIGABRT,
        signal.SIGTRAP,
        signal.SIGSYS,
    }
)
#: The kernel sends these to tinit about tinit's own writes; Python ignores them.
ABOUT_OWN_WRITES: Final = frozenset({signal.SIGPIPE, signal.SIGXFSZ})
#: Ignored, so tinit never stops when it writes to a terminal it gave away.
TERMINAL_STOPS: Final = frozenset({signal.SIGTTIN, signal.SIGTTOU})

_NEVER: Final = UNCATCHABLE | FAULTS | ABOUT_OWN_WRITES | TERMINAL_STOPS | {signal.SIGCHLD}

#: Every signal tinit passes on in one-command mode, and that the outer
#: process of ``--isolate`` relays to the inner tinit.
FORWARDABLE: Final = tuple(sorted(set(signal.valid_signals()) - _NEVER))
#: Every signal tinit's receiver takes.
HANDLED: Final = (*FORWARDABLE, signal.SIGCHLD)
#: Signals that ask for a shutdown in services mode (README, "Signals").
SHUTDOWN: Final = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGRTMIN + 3})
#: Signals services mode acts on itself (shutdown, reload, reaping) or that
#: cannot be caught: ``forward_signals`` may not list them.
OWN: Final = SHUTDOWN | UNCATCHABLE | {signal.SIGHUP, signal.SIGCHLD}
#: Every signal whose disposition a child resets to the default before its exec.
RESETTABLE: Final = tuple(sorted(set(signal.valid_signals()) - UNCATCHABLE))


def block() -> None:
    """Hold every handled signal until :func:`unblock`, and ignore TTIN/TTOU.

    Called first thing, before any child exists: a signal that arrives while
    trio is still loading stays pending instead of being lost (PID 1) or
    killing tinit (default dispositions), and is delivered to the receiver
    once it is open. tinit starts no threads, so the mask is process-wide.
    """
    signal.signal(signal.SIGTTIN, signal.SIG_IGN)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)


def unblock() -> None:
    """Let held signals through; call right after the receiver is open."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)


def relay_until_exit(main: int, relayed: Iterable[int], forward: Callable[[int], None]) -> int:
    """Pass each signal in ``relayed`` to ``forward`` and reap every child until ``main`` exits.

    Returns ``main``'s status as a shell would (128+N for a death by signal N).
    For the two small processes that stand in front of a tinit or a service
    and have no :class:`~tinit.reaper.Reaper` of their own: the outer process
    of ``--isolate`` and the init of a service's private PID namespace. Each
    is single-threaded and waits synchronously, so this loop is its only
    reaper. Call with the signals not yet delivered elsewhere: they are
    blocked here and taken with ``sigwaitinfo``, which loses none.
    """
    waited = {*relayed, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    while True:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 1  # main was reaped elsewhere: nothing can say how it ended
            if pid == 0:
                break
            if pid == main:
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
        info = signal.sigwaitinfo(waited)
        if info.si_signo != signal.SIGCHLD:
            try:
                forward(info.si_signo)
            except OSError:
                pass  # it is on its way out; the next SIGCHLD says how
