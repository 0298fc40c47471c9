"""The services of a config as one Kubernetes pod: the mapping behind ``tinit export``.

Each service becomes one container. What Kubernetes can say, it says
in its own fields; what it can't becomes a note: a ``tinit:`` comment above the
container it concerns, and an entry of the list ``build`` returns. The tree
built here is dicts, lists and scalars, with ``Commented`` where a comment
goes; kubernetes.py writes it as YAML.

The start-order rule (docs/kubernetes.md). Kubernetes orders containers only
through ``initContainers``, which start one after the other. So every oneshot
is an init container, and so is every long-running service that another
service depends on, as a native sidecar (``restartPolicy: Always``, Kubernetes
>= 1.29) whose startupProbe holds back the containers after it until it is
ready. Init containers go in dependency order, file order among equals; the
other long-running services are the app containers, which start together once
every init container has completed or started. Sidecars also stop after the
app containers, in reverse order, as tinit stops dependencies after their
dependents. Before 1.29 there are no sidecars: only oneshots that wait for
nothing but oneshots are init containers, and every other service is an app
container, its order lost (a note says so).

Ports come from the probes (_k8s_ports.py); a Service in front of them is a
second object. ``${NAME}`` left in a command for run time becomes
``$(NAME)`` with an ``env`` entry (_k8s_vars.py).
"""

from __future__ import annotations

import dataclasses
import grp
import math
import pwd
import re
import signal
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, assert_never
from urllib.parse import urlsplit

from tinit.config import (
    Backoff,
    ExecProbe,
    HttpProbe,
    NotifyFdProbe,
    SdNotifyProbe,
    Settings,
    TcpProbe,
)
from tinit.config._units import (
    format_address,
    format_duration,
    format_signal,
    format_size,
    parse_env_file,
)
from tinit.config.model import REPLICA_VAR
from tinit.convert._k8s_ports import ANY_HOST, is_loopback, name_ports, service_ports
from tinit.convert._k8s_vars import PLACEHOLDER, to_kubernetes

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tinit.config import Config, Probe, Service

Kind = Literal["pod", "deployment"]
KINDS: Final[tuple[Kind, ...]] = ("deployment", "pod")
LABEL: Final = "app.kubernetes.io/name"
# The first Kubernetes with native sidecars (init containers with restartPolicy: Always) on.
SIDECARS: Final = (1, 29)
# The largest failureThreshold: a startupProbe for `start_timeout: null` that never gives up.
FOREVER: Final = 2**31 - 1
DEFAULT_MAX_RESTARTS: Final = 10  # config.py's default; notes are for what the user chose
_NOT_LABEL: Final = re.compile(r"[^a-z0-9-]+")
_ENV_NAME: Final = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")  # the apiserver's rule before 1.34
_RESTARTS: Final = {"Always": "always", "OnFailure": "on-failure", "Never": "never"}
_TMP: Final = {"name": "tmp", "mountPath": "/tmp"}
# Loopback probes run inside the container, with the interpreter tinit needs.
# Success as tinit's: a connection; an HTTP status from 200 to 399.
#: how an exec probe runs tinit's own tcp or http check inside the container
#: (``tinit probe``, probecmd.py): the image is the one tinit ran in, and
#: Dockerfile.example puts tinit on PATH whether or not the image has Python
PROBE_COMMAND: Final = ("tinit", "probe")


@dataclass(frozen=True, slots=True)
class Commented:
    """A value of the YAML tree with comment lines (without ``#``) to write above it."""

    value: object
    comments: tuple[str, ...] = ()


