"""The shutdown budget of an imported file, raised to fit its slowest stop.

tinit stops the services of a shutdown in reverse dependency order, each
within its ``stop_timeout``, and the whole shutdown within
``settings.shutdown_timeout`` (9 s by default, to fit ``docker stop``'s 10 s).
A file imported from a tool without such a budget can ask for much more: a
queue worker given an hour to finish its job would be killed after 9 s. So
the import raises ``shutdown_timeout`` to cover the longest chain of
``stop_timeout``s along the dependencies (as ``tinit check`` adds them up),
plus a second for tinit to kill and reap what is left; and it says what the
container's own grace period must become, since the runtime kills tinit
when that one runs out.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from tinit.config import parse_duration

if TYPE_CHECKING:
    from collections.abc import Mapping

#: tinit's defaults: settings.shutdown_timeout and a service's stop_timeout
DEFAULT_BUDGET: Final = 9.0
DEFAULT_STOP: Final = 5.0
#: time left for tinit, once the last stop_timeout ran out, to SIGKILL and reap
MARGIN: Final = 1.0


def fit_shutdown_budget(document: dict[str, Any]) -> str | None:
    """Raise ``document``'s ``settings.shutdown_timeout`` when its services need more.

    Returns the note to put at the top of the file, or None when the
    default budget is enough.
    """
    services: Mapping[str, Mapping[str, Any]] = document["services"]
    total, names = _longest_chain(services)
    if total + MARGIN <= DEFAULT_BUDGET:
        return None
    budget = math.ceil(total + MARGIN)
    document.setdefault("settings", {})["shutdown_timeout"] = f"{budget}s"
    grace = budget + 1
    whose = "the sum of their stop_timeout" if len(names) > 1 else "its stop_timeout"
    return (
        f"stopping {' -> '.join(names)} can take {_seconds(total)} ({whose}):"
        f" settings.shutdown_timeout became {budget}s (tinit's default, {_seconds(DEFAULT_BUDGET)},"
        " would kill them first). Give the container longer to stop too, or its runtime kills"
        f" everything before that: `docker stop -t {grace}` (Compose: stop_grace_period:"
        f" {grace}s), Kubernetes: terminationGracePeriodSeconds: {grace}"
    )


def _longest_chain(services: Mapping[str, Mapping[str, Any]]) -> tuple[float, tuple[str, ...]]:
    """The slowest chain of stops, dependents first: its total time and its services.

    Oneshots count for nothing, as in ``tinit check``: by the time of a
    shutdown they have usually ended. The import never writes a cycle.
    """
    chains: dict[str, tuple[float, tuple[str, ...]]] = {}

    def chain(name: str, seen: frozenset[str]) -> tuple[float, tuple[str, ...]]:
        if name not in chains:
            service = services[name]
            deps = [d for d in service.get("depends_on") or () if d in services and d not in seen]
            below_total, below = max((chain(d, seen | {d}) for d in deps), default=(0.0, ()))
            if service.get("oneshot"):
                chains[name] = (below_total, below)
            else:
                stop = parse_duration(service.get("stop_timeout", DEFAULT_STOP))
                chains[name] = (stop + below_total, (name, *below))
        return chains[name]

    return max((chain(name, frozenset({name})) for name in services), default=(0.0, ()))


def _seconds(value: float) -> str:
    return f"{value:g}s"


__all__ = ["fit_shutdown_budget"]
