"""The config's model: frozen values that the rest of tinit trusts.

Everything here is plain data with every default filled in; ``loader`` makes
these values from a file and checks them, ``document`` writes them back out.
This module imports neither yaml nor trio, so the modules that only need the
types (spawn, cgroups, namespaces, the client commands) start fast.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tinit.errors import Problem

ProbeKind = Literal["tcp", "http", "exec", "notify_fd", "sd_notify"]
Restart = Literal["always", "on-failure", "never"]
Condition = Literal["started", "ready", "completed"]

PROBE_KINDS: Final[tuple[ProbeKind, ...]] = ("tcp", "http", "exec", "notify_fd", "sd_notify")
RESTARTS: Final[tuple[Restart, ...]] = ("always", "on-failure", "never")
CONDITIONS: Final[tuple[Condition, ...]] = ("started", "ready", "completed")
LOG_FORMATS: Final[tuple[Literal["console", "json"], ...]] = ("console", "json")
LOG_LEVELS: Final[tuple[Literal["debug", "info", "warning", "error"], ...]] = (
    "debug",
    "info",
    "warning",
    "error",
)
CGROUPS: Final[tuple[Literal["auto", "required", "off"], ...]] = ("auto", "required", "off")
NETWORKS: Final[tuple[Literal["host", "none"], ...]] = ("host", "none")
PIDS: Final[tuple[Literal["host", "private"], ...]] = ("host", "private")
DEFAULT_FORWARD: Final = (int(signal.SIGUSR1), int(signal.SIGUSR2), int(signal.SIGWINCH))
#: the bounds of ``replicas:``
MAX_REPLICAS: Final = 100
#: the variable that tells an instance of a replicated service its number
REPLICA_VAR: Final = "TINIT_REPLICA"
#: the bounds of ``log_rotation``: the smallest file worth rotating, and the most kept
MIN_ROTATE_SIZE: Final = 4096
MAX_ROTATE_SIZE: Final = 1 << 40
MAX_ROTATE_KEEP: Final = 1000
DEFAULT_ROTATE_KEEP: Final = 5


def replica_name(base: str, number: int) -> str:
    """The name of instance ``number`` (1-based) of the service ``base``: ``worker-2``."""
    return f"{base}-{number}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeSchedule:
    """What every probe has, whatever it checks: when it runs, and when it gives up.

    ``start_timeout`` is for a ready probe (None: wait forever), ``failures``
    for a health check (1 for a ready probe, which is done at its first success).
    """

    interval: float
    timeout: float
    start_timeout: float | None
    failures: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpProbe(ProbeSchedule):
    """Ready or healthy when a TCP connection to ``address`` (host, port) opens."""

    address: tuple[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpProbe(ProbeSchedule):
    """Ready or healthy when a GET of the http:// ``url`` answers 2xx or 3xx."""

    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecProbe(ProbeSchedule):
    """Ready or healthy when ``argv`` exits 0."""

    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyFdProbe(ProbeSchedule):
    """Ready when the service writes a newline to its file descriptor ``fd``; never polled."""

    fd: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SdNotifyProbe(ProbeSchedule):
    """Ready when the service sends ``READY=1`` to its ``NOTIFY_SOCKET``; never polled.

    ``watchdog`` (seconds), when set, is how long the service may go without
    a ``WATCHDOG=1`` once ready before it counts as failing its liveness
    check; the service is told it as ``WATCHDOG_USEC``. See sdnotify.py.
    """

    watchdog: float | None = None