def dns_label(text: str, fallback: str) -> str:
    """``text`` as a DNS-1123 label: at most 63 of lowercase letters, digits and '-'."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-")[:63].rstrip("-")
    return label or fallback


def container_names(names: Sequence[str]) -> dict[str, str]:
    """A distinct DNS-1123 label per service name; names that are one already are kept."""
    labels = {name: name for name in names if dns_label(name, "") == name}
    taken = set(labels.values())
    for name in names:
        if name in labels:
            continue
        base = label = dns_label(name, "service")
        number = 2
        while label in taken:
            suffix = f"-{number}"
            label = base[: 63 - len(suffix)].rstrip("-") + suffix
            number += 1
        labels[name] = label
        taken.add(label)
    return {name: labels[name] for name in names}


def escape(text: str) -> str:
    """``text`` such that Kubernetes' ``$(VAR)`` expansion gives it back unchanged.

    Kubernetes expands ``$(NAME)`` in command, args, env values and exec probes,
    and reads ``$$`` as ``$``; tinit has already expanded its own ``${NAME}``.
    A ``$`` before a non-ASCII character is escaped too: the expander copies the
    byte after a lone ``$`` as a character of its own, which breaks UTF-8.
    """
    return re.sub(r"\$(?=[$(]|[^\x00-\x7f])", "$$", text)


def memory_quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity, in the largest binary unit that divides them."""
    for suffix, scale in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % scale == 0:
            return f"{size // scale}{suffix}"
    return str(size)


def cpu_quantity(cores: float) -> str:
    """Cores as a Kubernetes quantity: whole cores, else millicores (at least 1m)."""
    milli = max(1, round(cores * 1000))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


@dataclass(frozen=True, slots=True)
class Layout:
    """Which service is which kind of container, in start order."""

    init: tuple[str, ...]
    app: tuple[str, ...]
    sidecars: frozenset[str]


def layout(config: Config, *, sidecars: bool = True) -> Layout:
    """The containers of the pod by the start-order rule of this module's docstring.

    Without ``sidecars`` (Kubernetes before 1.29), long-running services are
    all app containers, and so is every oneshot that waits for one.
    """
    services = config.services
    depended = {dep for service in services.values() for dep in service.depends_on}
    if sidecars:
        side = frozenset(n for n, s in services.items() if not s.oneshot and n in depended)
        early = [n for n, s in services.items() if s.oneshot or n in side]
    else:
        side, early = frozenset(), _before_services(config)
    init: list[str] = []
    while len(init) < len(early):  # a valid config has no cycles: one is always free
        init.append(
            next(
                name
                for name in early
                if name not in init and all(dep in init for dep in services[name].depends_on)
            )
        )
    app = [n for n in services if n not in early]
    if not app:
        # A pod needs an app container. The last init container is a oneshot (a
        # sidecar has a dependent after it), and nothing waits for it.
        app.append(init.pop())
    return Layout(tuple(init), tuple(app), side)


def _before_services(config: Config) -> list[str]:
    """The oneshots that wait, directly or not, for other oneshots only."""
    services = config.services
    early = {n for n, s in services.items() if s.oneshot}
    while dropped := {n for n in early if not set(services[n].depends_on) <= early}:
        early -= dropped
    return [n for n in services if n in early]


class _Notes:
    """Notes about one part of the config: comment lines here, entries in ``report``."""

    def __init__(self, prefix: str, report: list[str]) -> None:
        self.prefix, self.report = prefix, report
        self.lines: list[str] = []

    def add(self, key: str, text: str) -> None:
        self.lines.append(f"tinit: {key}: {text}")
        self.report.append(f"{self.prefix}.{key}: {text}" if self.prefix else f"{key}: {text}")


@dataclass(frozen=True, slots=True)
class Target:
    """What the objects are for, besides the config.

    ``version`` None is any Kubernetes with native sidecars. ``deferred``
    holds the commands with a ``${NAME}`` left for run time, marked as
    _k8s_vars.deferred_commands gives them (None: it can't tell where).
    """

    image: str
    kind: Kind = "deployment"
    resolve_ids: bool = False
    version: tuple[int, int] | None = None
    service: bool = True
    deferred: Mapping[str, tuple[str, ...] | None] = dataclasses.field(default_factory=dict)


