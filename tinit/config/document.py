"""The normalized document: a Config written back as plain data.

``tinit check`` prints it (as YAML, or JSON with ``--json``): the file as tinit
understood it, every default filled in and every value in one canonical
spelling, so that loading it again gives an equal Config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, assert_never, cast

from tinit.config._replicas import PLACEHOLDER
from tinit.config._units import format_address, format_duration, format_signal, format_size
from tinit.config.model import (
    REPLICA_VAR,
    ExecProbe,
    HttpProbe,
    NotifyFdProbe,
    SdNotifyProbe,
    TcpProbe,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tinit.config.model import Config, LogRotation, Probe, Service, Settings

__all__ = ["to_document"]


def to_document(config: Config) -> dict[str, Any]:
    """The config as plain YAML/JSON-able data, every default filled in.

    Loading the dumped document again gives an equal Config. Every ``$`` in a
    string is written as ``$$``, since the values are already expanded.
    """
    document = {
        "version": config.version,
        "settings": _settings_document(config.settings),
        "services": _services_document(config),
    }
    return cast("dict[str, Any]", _escape(document))


def _services_document(config: Config) -> dict[str, Any]:
    """Each service once: a replicated one under its own name, as written, with ``replicas``."""
    groups: dict[str, list[str]] = {}
    for name, service in config.services.items():
        if service.replica_of is not None:
            groups.setdefault(service.replica_of, []).append(name)
    services: dict[str, Any] = {}
    for name, service in config.services.items():
        base = service.replica_of
        if base is None:
            services[name] = _service_document(service, groups)
        elif base not in services:
            services[base] = _service_document(config.replicated[base], groups)
    return services


def _settings_document(settings: Settings) -> dict[str, Any]:
    listen = settings.health_listen
    return {
        "shutdown_timeout": format_duration(settings.shutdown_timeout),
        "log_format": settings.log_format,
        "log_level": settings.log_level,
        "output": settings.output,
        "cgroups": settings.cgroups,
        "control_socket": settings.control_socket,
        "health_listen": format_address(listen) if listen else None,
        "forward_signals": [format_signal(s) for s in settings.forward_signals],
        "exit_code_remap": dict(settings.exit_code_remap),
        "isolate": settings.isolate,
        "log_rotation": _rotation_document(settings.log_rotation),
    }


def _service_document(s: Service, groups: dict[str, list[str]]) -> dict[str, Any]:
    """``groups`` lists the instances of each replicated service, by its name."""
    source, backoff, limits, ns = s.source_command, s.backoff, s.limits, s.namespaces
    return {
        "command": source if isinstance(source, str) else list(source),
        "shell": s.shell,
        "workdir": s.workdir,
        "user": s.user,
        "group": s.group,
        "umask": None if s.umask is None else f"{s.umask:03o}",
        "env": dict(s.env),
        "env_file": list(s.env_file),
        "clear_env": s.clear_env,
        "stdin": s.stdin,
        "output": s.output,
        "oneshot": s.oneshot,
        "restart": s.restart,
        "success_exit_codes": sorted(s.success_exit_codes),
        "backoff": {
            "initial": format_duration(backoff.initial),
            "max": format_duration(backoff.max),
            "factor": backoff.factor,
            "reset_after": format_duration(backoff.reset_after),
        },
        "max_restarts": s.max_restarts,
        "critical": s.critical,
        "depends_on": _dependencies(s.depends_on, groups),
        "ready": _probe_document(s.ready, health=False),
        "health": _probe_document(s.health, health=True),
        "stop_signal": format_signal(s.stop_signal),
        "stop_timeout": format_duration(s.stop_timeout),
        "limits": {
            "memory": None if limits.memory is None else format_size(limits.memory),
            "cpu": limits.cpu,
            "pids": limits.pids,
        },
        "oom_group": s.oom_group,
        "capabilities": {"drop": list(s.capabilities.drop), "add": list(s.capabilities.add)},
        "no_new_privs": s.no_new_privs,
        "namespaces": {
            "private_tmp": ns.private_tmp,
            "read_only_paths": list(ns.read_only_paths),
            "hidden_paths": list(ns.hidden_paths),
            "network": ns.network,
            "pid": ns.pid,
        },
        # how many, and whether at start
        "disabled": s.disabled,
        "replicas": s.replicas,
        # -- scheduled jobs
        "schedule": _schedule_document(s),
        "run_at_start": s.run_at_start,
        "inherit_fds": list(s.inherit_fds),
        "log_rotation": _rotation_document(s.log_rotation),
    }


def _rotation_document(rotation: LogRotation | None) -> dict[str, Any] | None:
    if rotation is None:
        return None
    return {"max_size": format_size(rotation.max_size), "keep": rotation.keep}


def _dependencies(depends_on: Mapping[str, str], groups: dict[str, list[str]]) -> dict[str, str]:
    """A dependency on every instance of a replicated service, with one condition, as written."""
    written: dict[str, str] = {}
    for dep, condition in depends_on.items():
        base = next((b for b, names in groups.items() if dep in names), None)
        if base is None or any(depends_on.get(n) != condition for n in groups[base]):
            written[dep] = condition
        else:
            written[base] = condition
    return written


def _schedule_document(s: Service) -> dict[str, Any] | None:
    """Always the mapping form, so a time zone has one place to be written."""
    if s.schedule is None:
        return None
    return {"cron": s.schedule.expression, "timezone": s.schedule.timezone}


def _probe_document(probe: Probe | None, *, health: bool) -> dict[str, Any] | None:
    if probe is None:
        return None
    kind, check = _probe_check(probe)
    document = {
        kind: check,
        "interval": format_duration(probe.interval),
        "timeout": format_duration(probe.timeout),
    }
    if isinstance(probe, SdNotifyProbe):
        watchdog = probe.watchdog
        document["watchdog"] = None if watchdog is None else format_duration(watchdog)
    if health:
        document["failures"] = probe.failures
    else:
        start = probe.start_timeout
        document["start_timeout"] = None if start is None else format_duration(start)
    return document


def _probe_check(probe: Probe) -> tuple[str, object]:
    """The key a probe's kind is written under, and its value."""
    match probe:
        case TcpProbe(address=address):
            return "tcp", format_address(address)
        case HttpProbe(url=url):
            return "http", url
        case ExecProbe(argv=argv):
            return "exec", list(argv)
        case NotifyFdProbe(fd=fd):
            return "notify_fd", fd
        case SdNotifyProbe():
            return "sd_notify", True
        case _:
            assert_never(probe)


def _escape(value: object) -> object:
    if isinstance(value, str):
        return value.replace("$", "$$").replace(PLACEHOLDER, "${" + REPLICA_VAR + "}")
    if isinstance(value, dict):
        return {key: _escape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape(item) for item in value]
    return value
