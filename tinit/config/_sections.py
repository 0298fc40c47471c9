"""Reading the nested sections of a service: probes, backoff, limits, and the rest.

Each section is a mapping with keys of its own; this module reads each into
its frozen model value, and reports what doesn't fit the section: two kinds
in one probe, a key that belongs to the other kind of probe, a max backoff
below the initial one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypedDict, assert_never

from tinit.config._scalars import Run, ScalarReader
from tinit.config._units import (
    format_duration,
    parse_address,
    parse_capability,
    parse_http_url,
    parse_size,
)
from tinit.config.model import (
    DEFAULT_ROTATE_KEEP,
    MAX_ROTATE_KEEP,
    MAX_ROTATE_SIZE,
    MIN_ROTATE_SIZE,
    NETWORKS,
    PIDS,
    PROBE_KINDS,
    Backoff,
    Capabilities,
    ExecProbe,
    HttpProbe,
    Limits,
    LogRotation,
    Namespaces,
    NotifyFdProbe,
    Probe,
    ProbeKind,
    SdNotifyProbe,
    TcpProbe,
)

if TYPE_CHECKING:
    import yaml

    from tinit.config._yamlnodes import Fields

MIN_MEMORY: Final = 4096
#: a descriptor every process may have open: the lowest usual RLIMIT_NOFILE is 1024
MAX_NOTIFY_FD: Final = 1023
PROBE_KEYS: Final = (
    *PROBE_KINDS,
    "interval",
    "timeout",
    "start_timeout",
    "failures",
    "watchdog",
)
#: the shortest ``watchdog``: a service pings at half of it, tinit checks a few times a second
MIN_WATCHDOG: Final = 0.1
BACKOFF_KEYS: Final = tuple(Backoff.__dataclass_fields__)
LIMITS_KEYS: Final = tuple(Limits.__dataclass_fields__)
CAPABILITIES_KEYS: Final = tuple(Capabilities.__dataclass_fields__)
NAMESPACES_KEYS: Final = tuple(Namespaces.__dataclass_fields__)
ROTATION_KEYS: Final = tuple(LogRotation.__dataclass_fields__)
DEFAULT_BACKOFF: Final = Backoff()


class _Schedule(TypedDict):
    """The fields of ``ProbeSchedule``, read before the probe's kind is built."""

    interval: float
    timeout: float
    start_timeout: float | None
    failures: int