def build(
    config: Config, *, name: str, target: Target
) -> tuple[list[dict[str, object]], list[str]]:
    """The Pod or Deployment for ``config``'s services, and a Service; the notes written in.

    The Service is there when ``target.service`` and some container has a
    port. Reads the services' env files again, to write their variables (and
    only theirs, not tinit's environment) into the containers.
    ``target.resolve_ids`` turns user and group names into ids with this
    machine's databases.
    """
    if target.kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {target.kind!r}")
    pod = _Pod(config, target)
    spec = pod.spec()
    labels = {LABEL: name}
    metadata = {"name": name, "labels": labels}
    if target.kind == "pod":
        workload = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    else:
        deployment = {
            "replicas": 1,
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": spec},
        }
        document = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata}
        workload = {**document, "spec": deployment}
    if not (target.service and pod.ports):
        return [workload], pod.report
    service: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {"selector": dict(labels), "ports": pod.service_ports()},
    }
    return [workload, service], pod.report


class _Pod:
    """The pod spec of one config, built once, notes in document order."""

    def __init__(self, config: Config, target: Target) -> None:
        kept = _without_disabled(config)
        #: the services left out (none when all are disabled: a pod needs a container)
        self.disabled = [n for n in config.services if n not in kept.services]
        config = kept
        self.config, self.services = config, config.services
        self.image, self.kind, self.resolve_ids = target.image, target.kind, target.resolve_ids
        self.sidecars = target.version is None or target.version >= SIDECARS
        self.deferred = target.deferred
        self.layout = layout(config, sidecars=self.sidecars)
        self.names = container_names(list(self.services))
        self.ports = name_ports(self._probed(), self.names)
        self.policy = self._restart_policy()
        running = self._running()
        timeouts = [
            config.settings.shutdown_timeout,
            *(self.services[n].stop_timeout for n in running),
        ]
        self.grace = math.ceil(max(timeouts))
        sharing = [n for n, s in self.services.items() if not s.namespaces.private_tmp]
        self.shared_tmp = frozenset(sharing if len(sharing) > 1 else ())
        self.report: list[str] = []

    def _probed(self) -> list[tuple[str, str, int]]:
        """(service, host, port) of every tcp and http probe of a long-running service."""
        probed = []
        for name, service in self.services.items():
            for probe in (service.ready, service.health):
                if not service.oneshot and probe is not None:
                    address = _probe_address(probe)
                    if address is not None:
                        probed.append((name, *address))
        return probed

    def service_ports(self) -> Commented:
        """The Service's ports, with a note on those probed on loopback only."""
        notes = _Notes("", self.report)
        loopback = [f"{self.names[p.service]} {p.number}" for p in self.ports if p.loopback]
        if loopback:
            notes.add(
                "service.ports",
                f"{', '.join(loopback)}: probed on loopback only; the Service reaches a port "
                "only if its service listens on the pod's address too (on 0.0.0.0)",
            )
        return Commented(service_ports(self.ports), tuple(notes.lines))

    def _running(self) -> list[str]:
        """The services still running when the pod stops: all but the oneshot init containers."""
        return [n for n, s in self.services.items() if not (s.oneshot and n in self.layout.init)]

    def _restart_policy(self) -> str:
        if self.kind == "deployment":
            return "Always"  # the only one a Deployment accepts
        restarts = {self.services[name].restart for name in self.layout.app}
        if "always" in restarts:
            return "Always"
        return "OnFailure" if "on-failure" in restarts else "Never"

    def spec(self) -> Commented:
        notes = _Notes("", self.report)
        self._settings_notes(notes)
        for name in self.disabled:
            left_out = _Notes(f"services.{name}", self.report)
            left_out.add(
                "disabled",
                f"true: {name} is left out, since every container of a pod starts; run it as a"
                " workload of its own when it is wanted. Its dependents start without it, as in"
                " tinit",
            )
            notes.lines.extend(left_out.lines)
        spec: dict[str, object] = {
            "restartPolicy": self.policy,
            "terminationGracePeriodSeconds": Commented(self.grace, self._grace_notes()),
        }
        if self.layout.init:
            spec["initContainers"] = [self._container(n) for n in self.layout.init]
        containers = [self._container(n) for n in self.layout.app]
        volumes = [{"name": _TMP["name"], "emptyDir": {}}] if self.shared_tmp else []
        filesystem = _Notes("", self.report)
        if len(self.services) > 1:
            shared = "; /tmp is shared through the emptyDir volume tmp" if volumes else ""
            filesystem.add(
                "filesystem",
                "tinit's services share one filesystem, containers don't: each has its own"
                f"{shared}. Mount a volume for any other path the services exchange files through",
            )
        if volumes:
            spec["containers"] = containers
            spec["volumes"] = Commented(volumes, tuple(filesystem.lines))
        else:
            spec["containers"] = Commented(containers, tuple(filesystem.lines))
        return Commented(spec, tuple(notes.lines))

    def _settings_notes(self, notes: _Notes) -> None:
        settings, default = self.config.settings, Settings()
        if settings.health_listen is not None:
            notes.add(
                "settings.health_listen",
                f"{format_address(settings.health_listen)}: no equivalent; the containers' probes "
                "tell Kubernetes what /healthz and /readyz told, kubectl get pods shows restarts",
            )
        if settings.forward_signals != default.forward_signals:
            names = ", ".join(format_signal(s) for s in settings.forward_signals)
            notes.add(
                "settings.forward_signals",
                f"[{names}]: Kubernetes forwards no signals; send one with "
                "kubectl exec POD -c CONTAINER -- kill -SIGNAL 1",
            )
        if settings.exit_code_remap:
            notes.add(
                "settings.exit_code_remap", "no equivalent: a pod has no exit code of its own"
            )
        if settings.cgroups == "off" and any(_has_limits(s) for s in self.services.values()):
            notes.add(
                "settings.cgroups",
                "off: Kubernetes always enforces the resources.limits below, which tinit did not",
            )

    def _grace_notes(self) -> tuple[str, ...]:
        notes = _Notes("", self.report)
        shutdown = self.config.settings.shutdown_timeout
        if self.grace > shutdown:
            raised = math.ceil(shutdown) != self.grace
            why = (
                "raised to the longest stop_timeout: Kubernetes has no timeout per container"
                if raised
                else "rounded up: Kubernetes counts whole seconds"
            )
            notes.add("settings.shutdown_timeout", f"{format_duration(shutdown)}: {why}")
        timeouts = {n: self.services[n].stop_timeout for n in self._running()}
        others = [
            f"{self.names[n]} {format_duration(t)}" for n, t in timeouts.items() if t != self.grace
        ]
        if others:
            notes.add(
                "services.*.stop_timeout",
                f"{', '.join(others)}: Kubernetes gives the whole pod one grace period, "
                f"terminationGracePeriodSeconds: {self.grace}, then kills what is left",
            )
        return tuple(notes.lines)

    # -- one container

    def _container(self, name: str) -> Commented:
        service = self.services[name]
        notes = _Notes(f"services.{name}", self.report)
        label = self.names[name]
        if label != name:
            notes.add("name", f"{name!r} is not a DNS-1123 label, so the container is {label!r}")
        container: dict[str, object] = {"name": label, "image": self.image}
        if name in self.layout.sidecars:
            container["restartPolicy"] = "Always"
        container["command"], runtime = self._command(name, notes)
        if service.workdir is not None:
            container["workingDir"] = service.workdir
        ports = [
            {"name": p.name, "containerPort": p.number} for p in self.ports if p.service == name
        ]
        if ports:
            container["ports"] = ports
        env = _env(service, notes)
        if service.replica is not None:
            env.append({"name": REPLICA_VAR, "value": str(service.replica)})
            notes.add(
                "replicas",
                f"instance {service.replica} of {service.replica_of}: a container of its own."
                " A Deployment's replicas would copy the whole pod, every service with it",
            )
        known = {entry["name"] for entry in env}
        env += [{"name": var, "value": PLACEHOLDER} for var in runtime if var not in known]
        if env:
            container["env"] = env
        resources = _resources(service, notes)
        if resources:
            container["resources"] = resources
        security = self._security(service, notes)
        if security:
            container["securityContext"] = security
        container.update(self._probes(name, service, notes))
        if name in self.shared_tmp:
            container["volumeMounts"] = [dict(_TMP)]
        self._order_notes(name, service, notes)
        self._restart_notes(name, service, notes)
        _process_notes(service, notes)
        return Commented(container, tuple(notes.lines))

    def _command(self, name: str, notes: _Notes) -> tuple[list[str], list[str]]:
        """The container's command, and the variables it takes from the container's env."""
        command = self.services[name].command
        if name not in self.deferred:
            return [escape(arg) for arg in command], []
        marked = self.deferred[name]
        if marked is None:
            notes.add(
                "command",
                "holds a ${NAME} that tinit resolves when it starts, which can't be told apart "
                "from literal text here; Kubernetes doesn't expand ${NAME}: write it as $(NAME) "
                "and add NAME to env",
            )
            return [escape(arg) for arg in command], []
        args, runtime = to_kubernetes(marked)
        names = ", ".join(f"${{{var}}}" for var in runtime)
        notes.add(
            "command",
            f"{names}: not set where this was exported, so tinit would take it from its "
            "environment when it starts. Kubernetes expands $(NAME) only from the container's "
            f"env, not the image's ENV: set each value in env ({PLACEHOLDER} is a placeholder), "
            "or export where it is set",
        )
        return args, runtime

    def _security(self, service: Service, notes: _Notes) -> dict[str, object]:
        security: dict[str, object] = {}
        uid = self._account_id(service.user, "user", notes)
        gid = self._account_id(service.group, "group", notes)
        if uid is not None:
            security["runAsUser"] = uid
        if gid is not None:
            security["runAsGroup"] = gid
        if service.no_new_privs:
            security["allowPrivilegeEscalation"] = False
        caps = service.capabilities
        if caps.drop or caps.add:
            security["capabilities"] = {
                key: list(names) for key, names in (("drop", caps.drop), ("add", caps.add)) if names
            }
        if caps.add and service.user is not None and uid != 0:
            notes.add(
                "capabilities.add",
                "Kubernetes doesn't make capabilities ambient as tinit does: a process that isn't "
                "root gets them only from file capabilities (setcap) in the image",
            )
        if "/" in service.namespaces.read_only_paths:
            security["readOnlyRootFilesystem"] = True
        return security

    def _account_id(self, value: str | None, kind: str, notes: _Notes) -> int | None:
        """A numeric id as Kubernetes needs it, or None with a note on why not."""
        if value is None:
            return None
        if value.isdigit():
            return int(value)
        if value == "root":
            return 0
        field = "runAsUser" if kind == "user" else "runAsGroup"
        if not self.resolve_ids:
            notes.add(
                kind,
                f"{value!r} is a name and Kubernetes needs a number: set securityContext.{field} "
                "to its id in the image (--no-offline takes the id from this machine)",
            )
            return None
        try:
            number = pwd.getpwnam(value).pw_uid if kind == "user" else grp.getgrnam(value).gr_gid
        except KeyError:
            notes.add(kind, f"{value!r} is unknown here: set securityContext.{field} by hand")
            return None
        notes.add(kind, f"{value!r} is {number} on this machine; check it is the same in the image")
        return number

    # -- probes

    def _probes(self, name: str, service: Service, notes: _Notes) -> dict[str, object]:
        probes: dict[str, object] = {}
        ready, health = service.ready, service.health
        if service.oneshot:
            if ready is not None:
                notes.add("ready", "no equivalent: an init container or a oneshot has no probes")
            return probes
        if ready is not None and (handler := _handler(ready, "ready", notes)):
            timing = _timing(ready, "ready", notes)
            waited = any(s.depends_on.get(name) == "ready" for s in self.services.values())
            start = ready.start_timeout
            if start is not None or (name in self.layout.sidecars and waited):
                tries = FOREVER if start is None else math.ceil(start / timing["periodSeconds"])
                probes["startupProbe"] = {**handler, **timing, "failureThreshold": tries}
            if start is None and "startupProbe" in probes:
                notes.add(
                    "ready.start_timeout",
                    "null: the startupProbe that holds back the containers after this one "
                    f"gives up after {FOREVER} tries, as near to never as Kubernetes goes",
                )
            probes["readinessProbe"] = {**handler, **timing}
        if health is not None and (handler := _handler(health, "health", notes)):
            timing = _timing(health, "health", notes)
            probes["livenessProbe"] = {**handler, **timing, "failureThreshold": health.failures}
        return probes

    # -- what has no field

    def _order_notes(self, name: str, service: Service, notes: _Notes) -> None:
        for dep, condition in service.depends_on.items():
            target, label = self.services[dep], self.names[dep]
            ready = target.ready
            gated = (
                ready is not None
                and not isinstance(ready, NotifyFdProbe | SdNotifyProbe)
                and ready.start_timeout is not None
            )
            if dep in self.layout.app:
                notes.add(
                    f"depends_on.{dep}",
                    f"{condition}: lost: Kubernetes before 1.29 has no native sidecars, so "
                    f"{label} is an app container too, started at the same time as this one; "
                    f"this one must wait for {label} itself",
                )
            elif target.oneshot and condition != "completed":
                notes.add(
                    f"depends_on.{dep}",
                    f"{condition}: {label} is an init container, run to completion first",
                )
            elif condition == "ready" and isinstance(ready, NotifyFdProbe | SdNotifyProbe):
                kind = "notify_fd" if isinstance(ready, NotifyFdProbe) else "sd_notify"
                notes.add(
                    f"depends_on.{dep}",
                    f"ready: Kubernetes can't see {label}'s {kind}, so this one starts "
                    f"once {label} has started",
                )
            elif condition == "started" and gated:
                notes.add(
                    f"depends_on.{dep}",
                    f"started: this one starts once {label}'s startupProbe succeeds, "
                    f"when {label} is ready",
                )
        dependents = any(name in s.depends_on for s in self.services.values())
        if service.oneshot and name in self.layout.init and not dependents:
            notes.add(
                "oneshot",
                "nothing waits for it in tinit, but as an init container it holds back "
                "the app containers until it has succeeded",
            )
        if service.oneshot and name in self.layout.app and self.kind == "deployment":
            notes.add(
                "oneshot",
                "a Deployment restarts its containers when they exit: use --kind pod",
            )

    def _restart_notes(self, name: str, service: Service, notes: _Notes) -> None:
        if name in self.layout.sidecars:
            does, why = "always", "a sidecar is restarted after every exit"
        elif name in self.layout.init:
            does = "never" if self.policy == "Never" else "on-failure"
            why = f"the pod's restartPolicy is {self.policy}, so a failed init container " + (
                "fails the pod" if does == "never" else "is retried until it succeeds"
            )
        else:
            does = _RESTARTS[self.policy]
            why = (
                "a Deployment's pods have restartPolicy Always: a container is restarted "
                "after every exit"
                if self.kind == "deployment"
                else f"a pod has one restartPolicy for its app containers, here {self.policy}"
            )
        if service.restart != does:
            notes.add("restart", f"{service.restart} has no equivalent here: {why}")
        if service.success_exit_codes != {0}:
            codes = ", ".join(str(c) for c in sorted(service.success_exit_codes))
            notes.add("success_exit_codes", f"[{codes}]: only exit code 0 is a success")
        if service.backoff != Backoff():
            notes.add(
                "backoff",
                "Kubernetes restarts after its own back-off (10s doubling up to 5m), not settable",
            )
        if service.max_restarts not in (None, DEFAULT_MAX_RESTARTS):
            notes.add("max_restarts", f"{service.max_restarts}: Kubernetes never gives up")
        if service.critical:
            notes.add(
                "critical",
                "true: no equivalent: one container ending for good never ends the others",
            )
        if service.stop_signal != signal.SIGTERM and name in self._running():
            sig = format_signal(service.stop_signal)
            notes.add(
                "stop_signal",
                f"{sig}: Kubernetes stops a container with its image's STOPSIGNAL (SIGTERM if "
                "unset, one per image); Kubernetes >= 1.33 with the ContainerStopSignals feature "
                f"gate also takes lifecycle.stopSignal: {sig}, with spec.os.name: linux",
            )


