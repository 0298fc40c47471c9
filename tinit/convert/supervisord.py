"""``tinit import supervisord FILE``: a services.yaml from a supervisord.conf.

The conversion keeps supervisord's meaning where tinit can say the same
thing, and notes every option it can't carry over one to one, naming the
section and the option; the notes go to stderr and to the top of the YAML.
A value supervisord itself would refuse is a problem: the conversion fails
with one line per problem and exit code 2. How each option maps, and why, is
in docs/migrating.md.

This module handles the file as a whole: [supervisord], [group:x], the
sections tinit needs no equivalent for, service names, and the order of
priorities. `tinit.convert._supervisord_ini` reads the INI dialect,
`tinit.convert._supervisord_program` converts each [program:x], and
`tinit.convert._render` writes the YAML.

``priority`` is where supervisord and tinit differ most: supervisord starts
lower priorities first, without waiting, and stops higher ones first,
waiting for each. Distinct priorities become tiers: each service depends
(``started``) on the services of the tier below, which gives the same order
both ways.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import TYPE_CHECKING, Any, Final

from tinit.convert import _supervisord_ini as ini
from tinit.convert._budget import fit_shutdown_budget
from tinit.convert._render import ConversionError, Finding, render_services
from tinit.convert._supervisord_ini import Bad, Expander
from tinit.convert._supervisord_program import CONSOLE, UNKNOWN, Options, Program

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tinit.convert._supervisord_ini import Ini

_LOG_LEVELS: Final = {
    "critical": "error",
    "error": "error",
    "warn": "warning",
    "info": "info",
    "debug": "debug",
    "trace": "debug",
    "blather": "debug",
}
_SERVICE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NOT_NEEDED: Final = {
    "unix_http_server": (
        "supervisorctl's socket: tinit has its own control socket (settings.control_socket,"
        " /run/tinit/control.sock by default, for root or tinit's own user); not converted"
    ),
    "inet_http_server": (
        "supervisord's HTTP control and web page have no tinit equivalent; tinit's"
        " settings.health_listen serves only /healthz, /readyz and /metrics; not converted"
    ),
    "supervisorctl": (
        "use tinit status, start, stop, restart, signal and logs instead; they find tinit by"
        " --control-socket or $TINIT_CONTROL_SOCKET"
    ),
    "rpcinterface": "not needed: tinit's control interface is built in",
    "ctlplugin": "supervisorctl plugins have no tinit equivalent; not converted",
    "fcgi-program": (
        "FastCGI programs sharing a socket made by supervisord are not supported; not converted"
        " (run the FastCGI server with its own socket as a [program:x])"
    ),
}


def convert(
    text: str, *, filename: str, environ: Mapping[str, str] | None = None
) -> tuple[str, list[str]]:
    """The services.yaml for the supervisord.conf ``text`` (the file ``filename``).

    Returns the YAML text and the notes (``FILE: [section] option: note``)
    about what did not carry over one to one. ``environ`` (default
    ``os.environ``) resolves ``%(ENV_X)s`` in ``[include] files=`` only;
    everywhere else ``%(ENV_X)s`` becomes ``${X}``, read when tinit runs.
    Raises ConversionError for a file supervisord would refuse.
    """
    parsed = ini.read_ini(text, filename, os.environ if environ is None else environ)
    if parsed.problems:
        raise ConversionError(parsed.problems)
    converter = Converter(parsed, ini.choose_marker(_all_text(parsed)))
    document = converter.convert()
    if converter.problems:
        raise ConversionError(converter.problems)
    notes = [*parsed.notes, *converter.notes]
    text = render_services(
        document, source="supervisord", filename=filename, included=parsed.included, notes=notes
    )
    return text, [str(n) for n in notes]


def _all_text(parsed: Ini) -> str:
    """Everything a converted value can be made of: a marker must be in none of it."""
    parser = parsed.parser
    values = (f"{s} {k} {v}" for s in parser.sections() for k, v in parser.items(s))
    return "\n".join([*values, os.path.abspath(parsed.main), *parsed.included])


class Converter:
    """Builds the services.yaml document, recording notes and problems."""

    def __init__(self, parsed: Ini, marker: str) -> None:
        self.ini, self.marker = parsed, marker
        self.notes: list[Finding] = []
        self.problems: list[Finding] = []
        self.settings: dict[str, Any] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.global_env: dict[str, str] = {}
        self.global_user: str | None = None
        # (tier, service, section the priority came from, priority)
        self.tiers: list[tuple[int, str, str, int]] = []
        self.groups: dict[str, list[tuple[str, int]]] = {}

    def note(self, section: str, option: str, text: str) -> None:
        finding = Finding(self.ini.file_of(section), section, option, text)
        if finding not in self.notes:
            self.notes.append(finding)

    def problem(self, section: str, option: str, text: str) -> None:
        finding = Finding(self.ini.file_of(section), section, option, text)
        if finding not in self.problems:
            self.problems.append(finding)

    def expander(self, section: str, names: Mapping[str, object]) -> Expander:
        here = os.path.dirname(os.path.abspath(self.ini.file_of(section)))
        return Expander(self.marker, {"here": here, **names}, self.global_env)

    def convert(self) -> dict[str, Any]:
        parser = self.ini.parser
        if parser.has_section("supervisord"):
            _supervisord_section(self)
        for section in parser.sections():
            if section.startswith("group:"):
                self._group(section)
        for section in parser.sections():
            kind, _, _ = section.partition(":")
            if kind == "program":
                for group, priority in self.groups.get(section, [(None, None)]):
                    Program(self, section, dict(parser.items(section)), group, priority).convert()
            elif kind == "eventlistener":
                self.note(section, "", _listener_note(dict(parser.items(section))))
            elif kind in _NOT_NEEDED:
                self.note(section, "", _NOT_NEEDED[kind])
            elif section not in ("supervisord", "include") and kind != "group":
                self.note(section, "", "unknown section; supervisord ignores it, and so does this")
        if not self.services and not self.problems:
            self.problem("", "", "has no [program:x] with a process, so no service to convert")
        self._order_by_priority()
        order = {section: index for index, section in enumerate(self.ini.parser.sections())}
        self.notes.sort(key=lambda note: order.get(note.section, -1))
        document: dict[str, Any] = {"version": 1, "settings": self.settings}
        document["services"] = self.services
        budget = fit_shutdown_budget(document)
        if budget is not None:
            self.notes.insert(0, Finding(self.ini.main, "", "", budget))
        if not document["settings"]:
            del document["settings"]
        return document

    def _group(self, section: str) -> None:
        raw = dict(self.ini.parser.items(section))
        expander = self.expander(section, {"host_node_name": None})
        try:
            name = ini.process_name(section.split(":", 1)[1])
            programs = [p.strip() for p in expander.expand(raw.get("programs", "")).split(",")]
            priority = ini.integer(expander.expand(raw.get("priority", "999")))
        except Bad as exc:
            self.problem(section, "", str(exc))
            return
        for program in programs:
            if f"program:{program}" in self.ini.parser.sections():
                self.groups.setdefault(f"program:{program}", []).append((name, priority))
            elif not self.ini.parser.has_section(f"fcgi-program:{program}"):
                self.problem(section, "programs", f"names {program!r}, which has no [program:x]")
        listed = ", ".join(programs)
        text = f"tinit has no groups: {listed} became separate services (tinit stop takes several)"
        self.note(section, "", text)
        for option in raw:
            if option not in ("programs", "priority"):
                self.note(section, option, UNKNOWN)

    def add_service(
        self, name: str, service: dict[str, Any], section: str, group: str | None
    ) -> str:
        """Add ``service`` under a valid, unused name, which it returns."""
        wanted = name
        if not _SERVICE_NAME.fullmatch(name):
            name = re.sub(r"[^A-Za-z0-9_.-]", "-", name)
            name = name if _SERVICE_NAME.fullmatch(name) else f"s{name}"
            text = f"{wanted!r} is not a valid tinit service name; renamed {name}"
            self.note(section, "process_name", text)
        if name in self.services:
            taken = name
            name = f"{group}.{name}" if group and group != name else name
            number = 2
            while name in self.services:
                name, number = f"{taken}-{number}", number + 1
            why = f"{taken} is taken by another service; renamed {name}"
            self.note(section, "process_name", why)
        self.services[name] = service
        return name

    def _order_by_priority(self) -> None:
        levels = sorted({tier for tier, _, _, _ in self.tiers})
        for lower, level in itertools.pairwise(levels):
            below = [name for tier, name, _, _ in self.tiers if tier == lower]
            for tier, name, section, priority in self.tiers:
                if tier != level:
                    continue
                self.services[name]["depends_on"] = list(below)
                default = "" if "priority" in self.ini.parser.options(section) else " (default)"
                text = (
                    f"{priority}{default} comes after {lower}: became depends_on:"
                    f" [{', '.join(below)}] (started), so tinit starts it after them and stops it"
                    " before them, as supervisord did; neither waits for readiness (ready: probes"
                    " and depends_on: {NAME: ready} do)"
                )
                self.note(section, "priority", text)


_DAEMON_NOTES: Final = {
    "pidfile": "tinit writes no pid file",
    "umask": "supervisord applies it only when it daemonizes, tinit never does; set umask: per"
    " service",
    "directory": "supervisord changes to it only when it daemonizes, tinit never does; set"
    " workdir: per service",
    "minfds": "tinit raises no resource limit; give the container --ulimit nofile=N",
    "minprocs": "tinit raises no resource limit; give the container --ulimit nproc=N, or a"
    " service limits: {pids: N}",
    "childlogdir": "tinit writes no AUTO log files: output goes to its stdout/stderr and"
    " `tinit logs`",
    "nocleanup": "tinit writes no AUTO log files, so there is nothing to clean up",
    "identifier": "tinit's control socket has no identifier",
}
_DAEMON_SWITCHES: Final = {
    "silent": "tinit always logs its events to stderr; --log-level warning quiets it",
    "strip_ansi": "tinit passes service output through unchanged",
}


def _supervisord_section(c: Converter) -> None:
    """[supervisord]: the environment and user every program inherits, and the log level."""
    raw = dict(c.ini.parser.items("supervisord"))
    o = Options(c, "supervisord", raw, c.expander("supervisord", {"host_node_name": None}))

    def note(option: str, text: str) -> None:
        c.note("supervisord", option, text)

    no_env: dict[str, str] = {}
    c.global_env = o.get("environment", ini.environment, no_env, text=True)
    user = o.get("user", str, None, text=True)
    if user is not None and user.strip() not in ("root", "0"):
        c.global_user = user
        note("user", f"tinit itself stays root; services without user= run as {user}")
    level = o.get("loglevel", _log_level, "info")
    if level != "info":
        c.settings["log_level"] = level
    logfile = o.get("logfile", str, None, text=True)
    if logfile is not None and logfile not in CONSOLE and logfile != "/dev/null":
        note("logfile", "tinit's own events go to its stderr, not to a file (nor rotated)")
    o.get("nodaemon", ini.boolean, False)
    for option, text in _DAEMON_NOTES.items():
        if option in raw:
            note(option, text)
    for option, text in _DAEMON_SWITCHES.items():
        if o.get(option, ini.boolean, False):
            note(option, text)
    known = {"environment", "user", "loglevel", "logfile", "logfile_maxbytes", "logfile_backups"}
    for option in raw:
        if option not in {"nodaemon", *known, *_DAEMON_NOTES, *_DAEMON_SWITCHES}:
            note(option, UNKNOWN)


def _log_level(value: str) -> str:
    if value.strip().lower() not in _LOG_LEVELS:
        raise Bad(f"{value!r} is not a level ({', '.join(_LOG_LEVELS)})")
    return _LOG_LEVELS[value.strip().lower()]


def _listener_note(raw: Mapping[str, str]) -> str:
    events = {e.strip().upper() for e in raw.get("events", "").split(",") if e.strip()}
    hints = []
    if any(e.startswith("PROCESS_STATE") for e in events):
        hints.append("to end the container when a service fails for good, mark it critical: true")
    if any(e.startswith("PROCESS_LOG") for e in events):
        hints.append("tinit already shows each service's output with its name (output: prefix)")
    if any(e.startswith("TICK") for e in events):
        hints.append("for periodic checks, give the service a health: probe")
    if "memmon" in raw.get("command", ""):
        hints.append("to cap memory, set limits: {memory: SIZE}")
    text = "event listeners are not supported; not converted"
    return "; ".join([text, *hints])


__all__ = ["ConversionError", "convert"]
