"""The ports a pod serves, as ``containerPorts`` and a Service in front of them.

tinit has no key for the ports a service listens on; its tcp and http
probes say where a service answers, though. A probe on loopback or on every
address (``0.0.0.0``, ``::``) is a port of the container itself, so it
becomes a named ``containerPort`` of that container and a port of the
Service; a probe on another host checks something outside the pod, and
gives none. A port is the pod's: two containers can't listen on the same one
(they share the pod's network), so each number is named once, for the first
service that probes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = ["Port", "is_loopback", "listens_here", "name_ports", "service_ports"]

ANY_HOST: Final = frozenset({"0.0.0.0", "::"})
# A port's name (IANA_SVC_NAME): at most 15 of lowercase letters, digits and
# '-', at least one letter, no '-' at either end or twice in a row.
_PORT_NAME: Final = re.compile(r"(?=.*[a-z])[a-z0-9]+(?:-[a-z0-9]+)*")
_PORT_NAME_MAX: Final = 15


@dataclass(frozen=True, slots=True)
class Port:
    """A port one container listens on, by the probes of its service."""

    service: str
    name: str
    number: int
    loopback: bool  # probed on loopback only: reachable from outside only if it listens on all


def is_loopback(host: str) -> bool:
    return host == "localhost" or host == "::1" or host.startswith("127.")


def listens_here(host: str) -> bool:
    """Whether a probe of ``host`` checks a port of the container itself."""
    return is_loopback(host) or host in ANY_HOST


def name_ports(probed: Iterable[tuple[str, str, int]], labels: Mapping[str, str]) -> list[Port]:
    """A named Port per distinct number of ``probed`` (service, host, port), first service first.

    ``labels`` maps each service to its container name, which its first port
    takes when that is a valid port name not yet taken.
    """
    first: dict[int, str] = {}
    anywhere: set[int] = set()
    for service, host, number in probed:
        if listens_here(host):
            first.setdefault(number, service)
            if not is_loopback(host):
                anywhere.add(number)
    ports: list[Port] = []
    taken: set[str] = set()
    for number, service in first.items():
        name = _port_name(labels[service], number, taken)
        taken.add(name)
        ports.append(Port(service, name, number, loopback=number not in anywhere))
    return ports


def _port_name(label: str, number: int, taken: set[str]) -> str:
    short = re.sub("-+", "-", label)[:_PORT_NAME_MAX].strip("-")
    with_number = re.sub("-+", "-", label)[: _PORT_NAME_MAX - len(str(number)) - 1].strip("-")
    for name in (short, f"{with_number}-{number}", f"port-{number}"):
        if _PORT_NAME.fullmatch(name) and len(name) <= _PORT_NAME_MAX and name not in taken:
            return name
    raise AssertionError("port-N is unique per number")  # pragma: no cover


def service_ports(ports: Sequence[Port]) -> list[dict[str, object]]:
    """The ports of a Service in front of the pod: each the container's, by its name."""
    return [{"name": p.name, "port": p.number, "targetPort": p.name} for p in ports]
