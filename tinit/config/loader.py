"""The loader: a config file's YAML in, a checked Config out, every mistake reported.

``load_config`` reads a services.yaml and returns a ``Config``, or raises
``ConfigError`` listing every problem in the file at once, each located by
line and column. All validation lives here; the rest of tinit trusts a
``Config``. This module imports neither trio nor (until a file is read) yaml,
so the client commands start fast.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, TypedDict, TypeVar, assert_never

from tinit.config._units import (
    did_you_mean,
    format_duration,
    format_signal,
    parse_address,
    parse_capability,
    parse_duration,
    parse_env_file,
    parse_http_url,
    parse_output,
    parse_signal,
    parse_size,
    parse_umask,
)
from tinit.config.model import (
    CGROUPS,
    CONDITIONS,
    DEFAULT_FORWARD,
    LOG_FORMATS,
    LOG_LEVELS,
    NETWORKS,
    PIDS,
    PROBE_KINDS,
    RESTARTS,
    Backoff,
    Capabilities,
    Condition,
    Config,
    ExecProbe,
    HttpProbe,
    Limits,
    Namespaces,
    NotifyFdProbe,
    Probe,
    ProbeKind,
    Service,
    Settings,
    TcpProbe,
)
from tinit.errors import ConfigError, Problem

if TYPE_CHECKING:
    import yaml

    from tinit.config._yamlnodes import Entry, Fields, Reader

__all__ = ["load_config", "parse_config"]

T = TypeVar("T")

SERVICE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: cgroup v2 interface files are CONTROLLER.KEY: a service cgroup can't share such a name
_CGROUP_FILE_PREFIXES: Final = frozenset(
    {"cgroup", "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc", "irq"}
)
MIN_MEMORY: Final = 4096
# Signals tinit acts on itself (shut down, reload, reap), or that no process can catch.
UNFORWARDABLE: Final = frozenset(
    {
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGQUIT,
        signal.SIGHUP,
        signal.SIGCHLD,
        signal.SIGKILL,
        signal.SIGSTOP,
        signal.SIGRTMIN + 3,
    }
)


def load_config(
    path: str,
    *,
    environ: Mapping[str, str] | None = None,
    offline: bool = False,
    at_run: bool = False,
) -> Config:
    """Read and validate the config file at ``path``.

    ``environ`` (default ``os.environ``) expands ``${VAR}`` and is the base
    environment of the services. ``offline`` skips the checks against this
    machine: commands on PATH, users and groups. ``at_run`` reads it for
    ``tinit run``, where a command's unset ``${VAR}`` is an error, not a
    warning. Raises ``ConfigError`` with every problem found; warnings come
    back in ``Config.warnings``.
    """
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigError([Problem(path, 0, 0, "", f"can't read it: {exc.strerror}")]) from None
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        message = f"is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})"
        raise ConfigError([Problem(path, 0, 0, "", message)]) from None
    return parse_config(text, filename=path, environ=environ, offline=offline, at_run=at_run)


def parse_config(
    text: str,
    *,
    filename: str,
    environ: Mapping[str, str] | None = None,
    offline: bool = False,
    at_run: bool = False,
) -> Config:
    """Like ``load_config``, from the text of a file named ``filename``.

    Relative paths in the config are relative to ``filename``'s directory.
    """
    from tinit.config._yamlnodes import Reader

    reader = Reader(filename, os.environ if environ is None else environ, at_run=at_run)
    base = os.path.dirname(os.path.abspath(filename))
    config = _Loader(reader, base, offline).load(text)
    problems = sorted(dict.fromkeys(reader.problems), key=lambda p: (p.line, p.column))
    if config is None or any(not p.warning for p in problems):
        raise ConfigError(problems)
    return replace(config, warnings=tuple(problems))


# -- reading


TOP_KEYS: Final = ("version", "settings", "services")
SETTINGS_KEYS: Final = tuple(Settings.__dataclass_fields__)
SERVICE_KEYS: Final = tuple(
    key
    for key in Service.__dataclass_fields__
    if key not in ("name", "source_command", "environment")
)
PROBE_KEYS: Final = (*PROBE_KINDS, "interval", "timeout", "start_timeout", "failures")
BACKOFF_KEYS: Final = tuple(Backoff.__dataclass_fields__)
LIMITS_KEYS: Final = tuple(Limits.__dataclass_fields__)
CAPABILITIES_KEYS: Final = tuple(Capabilities.__dataclass_fields__)
NAMESPACES_KEYS: Final = tuple(Namespaces.__dataclass_fields__)
_BACKOFF: Final = Backoff()

Read = Callable[["yaml.Node", str], T]
Command = tuple[tuple[str, ...], str | tuple[str, ...]]
_Dependency = tuple[Condition, "yaml.Node", "yaml.Node | None"]  # condition, name, condition


@dataclass(frozen=True, slots=True)
class _Run:
    """Where the programs of a service are looked up: its PATH and its working directory."""

    environment: Mapping[str, str]
    workdir: str | None


class _Schedule(TypedDict):
    """The fields of ``ProbeSchedule``, read before the probe's kind is built."""

    interval: float
    timeout: float
    start_timeout: float | None
    failures: int


