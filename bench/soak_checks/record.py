"""What a soak run records for its checks, and the limits the run and the checks share.

The run (bench/soak.py) writes tinit's stdout and stderr, the services'
journals and ``soak.json``; the checks in this package read them back, maybe
in a later process (``--analyse``). What both sides must agree on lives here.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Final

#: the services' config ``shutdown_timeout``, and the bound the shutdown check holds it to
SHUTDOWN_TIMEOUT: Final = 8.0
#: the ``stop_timeout`` of ``stubborn``, which ignores SIGTERM
STUBBORN_STOP: Final = 1.0
RACE_LEAD: Final = 0.3  # the final SIGTERM comes this long after a restart of stubborn

#: figures the checks hand the report, by name
Stats = dict[str, Any]


@dataclass
class Sample:
    """One look at tinit from the host, taken by the soak's monitor."""

    t: float  # wall clock
    rss_kib: int
    fds: int
    fd_floor: int  # fds minus pipes shared with a live descendant and live cgroup files
    cpu_ticks: int
    cpu_ns: int
    threads: int
    log_kib: float = 0.0  # what tinit holds for `tinit logs` (status log_bytes, all services)
    cgroup_fds: int = 0  # files of live service cgroups tinit keeps open (stats; bounded)
    floor_links: list[str] = field(default_factory=list)  # what the fd floor counts


@dataclass(frozen=True, slots=True)
class Check:
    """The verdict on one invariant: what was seen, and every way it broke."""

    name: str
    ok: bool
    summary: str
    problems: list[str] = field(default_factory=list)
    skipped: str = ""

    @property
    def verdict(self) -> str:
        return "skipped" if self.skipped else "PASS" if self.ok else "FAIL"


def wall_of(stamp: str) -> float:
    """The wall-clock time of an event's ISO 8601 timestamp."""
    return datetime.datetime.fromisoformat(stamp).timestamp()


def strip(event: dict[str, Any]) -> dict[str, Any]:
    """An event as tinit logged it, for a problem line: without our keys or the argv."""
    return {k: v for k, v in event.items() if not k.startswith("_") and k != "command"}
