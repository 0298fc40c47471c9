"""The loader: a config file's YAML in, a checked Config out, every mistake reported.

``load_config`` reads a services.yaml and returns a ``Config``, or raises
``ConfigError`` listing every problem in the file at once, each located by
line and column. All validation lives in this package; the rest of tinit
trusts a ``Config``. This module reads the file, its settings and each
service's own keys; ``_sections`` reads the nested mappings (probes, backoff,
limits...), ``_scalars`` single values, and ``_graph`` checks the services
against each other. Nothing here imports trio, nor yaml until a file is read,
so the client commands start fast.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, assert_never

from tinit import signals
from tinit.config._bounded import MAX_SERVICES
from tinit.config._graph import Draft, check_cycles, check_dependencies, check_shutdown_budget
from tinit.config._replicas import ReplicaReader
from tinit.config._scalars import Run
from tinit.config._sections import DEFAULT_BACKOFF, SectionReader
from tinit.config._units import did_you_mean, format_signal, parse_env_file
from tinit.config.model import (
    CGROUPS,
    CONDITIONS,
    DEFAULT_FORWARD,
    LOG_FORMATS,
    LOG_LEVELS,
    RESTARTS,
    Capabilities,
    Condition,
    Config,
    ExecProbe,
    HttpProbe,
    Limits,
    LogRotation,
    Namespaces,
    NotifyFdProbe,
    Schedule,
    SdNotifyProbe,
    Service,
    Settings,
    TcpProbe,
    replica_name,
)
from tinit.errors import ConfigError, Problem

if TYPE_CHECKING:
    from collections.abc import Mapping

    import yaml

    from tinit.config._yamlnodes import Entry, Fields, Reader
    from tinit.safeopen import Owner

__all__ = ["load_config", "parse_config"]

SERVICE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: cgroup v2 interface files are CONTROLLER.KEY: a service cgroup can't share such a name
_CGROUP_FILE_PREFIXES: Final = frozenset(
    {"cgroup", "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc", "irq"}
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
    from tinit.config._bounded import Unreadable, read_bounded

    try:
        data = read_bounded(path, pipes=True)
    except Unreadable as exc:
        raise ConfigError([Problem(path, 0, 0, "", f"can't read it: {exc}")]) from None
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
    found = (p._replace(message=_one_line(p.message)) for p in reader.problems)
    problems = sorted(dict.fromkeys(found), key=lambda p: (p.line, p.column))
    if config is None or any(not p.warning for p in problems):
        raise ConfigError(problems)
    return replace(config, warnings=tuple(problems))


# -- reading


TOP_KEYS: Final = ("version", "settings", "services")
SETTINGS_KEYS: Final = tuple(Settings.__dataclass_fields__)
SERVICE_KEYS: Final = tuple(
    key
    for key in Service.__dataclass_fields__
    if key not in ("name", "source_command", "environment", "replica_of", "replica")
)

#: the highest fd number inherit_fds takes (far above what a runtime passes)
MAX_INHERITED_FD: Final = 65535
#: a LISTEN_FDNAMES name: the fds of socket activation are named so
FD_NAME: Final = re.compile(r"[!-9;-~]{1,255}")

Command = tuple[tuple[str, ...], str | tuple[str, ...]]
_Dependency = tuple[Condition, "yaml.Node", "yaml.Node | None"]  # condition, name, condition


class _Loader(ReplicaReader, SectionReader):
    """Reads one file's node tree into a Config, recording problems on the reader."""

    def __init__(self, reader: Reader, base: str, offline: bool) -> None:
        super().__init__(reader, base, offline)
        self.settings = Settings()
        self.shutdown_timeout_node: yaml.Node | None = None
        self.log_rotation_node: yaml.Node | None = None

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
        drafts, replicated = self._drafts(entries)
        check_dependencies(r, drafts)
        if not check_cycles(r, drafts):
            check_shutdown_budget(r, drafts, self.settings, self.shutdown_timeout_node)
        self._check_rotations(drafts)
        services = {name: draft.service for name, draft in drafts.items()}
        return Config(
            r.file, 1, self.settings, MappingProxyType(services), MappingProxyType(replicated)
        )

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
        self.log_rotation_node = f.node("log_rotation")
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
            log_rotation=f.nullable("log_rotation", self._log_rotation, None),
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
            elif number in signals.OWN:
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
        if not re.fullmatch(r"[0-9]{1,3}", entry.key) or int(entry.key) > 255:
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
        if len(entries) > MAX_SERVICES:
            r.fail(node, path, f"has {len(entries)} services, more than {MAX_SERVICES}, the limit")
        for name, entry in entries.items():
            if not SERVICE_NAME.fullmatch(name):
                rule = "use letters, digits, '_', '.' and '-', starting with a letter or digit"
                r.report(entry.key_node, path, f"{name!r} is not a valid name; {rule}")
            elif name.split(".", 1)[0] in _CGROUP_FILE_PREFIXES and "." in name:
                why = "names like it are taken by cgroup interface files (ROOT/services/NAME)"
                r.report(entry.key_node, path, f"{name!r} can't name a service: {why}; rename it")
        return entries

    def _service(self, name: str, entry: Entry, replica: int | None = None) -> Draft:
        """The service ``name`` as read; with ``replica``, its instance of that number."""
        from tinit.config._yamlnodes import Fields, Invalid

        r = self.reader
        path = f"services.{name}"
        if replica is not None:
            name = replica_name(name, replica)
        try:
            f = r.fields(entry.node, path, SERVICE_KEYS)
            if "command" not in f.entries:
                r.report(entry.key_node, f"{path}.command", "is missing; every service needs one")
        except Invalid:  # reported; the checks across services see it as empty
            f = Fields(r, {}, path)
        oneshot = f.get("oneshot", r.boolean, False)
        env: dict[str, str] = f.get("env", self._env, {})
        env_files: tuple[tuple[str, ...], dict[str, str]] = ((), {})
        user = f.nullable("user", lambda n, p: self._account(n, p, "user"), None)
        group = f.nullable("group", lambda n, p: self._account(n, p, "group"), None)
        owner = _file_owner(user, group)
        env_file, file_env = f.get("env_file", lambda n, p: self._env_files(n, p, owner), env_files)
        clear_env = f.get("clear_env", r.boolean, False)
        environment = {**({} if clear_env else r.environ), **file_env, **env}
        run = Run(environment, f.nullable("workdir", self._workdir, None))
        shell = f.get("shell", r.boolean, False)
        no_command: Command = ((), ())
        command, source = f.get("command", lambda n, p: self._command(n, p, shell, run), no_command)
        dependencies: dict[str, _Dependency] = f.get("depends_on", self._depends_on, {})
        output = f.get("output", self._output, self.settings.output)
        service = Service(
            name=name,
            command=command,
            source_command=source,
            shell=shell,
            workdir=run.workdir,
            user=user,
            group=group,
            umask=f.nullable("umask", self._umask, None),
            env=MappingProxyType(env),
            env_file=env_file,
            clear_env=clear_env,
            environment=MappingProxyType(environment),
            stdin=f.nullable("stdin", self._path, None),
            output=output,
            oneshot=oneshot,
            restart=f.get("restart", lambda n, p: r.choice(n, p, RESTARTS), "on-failure"),
            success_exit_codes=f.get("success_exit_codes", self._exit_codes, frozenset({0})),
            backoff=f.get("backoff", self._backoff, DEFAULT_BACKOFF),
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
            # -- scheduled jobs
            schedule=f.nullable("schedule", self._job_schedule, None),
            run_at_start=f.get("run_at_start", r.boolean, False),
            inherit_fds=f.get("inherit_fds", self._inherit_fds, ()),
            log_rotation=self._service_rotation(f, output),
        )
        service = self._replication(service, f, replica)
        nodes = {dep: (name_node, node) for dep, (_, name_node, node) in dependencies.items()}
        self._check_network(service, f)
        self._check_notify_fd(service, f)
        explicit = service.stop_timeout if "stop_timeout" in f.entries else None
        self._check_schedule(service, f)
        return Draft(self._check_oneshot(service, f), entry.key_node, nodes, explicit)

    def _service_rotation(self, f: Fields, output: str) -> LogRotation | None:
        """The service's own ``log_rotation``, else the settings' one; only for a file."""
        to_file = output.startswith("file:")
        rotation = f.nullable(
            "log_rotation", self._log_rotation, self.settings.log_rotation if to_file else None
        )
        if rotation is not None and not to_file:
            why = f"rotates a file output, and output is {output}"
            fix = "set output: file:/path, or remove log_rotation"
            self.reader.report(f.node("log_rotation"), f"{f.path}.log_rotation", f"{why}; {fix}")
        return rotation

    def _check_rotations(self, drafts: Mapping[str, Draft]) -> None:
        """One file, one rotation: services sharing a file must rotate it alike.

        A ``settings.log_rotation`` that no service's output can use is said too.
        """
        by_file: dict[str, LogRotation | None] = {}
        for name, draft in drafts.items():
            service = draft.service
            if not service.output.startswith("file:"):
                continue
            first = by_file.setdefault(service.output, service.log_rotation)
            if first != service.log_rotation:
                path = f"services.{service.replica_of or name}.log_rotation"
                why = f"differs from that of another service writing to {service.output[5:]}"
                message = f"{why}; services sharing a file must rotate it alike"
                self.reader.report(draft.name_node, path, message)
        if self.settings.log_rotation is not None and not by_file:
            why = "no service writes to a file (output: file:/path), so nothing is rotated"
            self.reader.report(self.log_rotation_node, "settings.log_rotation", why, warning=True)

    def _check_network(self, service: Service, f: Fields) -> None:
        """tcp, http probes and sd_notify's socket are in tinit's network: `network: none` has
        none of them (docs/configuration.md, ``sd_notify``)."""
        if service.namespaces.network != "none":
            return
        for key, probe in (("ready", service.ready), ("health", service.health)):
            match probe:
                case TcpProbe():
                    what = "a tcp"
                case HttpProbe():
                    what = "an http"
                case SdNotifyProbe():
                    why = (
                        "sd_notify's socket is an abstract one in tinit's network, which a"
                        " service with namespaces.network: none can't reach"
                    )
                    fix = "use an exec or notify_fd probe, or drop network: none"
                    self.reader.report(f.node(key), f"{f.path}.{key}", f"{why}; {fix}")
                    continue
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

    def _inherit_fds(self, node: yaml.Node, path: str) -> tuple[int | str, ...]:
        r = self.reader
        wanted: list[int | str] = []
        for value, item, item_path in r.items(node, path, self._inherit_fd):
            if value in wanted:
                r.report(item, item_path, f"{value!r} is listed twice; list each fd once")
            else:
                wanted.append(value)
        return tuple(wanted)

    def _inherit_fd(self, node: yaml.Node, path: str) -> tuple[int | str, yaml.Node, str]:
        r = self.reader
        value = r.scalar(node, path, "an fd number or a LISTEN_FDNAMES name")
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 3:
                why = "0, 1 and 2 are stdin, stdout and stderr, which every service has"
                r.fail(node, path, f"must be 3 or more ({why}), got {value}")
            if value > MAX_INHERITED_FD:
                r.fail(node, path, f"must be {MAX_INHERITED_FD} or less, got {value}")
            return value, node, path
        if not isinstance(value, str) or not FD_NAME.fullmatch(value):
            rule = "a name is 1 to 255 printable ASCII characters, without ':' or spaces"
            got = r.describe_node(node)
            r.fail(node, path, f"expected an fd number (3 or more) or a name, got {got}; {rule}")
        return value, node, path

    def _check_notify_fd(self, service: Service, f: Fields) -> None:
        """A notify_fd among the inherited fds' numbers would take one of their places."""
        ready = service.ready
        if not isinstance(ready, NotifyFdProbe) or not service.inherit_fds:
            return
        last = 2 + len(service.inherit_fds)
        if ready.fd <= last:
            why = f"the inherited fds take 3 to {last} (at least: a name may name several)"
            fix = f"use notify_fd: {last + 1} or more"
            self.reader.report(f.node("ready"), f"{f.path}.ready.notify_fd", f"{why}; {fix}")

    # -- scheduled jobs

    def _job_schedule(self, node: yaml.Node, path: str) -> Schedule:
        """``"0 3 * * *"``, or ``{cron: "0 3 * * *", timezone: Europe/Paris}``."""
        from tinit.schedule import ScheduleError, parse, zone_named

        r = self.reader
        zone_node = None
        if r.is_mapping(node):
            f = r.fields(node, path, ("cron", "timezone"))
            cron_node = f.node("cron")
            if cron_node is None:
                r.fail(node, f"{path}.cron", "is missing; write the cron expression here")
            timezone = f.nullable("timezone", r.string, None)
            zone_node, node, path = f.node("timezone"), cron_node, f"{path}.cron"
            expression = r.string(node, path)
        else:
            expression, timezone = r.string(node, path), None
        try:
            zone = zone_named(timezone, r.environ)
        except ScheduleError as exc:
            r.fail(zone_node, path.removesuffix(".cron") + ".timezone", str(exc))
        try:
            parse(expression, zone)
        except ScheduleError as exc:
            r.fail(node, path, str(exc))
        return Schedule(" ".join(expression.split()), timezone)

    def _check_schedule(self, service: Service, f: Fields) -> None:
        """A schedule runs a job to completion again and again: only a oneshot has one."""
        r = self.reader
        if service.schedule is not None and not service.oneshot:
            why = "only a oneshot runs on a schedule (a long-running service is never done)"
            r.report(f.key_node("schedule"), f"{f.path}.schedule", f"{why}; add oneshot: true")
        if service.run_at_start and service.schedule is None:
            why = "run_at_start only applies to a job with a schedule"
            fix = "add a schedule, or remove it (a oneshot runs at start anyway)"
            r.report(f.key_node("run_at_start"), f"{f.path}.run_at_start", f"{why}; {fix}")

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

    def _command(self, node: yaml.Node, path: str, shell: bool, run: Run) -> Command:
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
            if not shell:
                fix = "set shell: true for a shell, or give the command as a list"
                self._check_shell_syntax(source, node, path, fix)
            first = node
        if not ("${" in argv[0] and r.unresolved(first)):
            self._check_program(argv[0], first, path, run)
        return argv, source

    def _env(self, node: yaml.Node, path: str) -> dict[str, str]:
        return self.reader.values(node, path, self._env_entry)

    def _env_entry(self, entry: Entry, path: str) -> str:
        if not entry.key or "=" in entry.key or "\0" in entry.key or not _encodes(entry.key):
            self.reader.fail(entry.key_node, path, f"{entry.key!r} is not a valid variable name")
        return self.reader.text(entry.node, f"{path}.{entry.key}")

    def _env_files(
        self, node: yaml.Node, path: str, owner: Owner | None
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        r = self.reader
        if r.is_null(node):
            return (), {}

        def read(item: yaml.Node, item_path: str) -> tuple[str, dict[str, str]]:
            return self._env_file(item, item_path, owner)

        files = r.items(node, path, read) if r.is_list(node) else [read(node, path)]
        values: dict[str, str] = {}
        for _, file_values in files:
            values.update(file_values)
        return tuple(name for name, _ in files), values

    def _env_file(
        self, node: yaml.Node, path: str, owner: Owner | None
    ) -> tuple[str, dict[str, str]]:
        from tinit.config._bounded import Unreadable, read_bounded

        r = self.reader
        written = r.string(node, path)
        name = self._resolve(written)
        try:
            text = read_bounded(name, pipes=False, owner=owner).decode()
        except (Unreadable, UnicodeDecodeError) as exc:
            reason = str(exc) if isinstance(exc, Unreadable) else "it is not UTF-8 text"
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


def _encodes(text: str) -> bool:
    """Whether ``text`` is valid Unicode, so that it can be put in an environment."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _one_line(message: str) -> str:
    """A message on one line: a value or a YAML error quoted in it may hold line breaks."""
    return " ".join(message.splitlines())


def _file_owner(user: str | None, group: str | None) -> Owner | None:
    """Whose rights read a service's env files: its user's, when tinit is root and it isn't.

    The ids its process gets (tinit/accounts.py). None reads with tinit's own
    rights: a root service, no ``user:``, an unknown account (the file is then
    invalid anyway), or a ``tinit check`` that is not root.
    """
    from tinit import accounts
    from tinit.safeopen import Owner

    if user is None or os.geteuid() != 0:
        return None
    try:
        _, uid, gid, groups = accounts.ids(user, group)
    except accounts.UnknownAccount:
        return None
    if uid is None or uid == 0 or gid is None:
        return None
    return Owner(uid, gid, tuple(groups or ()))