@dataclass(frozen=True, slots=True)
class _Draft:
    """A service as read, with the nodes the checks across services report at."""

    service: Service
    name_node: yaml.Node
    dependencies: dict[str, tuple[yaml.Node, yaml.Node | None]]


class _Loader:
    """Reads one file's node tree into a Config, recording problems on the reader."""

    def __init__(self, reader: Reader, base: str, offline: bool) -> None:
        self.reader, self.base, self.offline = reader, base, offline
        self.settings = Settings()
        self.shutdown_timeout_node: yaml.Node | None = None

    def load(self, text: str) -> Config | None:
        """The Config, or None when the file is too broken to say more."""
        r = self.reader
        root = r.compose(text)
        if root is None:
            if not r.problems:
                message = "is empty; a config needs 'version: 1' and 'services:'"
                r.problems.append(Problem(r.file, 1, 1, "", message))
            return None
        if not r.is_mapping(root):
            got = r.describe_node(root)
            r.report(root, "", f"expected a mapping of version, settings and services, got {got}")
            return None
        top = r.fields(root, "", TOP_KEYS)
        if top.node("version") is None:
            r.report(root, "version", "is missing; add 'version: 1' at the top of the file")
        top.get("version", self._version, 1)
        self.settings = top.get("settings", self._settings, Settings())
        if top.node("services") is None:
            r.report(root, "services", "is missing; add a services: mapping with one service")
        entries: dict[str, Entry] = top.get("services", self._service_entries, {})
        drafts = {name: self._service(name, entry) for name, entry in entries.items()}
        _check_dependencies(r, drafts)
        if not _check_cycles(r, drafts):
            _check_shutdown_budget(r, drafts, self.settings, self.shutdown_timeout_node)
        services = {name: draft.service for name, draft in drafts.items()}
        return Config(r.file, 1, self.settings, MappingProxyType(services))

    def _version(self, node: yaml.Node, path: str) -> int:
        r = self.reader
        value = r.scalar(node, path, "1")
        if not isinstance(value, int) or isinstance(value, bool):
            r.fail(node, path, f"expected 1, got {self.reader.describe_node(node)}")
        if value != 1:
            r.fail(node, path, f"{value} is not supported; this tinit reads version 1")
        return value

    def _settings(self, node: yaml.Node, path: str) -> Settings:
        r = self.reader
        f = r.fields(node, path, SETTINGS_KEYS)
        self.shutdown_timeout_node = f.node("shutdown_timeout")
        default = Settings()
        return Settings(
            shutdown_timeout=f.get("shutdown_timeout", self._duration(positive=True), 9.0),
            log_format=f.get("log_format", lambda n, p: r.choice(n, p, LOG_FORMATS), "console"),
            log_level=f.get("log_level", lambda n, p: r.choice(n, p, LOG_LEVELS), "info"),
            output=f.get("output", self._output, "prefix"),
            cgroups=f.get("cgroups", self._cgroups, "auto"),
            control_socket=f.nullable("control_socket", self._absolute, default.control_socket),
            health_listen=f.nullable("health_listen", self._listen_address, None),
            forward_signals=f.get("forward_signals", self._forward_signals, DEFAULT_FORWARD),
            exit_code_remap=f.get("exit_code_remap", self._remap, default.exit_code_remap),
            isolate=f.get("isolate", self._isolate, False),
        )

    def _cgroups(self, node: yaml.Node, path: str) -> Literal["auto", "required", "off"]:
        r = self.reader
        if r.scalar(node, path, "auto, required or off") is True:
            r.fail(node, path, "true is ambiguous here; write auto or required")
        return r.choice(node, path, CGROUPS, booleans={False: "off"})

    def _forward_signals(self, node: yaml.Node, path: str) -> tuple[int, ...]:
        r = self.reader
        numbers: list[int] = []
        for number, item, item_path in r.items(node, path, self._signal_item):
            name = format_signal(number)
            if number in (signal.SIGKILL, signal.SIGSTOP):
                r.report(item, item_path, f"{name} can't be caught, so it can't be forwarded")
            elif number in UNFORWARDABLE:
                r.report(item, item_path, f"{name} can't be forwarded: tinit acts on it itself")
            elif number in numbers:
                r.report(item, item_path, f"{name} is listed twice", warning=True)
            else:
                numbers.append(number)
        return tuple(numbers)

    def _signal_item(self, node: yaml.Node, path: str) -> tuple[int, yaml.Node, str]:
        return self._signal(node, path), node, path

    def _remap(self, node: yaml.Node, path: str) -> Mapping[int, int]:
        remap = self.reader.values(node, path, self._remap_entry)
        return MappingProxyType({int(code): new for code, new in remap.items()})

    def _remap_entry(self, entry: Entry, path: str) -> int:
        r = self.reader
        if not entry.key.isdigit() or int(entry.key) > 255:
            r.fail(entry.key_node, path, f"{entry.key!r} is not an exit code (0 to 255)")
        return r.integer(entry.node, f"{path}.{entry.key}", 0, 255)

    def _isolate(self, node: yaml.Node, path: str) -> bool | Literal["net"]:
        value = self.reader.scalar(node, path, "true, false or net")
        if isinstance(value, bool):
            return value
        if value == "net":
            return "net"
        hint = did_you_mean(value, ["net"]) if isinstance(value, str) else ""
        got = self.reader.describe_node(node)
        self.reader.fail(node, path, f"expected true, false or net, got {got}{hint}")

    # -- services

    def _service_entries(self, node: yaml.Node, path: str) -> dict[str, Entry]:
        r = self.reader
        entries = r.pairs(node, path)
        if not entries:
            r.report(node, path, "has no services; define at least one")
        for name, entry in entries.items():
            if not SERVICE_NAME.fullmatch(name):
                rule = "use letters, digits, '_', '.' and '-', starting with a letter or digit"
                r.report(entry.key_node, path, f"{name!r} is not a valid name; {rule}")
            elif name.split(".", 1)[0] in _CGROUP_FILE_PREFIXES and "." in name:
                why = "names like it are taken by cgroup interface files (ROOT/services/NAME)"
                r.report(entry.key_node, path, f"{name!r} can't name a service: {why}; rename it")
        return entries

    def _service(self, name: str, entry: Entry) -> _Draft:
        from tinit.config._yamlnodes import Fields, Invalid

        r = self.reader
        path = f"services.{name}"
        try:
            f = r.fields(entry.node, path, SERVICE_KEYS)
            if "command" not in f.entries:
                r.report(entry.key_node, f"{path}.command", "is missing; every service needs one")
        except Invalid:  # reported; the checks across services see it as empty
            f = Fields(r, {}, path)
        oneshot = f.get("oneshot", r.boolean, False)
        env: dict[str, str] = f.get("env", self._env, {})
        env_files: tuple[tuple[str, ...], dict[str, str]] = ((), {})
        env_file, file_env = f.get("env_file", self._env_files, env_files)
        clear_env = f.get("clear_env", r.boolean, False)
        environment = {**({} if clear_env else r.environ), **file_env, **env}
        run = _Run(environment, f.nullable("workdir", self._workdir, None))
        shell = f.get("shell", r.boolean, False)
        no_command: Command = ((), ())
        command, source = f.get("command", lambda n, p: self._command(n, p, shell, run), no_command)
        dependencies: dict[str, _Dependency] = f.get("depends_on", self._depends_on, {})
        service = Service(
            name=name,
            command=command,
            source_command=source,
            shell=shell,
            workdir=run.workdir,
            user=f.nullable("user", lambda n, p: self._account(n, p, "user"), None),
            group=f.nullable("group", lambda n, p: self._account(n, p, "group"), None),
            umask=f.nullable("umask", self._umask, None),
            env=MappingProxyType(env),
            env_file=env_file,
            clear_env=clear_env,
            environment=MappingProxyType(environment),
            stdin=f.nullable("stdin", self._path, None),
            output=f.get("output", self._output, self.settings.output),
            oneshot=oneshot,
            restart=f.get("restart", lambda n, p: r.choice(n, p, RESTARTS), "on-failure"),
            success_exit_codes=f.get("success_exit_codes", self._exit_codes, frozenset({0})),
            backoff=f.get("backoff", self._backoff, _BACKOFF),
            max_restarts=f.nullable("max_restarts", lambda n, p: r.integer(n, p, 0), 10),
            critical=f.get("critical", r.boolean, False),
            depends_on=MappingProxyType({dep: c for dep, (c, _, _) in dependencies.items()}),
            ready=f.nullable("ready", lambda n, p: self._probe(n, p, run, health=False), None),
            health=f.nullable("health", lambda n, p: self._probe(n, p, run, health=True), None),
            stop_signal=f.get("stop_signal", self._signal, int(signal.SIGTERM)),
            stop_timeout=f.get("stop_timeout", self._duration(positive=False), 5.0),
            limits=f.get("limits", self._limits, Limits()),
            oom_group=f.get("oom_group", r.boolean, False),
            capabilities=f.get("capabilities", self._capabilities, Capabilities()),
            no_new_privs=f.get("no_new_privs", r.boolean, False),
            namespaces=f.get("namespaces", self._namespaces, Namespaces()),
        )
        nodes = {dep: (name_node, node) for dep, (_, name_node, node) in dependencies.items()}
        self._check_network(service, f)
        return _Draft(self._check_oneshot(service, f), entry.key_node, nodes)

    def _check_network(self, service: Service, f: Fields) -> None:
        """tcp and http probes run in tinit's network: none of them reaches `network: none`."""
        if service.namespaces.network != "none":
            return
        for key, probe in (("ready", service.ready), ("health", service.health)):
            match probe:
                case TcpProbe():
                    what = "a tcp"
                case HttpProbe():
                    what = "an http"
                case ExecProbe() | NotifyFdProbe() | None:
                    continue
                case _:
                    assert_never(probe)
            why = (
                f"{what} probe connects from tinit's network, which can't"
                " reach a service with namespaces.network: none"
            )
            fix = "use an exec or notify_fd probe, or drop network: none"
            self.reader.report(f.node(key), f"{f.path}.{key}", f"{why}; {fix}")

    def _check_oneshot(self, service: Service, f: Fields) -> Service:
        if not service.oneshot:
            return service
        r = self.reader
        if service.health is not None:
            why = "a oneshot runs to completion, so it can't have a health check"
            r.report(f.key_node("health"), f"{f.path}.health", f"{why}; remove health or oneshot")
        if service.restart == "always":
            why = "a oneshot runs to completion, so it can't restart always"
            r.report(f.node("restart"), f"{f.path}.restart", f"{why}; use on-failure or never")
        if f.node("restart") is None:
            return replace(service, restart="never")
        return service

    def _command(self, node: yaml.Node, path: str, shell: bool, run: _Run) -> Command:
        r = self.reader
        source: str | tuple[str, ...]
        if r.is_list(node):
            if shell:
                r.fail(node, path, "shell: true needs the command as one string, not a list")
            argv = source = self._argv(node, path, runtime=True)
            first = node.value[0]
        else:
            source = r.string(node, path, runtime=True)
            argv = ("/bin/sh", "-c", source) if shell else self._split(source, node, path)
            first = node
        if not ("${" in argv[0] and r.unresolved(first)):
            self._check_program(argv[0], first, path, run)
        return argv, source

    def _argv(self, node: yaml.Node, path: str, *, runtime: bool = False) -> tuple[str, ...]:
        """An argv from a list (exact) or a string (split as a shell would, without one)."""
        from tinit.config._yamlnodes import Invalid

        r = self.reader
        if not r.is_list(node):
            return self._split(r.string(node, path, runtime=runtime), node, path)
        argv = r.items(node, path, lambda n, p: r.text(n, p, runtime=runtime))
        if not node.value:
            r.fail(node, path, "is an empty list; give at least the program")
        if len(argv) < len(node.value):
            raise Invalid  # an item is reported; the rest is no program to check
        return tuple(argv)

    def _split(self, text: str, node: yaml.Node, path: str) -> tuple[str, ...]:
        try:
            words = shlex.split(text)
        except ValueError as exc:
            self.reader.fail(node, path, f"can't be split into words ({str(exc).lower()})")
        if not words:
            self.reader.fail(node, path, "has no words; give at least the program")
        return tuple(words)

    def _env(self, node: yaml.Node, path: str) -> dict[str, str]:
        return self.reader.values(node, path, self._env_entry)

    def _env_entry(self, entry: Entry, path: str) -> str:
        if not entry.key or "=" in entry.key or "\0" in entry.key:
            self.reader.fail(entry.key_node, path, f"{entry.key!r} is not a valid variable name")
        return self.reader.text(entry.node, f"{path}.{entry.key}")

    def _env_files(self, node: yaml.Node, path: str) -> tuple[tuple[str, ...], dict[str, str]]:
        r = self.reader
        if r.is_null(node):
            return (), {}
        files = (
            r.items(node, path, self._env_file) if r.is_list(node) else [self._env_file(node, path)]
        )
        values: dict[str, str] = {}
        for _, file_values in files:
            values.update(file_values)
        return tuple(name for name, _ in files), values

    def _env_file(self, node: yaml.Node, path: str) -> tuple[str, dict[str, str]]:
        r = self.reader
        written = r.string(node, path)
        name = self._resolve(written)
        try:
            with open(name, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            message = f"can't read env file {written!r}: {reason}"
            if not self.offline:
                r.fail(node, path, message)
            r.report(node, path, f"{message} (left out: checking offline)", warning=True)
            return name, {}
        values, problems = parse_env_file(text)
        for line, problem in problems:
            r.report(node, path, f"{written}:{line}: {problem}")
        return name, values

    def _depends_on(self, node: yaml.Node, path: str) -> dict[str, _Dependency]:
        """name -> (condition, name node, condition node); a list means started."""
        r = self.reader
        if not r.is_list(node) and not r.is_mapping(node) and not r.is_null(node):
            got = r.describe_node(node)
            r.fail(
                node, path, f"expected a list of names or a mapping of name: condition, got {got}"
            )
        if not r.is_list(node):
            return r.values(node, path, self._dependency)
        result: dict[str, _Dependency] = {}
        for name, name_node in r.items(node, path, self._name):
            if name in result:
                r.report(name_node, path, f"{name!r} is listed twice", warning=True)
            result[name] = ("started", name_node, None)
        return result

    def _dependency(self, entry: Entry, path: str) -> _Dependency:
        condition = self.reader.choice(entry.node, f"{path}.{entry.key}", CONDITIONS)
        return condition, entry.key_node, entry.node

    def _name(self, node: yaml.Node, path: str) -> tuple[str, yaml.Node]:
        return self.reader.string(node, path), node

    def _exit_codes(self, node: yaml.Node, path: str) -> frozenset[int]:
        r = self.reader
        if not r.is_list(node):
            return frozenset({r.integer(node, path, 0, 255)})
        codes = r.items(node, path, lambda n, p: r.integer(n, p, 0, 255))
        if not node.value:
            r.fail(node, path, "is empty; list at least one code, like [0]")
        return frozenset(codes)

    def _backoff(self, node: yaml.Node, path: str) -> Backoff:
        r = self.reader
        f = r.fields(node, path, BACKOFF_KEYS)
        backoff = Backoff(
            initial=f.get("initial", self._duration(positive=False), _BACKOFF.initial),
            max=f.get("max", self._duration(positive=True), _BACKOFF.max),
            factor=f.get("factor", self._factor, _BACKOFF.factor),
            reset_after=f.get("reset_after", self._duration(positive=True), _BACKOFF.reset_after),
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

    def _probe(self, node: yaml.Node, path: str, run: _Run, *, health: bool) -> Probe:
        r = self.reader
        f = r.fields(node, path, PROBE_KEYS)
        kinds = [kind for kind in PROBE_KINDS if kind in f.entries]
        if not kinds:
            r.fail(node, path, "needs one of tcp, http, exec or notify_fd")
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
        if health and kind == "notify_fd":
            why = "notify_fd can only tell when a service is ready"
            r.report(f.key_node("notify_fd"), f.path, f"{why}; use it under ready")

    def _exec(self, node: yaml.Node, path: str, run: _Run) -> tuple[str, ...]:
        argv = self._argv(node, path)
        self._check_program(
            argv[0], node.value[0] if self.reader.is_list(node) else node, path, run
        )
        return argv

    def _notify_fd(self, node: yaml.Node, path: str) -> int:
        fd = self.reader.integer(node, path)
        if fd < 3:
            why = "0, 1 and 2 are stdin, stdout and stderr"
            self.reader.fail(node, path, f"must be 3 or more ({why}), got {fd}")
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

    # -- scalars

    def _duration(self, *, positive: bool) -> Read[float]:
        def read(node: yaml.Node, path: str) -> float:
            seconds = self.reader.parsed(node, path, parse_duration, "a duration")
            if positive and seconds <= 0:
                self.reader.fail(node, path, f"must be more than 0, got {node.value}")
            return seconds

        return read

    def _signal(self, node: yaml.Node, path: str) -> int:
        return self.reader.parsed(node, path, parse_signal, "a signal")

    def _output(self, node: yaml.Node, path: str) -> str:
        return self.reader.parsed(node, path, parse_output, "an output mode")

    def _workdir(self, node: yaml.Node, path: str) -> str:
        workdir = self._path(node, path)
        if not self.offline and not os.path.isdir(workdir):
            why = "it must exist when the service starts"
            self.reader.report(node, path, f"no directory {workdir!r} here; {why}", warning=True)
        return workdir

    def _path(self, node: yaml.Node, path: str) -> str:
        return self._resolve(self.reader.string(node, path))

    def _resolve(self, path: str) -> str:
        """Relative paths in the config are relative to the config file's directory."""
        return os.path.normpath(os.path.join(self.base, path))

    def _absolute(self, node: yaml.Node, path: str) -> str:
        value = self.reader.string(node, path)
        if not os.path.isabs(value):
            self.reader.fail(node, path, f"{value!r} is not an absolute path")
        return value

    def _umask(self, node: yaml.Node, path: str) -> int:
        mode = self.reader.parsed(node, path, parse_umask, "an octal mode")
        text = str(node.value)
        if text.isdigit() and not text.startswith("0") and mode > 7:
            message = f'{text} is read as a decimal number; write "0{text}" if you meant octal'
            self.reader.report(node, path, message, warning=True)
        return mode

    def _account(self, node: yaml.Node, path: str, kind: Literal["user", "group"]) -> str:
        r = self.reader
        value = r.scalar(node, path, f"a {kind} name or id")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return str(value)
        if not isinstance(value, str) or not value:
            r.fail(
                node, path, f"expected a {kind} name or id, got {self.reader.describe_node(node)}"
            )
        if value.isdigit() or self.offline or _account_exists(kind, value):
            return value
        hint = did_you_mean(value, _account_names(kind))
        fix = "create it in the image, or give a numeric id"
        r.fail(node, path, f"unknown {kind} {value!r} on this machine{hint}; {fix}")

    def _check_program(self, program: str, node: yaml.Node, path: str, run: _Run) -> None:
        if self.offline:
            return
        r = self.reader
        if "/" not in program:
            search = run.environment.get("PATH", os.defpath)
            if shutil.which(program, path=search) is None:
                r.report(node, path, f"command {program!r} not found on PATH ({search})")
            return
        if not os.path.isabs(program) and run.workdir is None:
            return  # relative to wherever tinit runs: only the run time can tell
        target = os.path.join(run.workdir or "/", program)
        if not os.path.exists(target):
            r.report(node, path, f"command {program!r} does not exist")
        elif os.path.isdir(target):
            r.report(node, path, f"command {program!r} is a directory")
        elif not os.access(target, os.X_OK):
            r.report(node, path, f"command {program!r} is not executable; chmod +x it")


def _account_exists(kind: Literal["user", "group"], name: str) -> bool:
    try:
        if kind == "user":
            pwd.getpwnam(name)
        else:
            grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _account_names(kind: Literal["user", "group"]) -> list[str]:
    if kind == "user":
        return [entry.pw_name for entry in pwd.getpwall()]
    return [entry.gr_name for entry in grp.getgrall()]


# -- checks across services


def _check_dependencies(r: Reader, drafts: dict[str, _Draft]) -> None:
    for name, draft in drafts.items():
        path = f"services.{name}.depends_on"
        for dep, (name_node, condition_node) in draft.dependencies.items():
            condition = draft.service.depends_on[dep]
            target = drafts.get(dep)
            if dep == name:
                r.report(name_node, path, "a service can't depend on itself")
            elif target is None:
                hint = did_you_mean(dep, [n for n in drafts if n != name])
                r.report(name_node, path, f"unknown service {dep!r}{hint}")
            elif condition == "completed" and not target.service.oneshot:
                why = f"{dep} is not a oneshot, so it never completes"
                r.report(condition_node, f"{path}.{dep}", f"{why}; wait for started or ready")
            elif condition == "ready" and target.service.ready is None:
                why = f"{dep} has no ready probe, so it is ready as soon as it starts"
                r.report(condition_node, f"{path}.{dep}", why, warning=True)


def _check_cycles(r: Reader, drafts: dict[str, _Draft]) -> bool:
    """Report each dependency cycle once, from its first service in the file."""
    order = {name: index for index, name in enumerate(drafts)}
    graph = {
        name: [dep for dep in draft.service.depends_on if dep in drafts and dep != name]
        for name, draft in drafts.items()
    }
    done: set[str] = set()
    stack: list[str] = []
    cycles: set[tuple[str, ...]] = set()

    def visit(name: str) -> None:
        stack.append(name)
        for dep in graph[name]:
            if dep in stack:
                cycle = stack[stack.index(dep) :]
                first = min(range(len(cycle)), key=lambda i: order[cycle[i]])
                cycles.add(tuple(cycle[first:] + cycle[:first]))
            elif dep not in done:
                visit(dep)
        stack.pop()
        done.add(name)

    for name in drafts:
        if name not in done:
            visit(name)
    for cycle in sorted(cycles, key=lambda c: [order[n] for n in c]):
        node = drafts[cycle[0]].dependencies[cycle[1 % len(cycle)]][0]
        loop = " -> ".join((*cycle, cycle[0]))
        r.report(node, f"services.{cycle[0]}.depends_on", f"dependency cycle: {loop}")
    return bool(cycles)


def _check_shutdown_budget(
    r: Reader, drafts: dict[str, _Draft], settings: Settings, node: yaml.Node | None
) -> None:
    """Warn when stopping the longest dependency chain, one by one, can't fit.

    Oneshots count for nothing: by the time of a shutdown they have usually ended.
    """
    chains: dict[str, tuple[float, tuple[str, ...]]] = {}

    def chain(name: str) -> tuple[float, tuple[str, ...]]:
        if name not in chains:
            service = drafts[name].service
            deps = [d for d in service.depends_on if d in drafts and d != name]
            below_total, below = max((chain(d) for d in deps), default=(0.0, ()))
            if service.oneshot:
                chains[name] = (below_total, below)
            else:
                chains[name] = (service.stop_timeout + below_total, (name, *below))
        return chains[name]

    total, names = max((chain(name) for name in drafts), default=(0.0, ()))
    budget = settings.shutdown_timeout
    if total <= budget:
        return
    whose = "the sum of their stop_timeout" if len(names) > 1 else "its stop_timeout"
    message = (
        f"stopping {' -> '.join(names)} can take {format_duration(total)} ({whose}), more than "
        f"settings.shutdown_timeout ({format_duration(budget)}); raise it or lower stop_timeout"
    )
    if node is not None:
        r.report(node, "settings.shutdown_timeout", message, warning=True)
    else:
        r.report(drafts[names[0]].name_node, f"services.{names[0]}", message, warning=True)