class SectionReader(ScalarReader):
    """Reads a service's nested mappings into model values, recording problems on the reader."""

    def _backoff(self, node: yaml.Node, path: str) -> Backoff:
        r = self.reader
        f = r.fields(node, path, BACKOFF_KEYS)
        backoff = Backoff(
            initial=f.get("initial", self._duration(positive=False), DEFAULT_BACKOFF.initial),
            max=f.get("max", self._duration(positive=True), DEFAULT_BACKOFF.max),
            factor=f.get("factor", self._factor, DEFAULT_BACKOFF.factor),
            reset_after=f.get(
                "reset_after", self._duration(positive=True), DEFAULT_BACKOFF.reset_after
            ),
        )
        if backoff.max < backoff.initial:
            initial, maximum = format_duration(backoff.initial), format_duration(backoff.max)
            message = f"{maximum} is less than initial ({initial}); raise max or lower initial"
            r.report(f.node("max") or f.node("initial"), f"{path}.max", message)
        return backoff

    def _factor(self, node: yaml.Node, path: str) -> float:
        factor = self.reader.number(node, path)
        if factor < 1:
            self.reader.fail(node, path, f"must be 1 or more, got {node.value}")
        return factor

    def _probe(self, node: yaml.Node, path: str, run: Run, *, health: bool) -> Probe:
        r = self.reader
        f = r.fields(node, path, PROBE_KEYS)
        kinds = [kind for kind in PROBE_KINDS if kind in f.entries]
        if not kinds:
            r.fail(node, path, "needs one of tcp, http, exec, notify_fd or sd_notify")
        for extra in kinds[1:]:
            message = f"has both {kinds[0]} and {extra}; a probe checks one thing, so keep one"
            r.report(f.key_node(extra), path, message)
        self._check_probe_keys(f, kinds[0], health)
        # What the probe checks is read before its schedule (arguments are evaluated
        # in order), so that problems at one place keep their order. An invalid value
        # is an error, so its placeholder never leaves the loader.
        match kinds[0]:
            case "tcp":
                address = f.get("tcp", self._probe_address, ("", 0))
                return TcpProbe(address=address, **self._schedule(f, health))
            case "http":
                return HttpProbe(url=f.get("http", self._http, ""), **self._schedule(f, health))
            case "exec":
                no_argv: tuple[str, ...] = ()
                argv = f.get("exec", lambda n, p: self._exec(n, p, run), no_argv)
                return ExecProbe(argv=argv, **self._schedule(f, health))
            case "notify_fd":
                fd = f.get("notify_fd", self._notify_fd, -1)
                return NotifyFdProbe(fd=fd, **self._schedule(f, health))
            case "sd_notify":
                f.get("sd_notify", self._sd_notify, True)
                watchdog = f.nullable("watchdog", self._watchdog, None)
                return SdNotifyProbe(watchdog=watchdog, **self._schedule(f, health))
            case unknown:
                assert_never(unknown)

    def _schedule(self, f: Fields, health: bool) -> _Schedule:
        r = self.reader
        return _Schedule(
            interval=f.get("interval", self._duration(positive=True), 10.0 if health else 0.5),
            timeout=f.get("timeout", self._duration(positive=True), 2.0),
            start_timeout=None
            if health
            else f.nullable("start_timeout", self._duration(positive=True), 60.0),
            failures=f.get("failures", lambda n, p: r.integer(n, p, 1), 3) if health else 1,
        )

    def _check_probe_keys(self, f: Fields, kind: ProbeKind, health: bool) -> None:
        r = self.reader
        if health and "start_timeout" in f.entries:
            why = "a health check runs for the whole life of the service"
            r.report(f.key_node("start_timeout"), f.path, f"start_timeout is for ready only; {why}")
        if not health and "failures" in f.entries:
            why = "a ready probe is done at its first success"
            r.report(f.key_node("failures"), f.path, f"failures is for health only; {why}")
        if health and kind in ("notify_fd", "sd_notify"):
            why = f"{kind} can only tell when a service is ready"
            fix = "use it under ready" + (", with its watchdog" if kind == "sd_notify" else "")
            r.report(f.key_node(kind), f.path, f"{why}; {fix}")
        if "watchdog" in f.entries and (health or kind != "sd_notify"):
            why = "only a service that speaks sd_notify sends WATCHDOG=1"
            r.report(f.key_node("watchdog"), f.path, f"watchdog is for ready: sd_notify; {why}")

    def _sd_notify(self, node: yaml.Node, path: str) -> bool:
        if not self.reader.boolean(node, path):
            self.reader.fail(node, path, "must be true; to go without a ready probe drop ready")
        return True

    def _watchdog(self, node: yaml.Node, path: str) -> float:
        seconds = self._duration(positive=True)(node, path)
        if seconds < MIN_WATCHDOG:
            minimum = format_duration(MIN_WATCHDOG)
            self.reader.fail(node, path, f"must be {minimum} or more, got {node.value}")
        return seconds

    def _exec(self, node: yaml.Node, path: str, run: Run) -> tuple[str, ...]:
        argv = self._argv(node, path)
        if not self.reader.is_list(node):
            fix = "give the probe as a list, [sh, -c, '...'] to run it with a shell"
            self._check_shell_syntax(node.value, node, path, fix)
        self._check_program(
            argv[0], node.value[0] if self.reader.is_list(node) else node, path, run
        )
        return argv

    def _notify_fd(self, node: yaml.Node, path: str) -> int:
        fd = self.reader.integer(node, path)
        if fd < 3:
            why = "0, 1 and 2 are stdin, stdout and stderr"
            self.reader.fail(node, path, f"must be 3 or more ({why}), got {fd}")
        if fd > MAX_NOTIFY_FD:
            self.reader.fail(node, path, f"must be {MAX_NOTIFY_FD} or less, got {fd}")
        return fd

    def _http(self, node: yaml.Node, path: str) -> str:
        return self.reader.parsed(node, path, lambda v: parse_http_url(str(v)), "a URL")

    def _probe_address(self, node: yaml.Node, path: str) -> tuple[str, int]:
        return self.reader.parsed(node, path, lambda v: parse_address(v, "127.0.0.1"), "host:port")

    def _listen_address(self, node: yaml.Node, path: str) -> tuple[str, int]:
        return self.reader.parsed(node, path, lambda v: parse_address(v, "0.0.0.0"), "host:port")

    def _limits(self, node: yaml.Node, path: str) -> Limits:
        r = self.reader
        f = r.fields(node, path, LIMITS_KEYS)
        return Limits(
            memory=f.nullable("memory", self._memory, None),
            cpu=f.nullable("cpu", lambda n, p: r.number(n, p, positive=True), None),
            pids=f.nullable("pids", lambda n, p: r.integer(n, p, 1), None),
        )

    def _memory(self, node: yaml.Node, path: str) -> int:
        size = self.reader.parsed(node, path, parse_size, "a size")
        if size < MIN_MEMORY:
            message = f"must be at least 4K ({MIN_MEMORY} bytes), got {node.value}"
            self.reader.fail(node, path, message)
        return size

    def _capabilities(self, node: yaml.Node, path: str) -> Capabilities:
        r = self.reader
        f = r.fields(node, path, CAPABILITIES_KEYS)
        return Capabilities(
            drop=f.get("drop", self._capability_list, ()),
            add=f.get("add", self._capability_list, ()),
        )

    def _capability_list(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        r = self.reader
        names = r.items(node, path, lambda n, p: r.parsed(n, p, parse_capability, "a name"))
        return tuple(dict.fromkeys(names))

    def _namespaces(self, node: yaml.Node, path: str) -> Namespaces:
        r = self.reader
        f = r.fields(node, path, NAMESPACES_KEYS)
        return Namespaces(
            private_tmp=f.get("private_tmp", r.boolean, False),
            read_only_paths=f.get("read_only_paths", self._absolute_list, ()),
            hidden_paths=f.get("hidden_paths", self._absolute_list, ()),
            network=f.get("network", lambda n, p: r.choice(n, p, NETWORKS), "host"),
            pid=f.get("pid", lambda n, p: r.choice(n, p, PIDS), "host"),
        )

    def _absolute_list(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        return tuple(self.reader.items(node, path, self._absolute))

    def _log_rotation(self, node: yaml.Node, path: str) -> LogRotation:
        r = self.reader
        f = r.fields(node, path, ROTATION_KEYS)
        if f.node("max_size") is None:
            r.fail(node, f"{path}.max_size", "is missing; write the size a file rotates at (10M)")
        keep = f.get("keep", lambda n, p: r.integer(n, p, 1, MAX_ROTATE_KEEP), DEFAULT_ROTATE_KEEP)
        return LogRotation(max_size=f.get("max_size", self._rotate_size, 0), keep=keep)

    def _rotate_size(self, node: yaml.Node, path: str) -> int:
        size = self.reader.parsed(node, path, parse_size, "a size")
        if not MIN_ROTATE_SIZE <= size <= MAX_ROTATE_SIZE:
            bounds = f"between 4K ({MIN_ROTATE_SIZE} bytes) and 1T"
            self.reader.fail(node, path, f"must be {bounds}, got {node.value}")
        return size