def _without_disabled(config: Config) -> Config:
    """The config without its disabled services, which no dependent waits for; all of them
    when every service is disabled, since a pod needs a container."""
    kept = {n: s for n, s in config.services.items() if not s.disabled}
    if not kept:
        return config
    services = {
        name: dataclasses.replace(
            service,
            depends_on=MappingProxyType({d: c for d, c in service.depends_on.items() if d in kept}),
        )
        for name, service in kept.items()
    }
    return dataclasses.replace(config, services=MappingProxyType(services))


def _has_limits(service: Service) -> bool:
    return service.limits.memory is not None or service.limits.cpu is not None


def _env(service: Service, notes: _Notes) -> list[dict[str, str]]:
    """The service's own variables: its env files', then ``env``; not tinit's environment."""
    values: dict[str, str] = {}
    for path in service.env_file:
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError):
            notes.add("env_file", f"{path} can't be read here, so its variables are left out")
            continue
        found, _ = parse_env_file(text)  # load_config reported the bad lines
        values.update(found)
        if found:
            notes.add(
                "env_file",
                f"{path}: its variables are written out below; keep secrets in a Secret instead",
            )
    values.update(service.env)
    env = []
    for key, value in values.items():
        if _ENV_NAME.fullmatch(key):
            env.append({"name": key, "value": escape(value)})
        else:
            notes.add("env", f"{key!r} is not a name Kubernetes takes before 1.34: left out")
    if service.clear_env:
        notes.add("clear_env", "true: a container always starts from its image's ENV")
    return env


