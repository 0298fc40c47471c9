"""Which signals tinit handles, and how the process is prepared for them.

As PID 1 the kernel drops every signal whose disposition is the default, so
tinit must catch each signal it wants to act on or pass on
(research/painpoints.md §2.1). One trio signal receiver, owned by one task,
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

import signal
from typing import Final

_NEVER: Final = frozenset(
    {
        signal.SIGKILL,
        signal.SIGSTOP,
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGFPE,
        signal.SIGILL,
        signal.SIGABRT,
        signal.SIGTRAP,
        signal.SIGSYS,
        signal.SIGCHLD,
        signal.SIGPIPE,
        signal.SIGXFSZ,
        signal.SIGTTIN,
        signal.SIGTTOU,
    }
)

#: Every signal tinit passes on in one-command mode.
FORWARDABLE: Final = tuple(sorted(set(signal.valid_signals()) - _NEVER))
#: Every signal tinit's receiver takes.
HANDLED: Final = (*FORWARDABLE, signal.SIGCHLD)
#: Signals that ask for a shutdown in services mode (SPEC §5).
SHUTDOWN: Final = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGRTMIN + 3})


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