#: A ready or health check: one type per kind, for ``match`` with ``assert_never``.
Probe: TypeAlias = TcpProbe | HttpProbe | ExecProbe | NotifyFdProbe | SdNotifyProbe


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between restarts, in seconds: initial * factor**n, up to max."""

    initial: float = 0.1
    max: float = 30.0
    factor: float = 2.0
    reset_after: float = 30.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Cgroup limits of a service; None means no limit."""

    memory: int | None = None
    cpu: float | None = None
    pids: int | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Capability names (``NET_ADMIN``, or ``ALL``) to drop from and add to the set."""

    drop: tuple[str, ...] = ()
    add: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Namespaces:
    """Per-service isolation: the ``namespaces:`` key."""

    private_tmp: bool = False
    read_only_paths: tuple[str, ...] = ()
    hidden_paths: tuple[str, ...] = ()
    network: Literal["host", "none"] = "host"
    pid: Literal["host", "private"] = "host"


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a scheduled oneshot runs: the ``schedule:`` key.

    ``expression`` is five cron fields, a macro (``@daily``) or ``@every
    DURATION``, as written; ``timezone`` None means the container's (``TZ``,
    else UTC). tinit/schedule.py computes the times.
    """

    expression: str
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class LogRotation:
    """When a ``file:`` output is rotated, and how many old files are kept.

    Before a write would take the file past ``max_size`` bytes it becomes
    ``PATH.1`` (``PATH.1`` becomes ``PATH.2``, and so on), ``PATH.keep`` is
    dropped and a new ``PATH`` is started (tinit/rotation.py).
    """

    max_size: int
    keep: int = DEFAULT_ROTATE_KEEP


@dataclass(frozen=True, slots=True)
class Service:
    """One service, every default filled in.

    ``command`` is the exact argv: a list as given, a string shlex-split, and
    with ``shell`` ``("/bin/sh", "-c", string)``; ``source_command`` is the
    command as written, after ``${}`` expansion. ``env`` is the ``env:`` key
    alone, ``environment`` the one to run with: tinit's own (unless
    ``clear_env``), then each ``env_file``, then ``env``. Relative paths in the
    file are made absolute from the config file's directory. ``stdin`` None
    means /dev/null; ``depends_on`` maps each dependency to its condition.
    """

    name: str
    command: tuple[str, ...]
    source_command: str | tuple[str, ...]
    shell: bool
    workdir: str | None
    user: str | None
    group: str | None
    umask: int | None
    env: Mapping[str, str]
    env_file: tuple[str, ...]
    clear_env: bool
    environment: Mapping[str, str]
    stdin: str | None
    output: str
    oneshot: bool
    restart: Restart
    success_exit_codes: frozenset[int]
    backoff: Backoff
    max_restarts: int | None
    critical: bool
    depends_on: Mapping[str, Condition]
    ready: Probe | None
    health: Probe | None
    stop_signal: int
    stop_timeout: float
    limits: Limits
    oom_group: bool
    capabilities: Capabilities
    no_new_privs: bool
    namespaces: Namespaces
    # -- how many, and whether at start (``disabled``, ``replicas``)
    #: defined but not started until ``tinit start``; dependents don't wait for it
    disabled: bool = False
    #: the ``replicas:`` key as written (in ``Config.replicated``); an instance is one: 1
    replicas: int = 1
    #: the service an instance was made from (``worker`` for ``worker-2``), or None
    replica_of: str | None = None
    #: the instance's number, 1-based (its ``TINIT_REPLICA``), or None
    replica: int | None = None
    # -- scheduled jobs: a oneshot run again at set times
    schedule: Schedule | None = None
    #: a scheduled job also runs once when it starts, before its first set time
    run_at_start: bool = False
    #: fds tinit was handed that this service gets, from 3 in this order:
    #: numbers, or socket-activation names (listenfds.py)
    inherit_fds: tuple[int | str, ...] = ()
    #: rotation of a ``file:`` output; None for other outputs, or switched off
    log_rotation: LogRotation | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The ``settings:`` section."""

    shutdown_timeout: float = 9.0
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    output: str = "prefix"
    cgroups: Literal["auto", "required", "off"] = "auto"
    control_socket: str | None = "/run/tinit/control.sock"
    health_listen: tuple[str, int] | None = None
    forward_signals: tuple[int, ...] = DEFAULT_FORWARD
    exit_code_remap: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    isolate: bool | Literal["net"] = False
    #: the rotation of every service whose output is a file, unless it sets its own
    log_rotation: LogRotation | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """A valid config file. ``path`` and ``warnings`` take no part in equality."""

    path: str = field(compare=False)
    version: int
    settings: Settings
    services: Mapping[str, Service]
    #: each replicated service as written, by its base name, with ``${TINIT_REPLICA}``
    #: left unexpanded (see ``loader``); the normalized document is written from it
    replicated: Mapping[str, Service] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