def _resources(service: Service, notes: _Notes) -> dict[str, object]:
    limits: dict[str, str] = {}
    memory, cpu, pids = service.limits.memory, service.limits.cpu, service.limits.pids
    if memory is not None:
        limits["memory"] = memory_quantity(memory)
    if cpu is not None:
        limits["cpu"] = cpu_quantity(cpu)
        if cpu * 1000 < 1 or round(cpu * 1000, 6) % 1:
            notes.add("limits.cpu", f"{cpu}: rounded to {limits['cpu']} cores")
    if pids is not None:
        notes.add(
            "limits.pids",
            f"{pids}: no limit per container; the kubelet's podPidsLimit bounds the whole pod",
        )
    if service.oom_group:
        notes.add(
            "oom_group",
            "true: no field for it; on cgroup v2 the kubelet (>= 1.28) sets memory.oom.group "
            "for every container, unless it runs with singleProcessOOMKill",
        )
    return {"limits": limits, "requests": dict(limits)} if limits else {}


def _handler(probe: Probe, key: str, notes: _Notes) -> dict[str, object] | None:
    """The part of a Kubernetes probe that says what to check, or None if it can't."""
    match probe:
        case TcpProbe(address=(host, port)):
            return _tcp_socket(host, port, f"{key}.tcp", format_address(probe.address), notes)
        case HttpProbe(url=written):
            url = urlsplit(written)
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            handler = _http_get(
                url.hostname or "127.0.0.1",
                url.port or 80,
                path,
                f"{key}.http",
                url.geturl(),
                notes,
            )
            if url.username is not None:
                notes.add(f"{key}.http", "the credentials in the URL are not sent")
            return handler
        case ExecProbe(argv=argv):
            return {"exec": {"command": [escape(arg) for arg in argv]}}
        case NotifyFdProbe(fd=fd):
            why = "no equivalent; Kubernetes only probes from outside the process"
            notes.add(f"{key}.notify_fd", f"{fd}: {why}")
            return None
        case SdNotifyProbe(watchdog=watchdog):
            why = "no equivalent; Kubernetes only probes from outside the process"
            notes.add(f"{key}.sd_notify", f"READY=1 and STATUS= are not seen: {why}")
            if watchdog is not None:
                notes.add(f"{key}.watchdog", f"{format_duration(watchdog)}: dropped, {why}")
            return None
        case _:
            assert_never(probe)


