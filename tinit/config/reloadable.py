"""What a reload may change in a running service, and what only a restart can.

A process keeps what it was started with: its argv, environment, user,
working directory, capabilities, namespaces. A change to any of those needs a
new process. Everything else -- how tinit stops it, restarts it, probes it,
limits it, orders it -- is tinit's own policy, read afresh by the service's
runner, so a reload applies it to the running process without a restart.

Every key of a service is classified here, in one table; a test checks the
table against the fields of :class:`~tinit.config.model.Service`, so a new
key cannot be added without saying what a reload does with it.
docs/configuration.md ("What a reload does") is the same table for users.
"""

from __future__ import annotations

import enum
from dataclasses import fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from .model import NotifyFdProbe, SdNotifyProbe, Service

if TYPE_CHECKING:
    from collections.abc import Mapping


class OnReload(enum.Enum):
    """What a reload does when a key of a running service changed."""

    #: the runner takes the new value; the process runs on
    IN_PLACE = "in place"
    #: the process was started with it: the service is stopped and started again
    RESTART = "restart"


_IN: Final = OnReload.IN_PLACE
_RESTART: Final = OnReload.RESTART

#: Every field of Service, and what a change of it takes.
ON_RELOAD: Final[Mapping[str, OnReload]] = MappingProxyType(
    {
        # the key a reload matches services by: never differs between the two
        "name": _RESTART,
        # what the process is: its argv, environment, identity and set-up
        "command": _RESTART,
        "shell": _RESTART,
        "workdir": _RESTART,
        "user": _RESTART,
        "group": _RESTART,
        "umask": _RESTART,
        "env": _RESTART,
        "env_file": _RESTART,
        "clear_env": _RESTART,
        "environment": _RESTART,
        "stdin": _RESTART,
        "capabilities": _RESTART,
        "no_new_privs": _RESTART,
        "namespaces": _RESTART,
        # the inherited fds are given to the process when it starts
        "inherit_fds": _RESTART,
        # the run's pipes are made for one output mode when it starts
        "output": _RESTART,
        # the rotation of a file is set when a run opens it
        "log_rotation": _RESTART,
        # the argv is ``command``; this is only how the file wrote it
        "source_command": _IN,
        # tinit's policy, read by the runner when it needs it
        "oneshot": _IN,
        "restart": _IN,
        "success_exit_codes": _IN,
        "backoff": _IN,
        "max_restarts": _IN,
        "critical": _IN,
        "depends_on": _IN,
        "ready": _IN,
        "health": _IN,
        "stop_signal": _IN,
        "stop_timeout": _IN,
        # written to the live cgroup
        "limits": _IN,
        "oom_group": _IN,
        # a service newly disabled stops, one newly enabled starts: a new runner
        "disabled": _RESTART,
        # an instance always carries 1: a new count adds or removes instances
        "replicas": _IN,
        # which group an instance belongs to, and its number: part of its name
        "replica_of": _RESTART,
        "replica": _RESTART,
        # scheduled jobs: the next time is computed anew between runs (a job
        # that gains or loses its schedule gets a new runner: ServiceRunner.update)
        "schedule": _IN,
        "run_at_start": _IN,
    }
)


def changed_keys(old: Service, new: Service) -> frozenset[str]:
    """The fields of ``old`` and ``new`` that differ."""
    return frozenset(
        f.name for f in fields(Service) if getattr(old, f.name) != getattr(new, f.name)
    )


def needs_restart(old: Service, new: Service) -> bool:
    """Whether the running process of ``old`` must be restarted to become ``new``.

    A notify_fd or sd_notify ready probe is policy the process itself takes
    part in: its pipe, or its ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``, are
    given to the process at the start, so a change to, from or of one is a
    restart too.
    """
    changed = changed_keys(old, new)
    # a key missing from the table (the test forbids it) is taken as a restart: the safe side
    if any(ON_RELOAD.get(key, OnReload.RESTART) is OnReload.RESTART for key in changed):
        return True
    return "ready" in changed and (
        isinstance(old.ready, NotifyFdProbe | SdNotifyProbe)
        or isinstance(new.ready, NotifyFdProbe | SdNotifyProbe)
    )
