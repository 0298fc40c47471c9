"""Service states, exit statuses, and the pure restart decision.

Nothing here touches the operating system or trio: these are values and the
rules over them, so they can be tested with a fake clock.
"""

from __future__ import annotations

import enum
import os
import signal
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; ``SIGRTMIN+3`` for real-time signals; the number otherwise."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        pass
    if signal.SIGRTMIN <= signum <= signal.SIGRTMAX:
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"
    return str(signum)


class ExitStatus(NamedTuple):
    """How a process ended: exactly one of ``code`` and ``signal`` is set.

    This module's values are NamedTuples, not frozen dataclasses: one-command
    mode imports it, and importing ``dataclasses`` (with ``inspect``) would be
    a tenth of that mode's whole start-up.
    """

    code: int | None = None
    signal: int | None = None

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        """Decode a ``waitpid`` status word (never ``WEXITSTATUS`` alone: it says 0 for signals)."""
        result = os.waitstatus_to_exitcode(status)
        if result < 0:
            return cls(signal=-result)
        return cls(code=result)

    @property
    def shell_code(self) -> int:
        """The code a shell would report: the exit code, or 128+N for signal N."""
        if self.signal is not None:
            return (128 + self.signal) % 256
        assert self.code is not None
        return self.code

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by {signal_name(self.signal)}"
        return f"exited with code {self.code}"

    def log_fields(self) -> dict[str, object]:
        """The ``exit_code`` / ``signal`` pair every exit event carries."""
        return {
            "exit_code": self.code,
            "signal": None if self.signal is None else signal_name(self.signal),
        }


class State(enum.Enum):
    """What a service is doing, for status output and events."""

    PENDING = "pending"  # waiting for its dependencies
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPED = "stopped"
    DISABLED = "disabled"  # ``disabled: true`` and not started by an operator: not a failure


class Outcome(enum.Enum):
    """How a service ended for good; the value is what status and events say."""

    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    NEVER_STARTED = "never-started"  # a dependency never reached its condition


_NONE_DROPPED: Final[Mapping[str, int]] = MappingProxyType({})


class Snapshot(NamedTuple):
    """One service at one moment, as the control socket and the health endpoint see it.

    A named tuple, not a frozen dataclass: one is made per service for every
    status, health and metrics request, and a frozen dataclass sets its
    fields one checked call at a time, which made ``status`` of 50 services
    several times slower.
    """

    name: str
    state: State
    #: the main process of the run going on, if any
    pid: int | None
    #: when that run started (trio clock)
    started_at: float | None
    restarts: int
    #: how the last run ended
    last_exit: ExitStatus | None
    #: the last run ended with an OOM kill in its cgroup
    last_oom: bool
    #: running and ready, or a oneshot that completed (done, not down)
    ready: bool
    #: an operator stopped it (``tinit stop``): down on purpose, not failing;
    #: status and /readyz leave it out until it is started again
    held: bool
    #: a oneshot that completed with success
    completed: bool
    outcome: Outcome | None
    oom_kills: int
    #: exits by code ("0", "1") or signal name ("SIGKILL")
    exits: Mapping[str, int]
    #: bytes the service's output ring holds
    log_bytes: int
    # -- scheduled jobs
    #: when the next scheduled run is due (seconds since the epoch), None unscheduled
    next_run: float | None = None
    #: scheduled runs started, and times skipped because a run was still going on
    scheduled_runs: int = 0
    schedule_skips: int = 0
    # -- sd_notify (sdnotify.py, notified.py)
    #: the run's last ``STATUS=``, None before one (or without sd_notify)
    notify_status: str | None = None
    #: the ``MAINPID=`` taken in the run going on
    notify_pid: int | None = None
    #: datagrams dropped since tinit started, by reason
    notify_drops: Mapping[str, int] = _NONE_DROPPED
    #: runs stopped because their watchdog pings stopped
    watchdog_misses: int = 0
    #: ``MAINPID=`` refused because the pid was not of the run
    main_pid_refused: int = 0
    #: rotations of its ``file:`` output (log_rotation) its output brought about
    log_rotations: int = 0


class Decision(NamedTuple):
    """What to do after a run of a service ended (see :func:`decide`)."""

    restart: bool
    delay: float = 0.0
    #: the run counts as a failure (exit not in success_exit_codes, a signal,
    #: a failed start or a failed liveness probe)
    failed: bool = False
    #: restarting was allowed by the policy but the failure budget is spent
    gave_up: bool = False
    #: consecutive failures after this run (0 after a success)
    failures: int = 0


def is_success(status: ExitStatus | None, success_codes: frozenset[int]) -> bool:
    """``None`` stands for a run that never got going (spawn or ready failure)."""
    return status is not None and status.signal is None and status.code in success_codes


def decide(
    *,
    status: ExitStatus | None,
    policy: str,
    success_codes: frozenset[int],
    failures: int,
    uptime: float,
    reset_after: float,
    max_restarts: int | None,
    initial: float,
    factor: float,
    max_delay: float,
    jitter: float,
) -> Decision:
    """The restart rule (README, "Restarts"), as a pure function.

    ``failures`` counts consecutive failed runs before this one; a run that
    stayed up ``reset_after`` seconds clears it. ``jitter`` is a number in
    [-1, 1] (the caller draws it) scaling the +-20% randomisation of the delay.
    """
    if uptime >= reset_after:
        failures = 0
    failed = not is_success(status, success_codes)
    failures = failures + 1 if failed else 0
    wants = policy == "always" or (policy == "on-failure" and failed)
    if not wants:
        return Decision(restart=False, failed=failed, failures=failures)
    if failed and max_restarts is not None and failures > max_restarts:
        return Decision(restart=False, failed=True, gave_up=True, failures=failures)
    steps = max(failures - 1, 0)
    try:
        delay = min(initial * factor**steps, max_delay)
    except OverflowError:
        delay = max_delay  # factor >= 1: a growth past a float's range is past the cap too
    delay *= 1.0 + 0.2 * max(-1.0, min(1.0, jitter))
    return Decision(restart=True, delay=max(delay, 0.0), failed=failed, failures=failures)


def final_exit_code(
    *,
    critical: ExitStatus | None,
    shutdown_requested: bool,
    killed: bool,
    first_failure: ExitStatus | None,
    remap: Mapping[int, int],
) -> int:
    """tinit's exit code in services mode (the README's table), ``exit_code_remap`` applied last.

    A critical service that ended for good decides it; else a requested
    shutdown is 0, or 137 when something had to be SIGKILLed; else the first
    failure (in time) of a service that ended by itself, or 0.
    """
    if critical is not None:
        code = critical.shell_code
    elif shutdown_requested:
        code = 137 if killed else 0
    elif first_failure is not None:
        code = first_failure.shell_code
    else:
        code = 0
    return remap.get(code, code)