def _probe_address(probe: Probe) -> tuple[str, int] | None:
    """Host and port of a tcp or http probe; None for the others."""
    match probe:
        case TcpProbe(address=address):
            return address
        case HttpProbe(url=written):
            url = urlsplit(written)
            return url.hostname or "127.0.0.1", url.port or 80
        case _:
            return None


def _tcp_socket(host: str, port: int, key: str, written: str, notes: _Notes) -> dict[str, object]:
    if is_loopback(host):
        _inside_note(key, written, "tcpSocket", port, notes)
        return {"exec": {"command": [*PROBE_COMMAND, "tcp", escape(written)]}}
    return {"tcpSocket": _target(host, port)}


def _http_get(
    host: str, port: int, path: str, key: str, written: str, notes: _Notes
) -> dict[str, object]:
    if is_loopback(host):
        _inside_note(key, written, "httpGet", port, notes)
        return {"exec": {"command": [*PROBE_COMMAND, "http", escape(written)]}}
    return {"httpGet": {"path": path, **_target(host, port)}}


def _inside_note(key: str, written: str, kind: str, port: int, notes: _Notes) -> None:
    notes.add(
        key,
        f"{written}: the kubelet probes the pod's IP address, not the container's loopback, so "
        "this probe runs inside the container, as `tinit probe` (the image's tinit, on PATH). "
        f"If the service listens on all addresses, probing 0.0.0.0:{port} in the config gives "
        f"a plain {kind} probe instead",
    )


