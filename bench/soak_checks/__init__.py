"""The soak's invariants, checked against each other from what a run left behind.

bench/soak.py runs the chaos and records it; this package reads the record
back (:mod:`.evidence`, :mod:`.streams`) and checks one group of related
invariants per module:

- :mod:`.exits`: each exit matches its run's intent, each restart decision
  the policy, and an OOM kill is reported as one;
- :mod:`.processes`: orphans reaped with their own status, no lingering
  zombie, forwarded signals delivered;
- :mod:`.output`: every line once, in order, untorn; binary junk intact;
- :mod:`.control`: every control request answered, every reload exact;
- :mod:`.resources`: RSS, fds and threads flat, and where the CPU goes;
- :mod:`.shutdown`: the final SIGTERM in time and in dependency order, and
  nothing unexpected in tinit's own log.

docs/reliability.md describes the invariants and what the soak found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from . import control, exits, output, processes, resources, shutdown
from .evidence import Evidence, Run
from .record import RACE_LEAD, SHUTDOWN_TIMEOUT, STUBBORN_STOP, Check, Sample, Stats

if TYPE_CHECKING:
    from soak import Soak

__all__ = [
    "RACE_LEAD",
    "SHUTDOWN_TIMEOUT",
    "STUBBORN_STOP",
    "Analysis",
    "Check",
    "Run",
    "Sample",
]

#: every check, in the order of the report
CHECKS: Final[tuple[Callable[[Evidence, Stats], Check], ...]] = (
    exits.check_statuses,
    processes.check_orphans,
    processes.check_zombies,
    exits.check_restarts,
    output.check_output,
    output.check_junk,
    processes.check_signals,
    control.check_control,
    control.check_reloads,
    resources.check_rss,
    resources.check_fds,
    resources.check_threads,
    shutdown.check_shutdown,
    shutdown.check_shutdown_order,
    shutdown.check_own_log,
    exits.check_oom,
)


class Analysis:
    """A soak run's evidence, every check's verdict on it, and the figures they gathered."""

    def __init__(self, soak: Soak) -> None:
        self.evidence = Evidence(soak)
        self.stats: Stats = {}
        self.checks: list[Check] = []

    @property
    def runs(self) -> dict[str, list[Run]]:
        return self.evidence.runs

    def analyse(self) -> list[Check]:
        self.evidence.read()
        self.checks = [check(self.evidence, self.stats) for check in CHECKS]
        resources.cpu_figures(self.evidence, self.stats)
        return self.checks

    def timeline(self, points: int = 8) -> list[list[str]]:
        """tinit's RSS, fds and CPU time at a few moments of the run, with starts so far."""
        return resources.timeline(self.evidence, points)