def _target(host: str, port: int) -> dict[str, object]:
    """Port and host of a probe that reaches the service from outside the container."""
    return {"port": port} if host in ANY_HOST else {"host": host, "port": port}


def _timing(probe: Probe, key: str, notes: _Notes) -> dict[str, int]:
    """periodSeconds and timeoutSeconds: whole seconds, at least 1."""
    timing = {}
    for name, field, seconds in (
        ("interval", "periodSeconds", probe.interval),
        ("timeout", "timeoutSeconds", probe.timeout),
    ):
        timing[field] = max(1, math.ceil(seconds))
        if timing[field] != seconds:
            notes.add(
                f"{key}.{name}",
                f"{format_duration(seconds)}: Kubernetes counts whole seconds, so {timing[field]}",
            )
    return timing


def _process_notes(service: Service, notes: _Notes) -> None:
    """Notes on how the process is set up and where its output goes."""
    if service.schedule is not None:
        zone = service.schedule.timezone
        notes.add(
            "schedule",
            f"{service.schedule.expression!r}{f' in {zone}' if zone else ''}: exported as a"
            " container that runs once at the pod's start; a CronJob is out of scope of this"
            " export: make one from this container with that schedule",
        )
    if service.umask is not None:
        notes.add(
            "umask",
            f'"{service.umask:03o}": no equivalent; set it in the command (sh -c \'umask '
            f"{service.umask:03o}; exec ...') or in the image",
        )
    if service.stdin not in (None, "/dev/null"):
        notes.add("stdin", f"{service.stdin}: no equivalent; a container's stdin is empty")
    output = service.output
    if output == "json":
        notes.add("output", "json: Kubernetes keeps each container's raw lines (kubectl logs)")
    elif output == "null":
        notes.add("output", "null: Kubernetes keeps the output; redirect it in the command")
    elif output.startswith("file:"):
        notes.add(
            "output",
            f"{output}: Kubernetes keeps the output as the container's log (kubectl logs)",
        )
    rotation = service.log_rotation
    if rotation is not None:
        notes.add(
            "log_rotation",
            f"{{max_size: {format_size(rotation.max_size)}, keep: {rotation.keep}}}: no"
            " equivalent; the kubelet rotates container logs (containerLogMaxSize,"
            " containerLogMaxFiles in its configuration)",
        )
    namespaces = service.namespaces
    paths = [p for p in namespaces.read_only_paths if p != "/"]
    if paths:
        notes.add(
            "namespaces.read_only_paths",
            f"[{', '.join(paths)}]: Kubernetes makes read-only only the whole root "
            "(readOnlyRootFilesystem) or a volume mount (readOnly: true)",
        )
    if namespaces.hidden_paths:
        notes.add(
            "namespaces.hidden_paths",
            f"[{', '.join(namespaces.hidden_paths)}]: no equivalent; leave them out of the "
            "image or mount an empty volume over them",
        )
    if namespaces.network == "none":
        notes.add(
            "namespaces.network",
            "none: the containers of a pod share its network; a NetworkPolicy can cut off "
            "the pod, not one container",
        )
