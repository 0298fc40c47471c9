"""``tinit import process-compose FILE``: a services.yaml from a process-compose.yaml.

process-compose is the closest of tinit's peers: processes with commands,
dependencies with conditions, probes, restart policies and stop signals.
This module handles the file as a whole: reading the YAML (safely, and
bounded by `tinit.convert.import_file`), the settings every process shares
(``environment``, ``shell``, ``log_level``), service names, and the
``depends_on`` conditions, which need every process converted first;
`tinit.convert._pc_process` converts each process. Notes name the key as
``processes.NAME.key``; a value process-compose itself would refuse is a
problem, and the conversion fails with one line per problem (exit code 2).
How each key maps, and why, is in docs/migrating.md.
"""

from __future__ import annotations

import os
import re
from typing import Any, Final

from tinit.convert import _pc_values as values
from tinit.convert._budget import fit_shutdown_budget
from tinit.convert._pc_process import Process, environment
from tinit.convert._pc_values import Bad
from tinit.convert._render import ConversionError, Finding, render_services

_SERVICE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_CONDITIONS: Final = {
    "process_started": "started",
    "process_healthy": "ready",
    "process_completed_successfully": "completed",
    "process_completed": "completed",
    "process_log_ready": "started",
}
_GLOBAL_NOTES: Final = {
    "log_location": "process-compose's own log: tinit's events go to its stderr",
    "log_length": "tinit keeps the last lines of each service's output for `tinit logs`",
    "log_configuration": "process-compose's own log: tinit writes its events to its stderr, as"
    " they come; a process's own log_configuration.rotation becomes its log_rotation",
    "vars": "Go template variables are not evaluated: the {{.VAR}} in the values stay as written",
    "extends": "not followed: merge the file it names into this one first",
    "env_cmds": "tinit runs no command to set variables; set them in the container's environment",
    "is_tui_disabled": "tinit has no TUI: `tinit status` and `tinit logs` show the services",
}
_GLOBAL_KNOWN: Final = frozenset(
    {
        "version", "processes", "environment", "shell", "log_level", "is_strict",
        "disable_env_expansion", "ordered_shutdown", *_GLOBAL_NOTES,
    }
)  # fmt: skip


def convert(text: str, *, filename: str) -> tuple[str, list[str]]:
    """The services.yaml for the process-compose file ``text`` (the file ``filename``).

    Returns the YAML text and the notes (``FILE: processes.NAME.key: note``)
    about what did not carry over one to one. Raises ConversionError for a
    file process-compose would refuse, or that is not YAML.
    """
    converter = Converter(filename, _load(text, filename))
    document = converter.convert()
    if converter.problems:
        raise ConversionError(converter.problems)
    notes = converter.notes
    text = render_services(document, source="process-compose", filename=filename, notes=notes)
    return text, [str(n) for n in notes]


def _load(text: str, filename: str) -> dict[str, Any]:
    import yaml

    def fail(why: str) -> ConversionError:
        return ConversionError([Finding(filename, "", "", why)])

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise fail(f"{where}not valid YAML: {what}") from None
    if not isinstance(data, dict):
        raise fail("is not a process-compose file: it should be a mapping with processes:")
    processes = data.get("processes")
    if not isinstance(processes, dict) or not processes:
        raise fail("has no processes: mapping, so no service to convert")
    return data


class Converter:
    """Builds the services.yaml document, recording notes and problems."""

    def __init__(self, filename: str, data: dict[str, Any]) -> None:
        self.filename, self.data = filename, data
        self.here = os.path.dirname(os.path.abspath(filename))
        self.notes: list[Finding] = []
        self.problems: list[Finding] = []
        self.expand = not data.get("disable_env_expansion", False)
        self.shell: tuple[str, str] | None = None
        self.environment: dict[str, str] = {}
        self.variables: set[str] = set()
        self.names: dict[str, str] = {}

    def note(self, where: str, text: str) -> None:
        finding = Finding(self.filename, "", where, text)
        if finding not in self.notes:
            self.notes.append(finding)

    def problem(self, where: str, text: str) -> None:
        finding = Finding(self.filename, "", where, text)
        if finding not in self.problems:
            self.problems.append(finding)

    def value(self, raw: Any, where: str) -> str:
        """A string value outside a command, its variables written for tinit (noted once)."""
        text, names = values.value(values.scalar(raw), expand=self.expand)
        self.variables.update(names)
        if values.has_template(text):
            self.note(where, values.TEMPLATE_NOTE)
        return text

    def convert(self) -> dict[str, Any]:
        settings = self._globals()
        processes: dict[str, Any] = self.data["processes"]
        services: dict[str, dict[str, Any]] = {}
        for name, raw in processes.items():
            if not isinstance(raw, dict):
                self.problem(f"processes.{name}", "must be a mapping")
                continue
            self.names[str(name)] = self._service_name(str(name))
            services[self.names[str(name)]] = Process(self, str(name), raw).convert()
        for name, raw in processes.items():
            if isinstance(raw, dict) and raw.get("depends_on") is not None:
                self._depends_on(str(name), raw["depends_on"], services)
        self._check_cycles(services)
        order = {f"processes.{name}": index for index, name in enumerate(processes)}
        self.notes.sort(key=lambda note: order.get(".".join(note.option.split(".")[:2]), -1))
        if self.variables:
            names = ", ".join(sorted(self.variables))
            why = (
                f"process-compose expands variables when it loads the file, an unset one as"
                f" nothing (from its environment and .env); tinit does the same with ${{NAME:-}}"
                f" from its own environment only, so set them in the container: {names}"
            )
            self.notes.insert(0, Finding(self.filename, "", "", why))
        document: dict[str, Any] = {"version": 1, "settings": settings, "services": services}
        budget = fit_shutdown_budget(document)
        if budget is not None:
            self.notes.insert(0, Finding(self.filename, "", "", budget))
        if not settings:
            del document["settings"]
        return document

    def _globals(self) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for key in self.data:
            if str(key).startswith("x-"):
                continue  # an extension: process-compose ignores it too
            if key not in _GLOBAL_KNOWN:
                self.note(str(key), "unknown key; not converted")
            elif key in _GLOBAL_NOTES:
                self.note(key, _GLOBAL_NOTES[key])
        level = self.data.get("log_level")
        if level is not None:
            name = values.LOG_LEVELS.get(str(level).lower()) if isinstance(level, str) else None
            if name is None:
                self.problem("log_level", f"{values.show(level)} is not a log level")
            elif name != "info":
                settings["log_level"] = name
        shell = self.data.get("shell")
        if isinstance(shell, dict):
            try:
                command = values.scalar(shell.get("shell_command", "bash"))
                argument = values.scalar(shell.get("shell_argument", "-c"))
            except Bad as exc:
                self.problem("shell", str(exc))
            else:
                if (os.path.basename(command), argument) != ("bash", "-c"):
                    self.shell = (command, argument)
        elif shell is not None:
            self.problem("shell", "must be a mapping with shell_command and shell_argument")
        try:
            raw = self.data.get("environment")
            self.environment = environment(raw, lambda text: self.value(text, "environment"))
        except Bad as exc:
            self.problem("environment", str(exc))
        return settings

    def _service_name(self, name: str) -> str:
        wanted = name
        if not _SERVICE_NAME.fullmatch(name):
            name = re.sub(r"[^A-Za-z0-9_.-]", "-", name).lstrip("_.-") or "process"
        taken = set(self.names.values())
        base, number = name, 2
        while name in taken:
            name, number = f"{base}-{number}", number + 1
        if name != wanted:
            self.note(
                f"processes.{wanted}",
                f"{wanted!r} is not a valid tinit service name; renamed {name}",
            )
        return name

    def _depends_on(self, name: str, raw: Any, services: dict[str, dict[str, Any]]) -> None:
        where = f"processes.{name}.depends_on"
        if not isinstance(raw, dict):
            self.problem(where, "must be a mapping of process names to {condition: ...}")
            return
        service = services[self.names[name]]
        wanted: dict[str, str] = {}
        for dep, spec in raw.items():
            spec = {} if spec is None else spec
            condition = spec.get("condition", "process_started") if isinstance(spec, dict) else spec
            if not isinstance(condition, str) or condition not in _CONDITIONS:
                self.problem(
                    f"{where}.{dep}",
                    f"condition {values.show(condition)} is not one of {', '.join(_CONDITIONS)}",
                )
                continue
            if str(dep) not in self.names:
                self.note(f"{where}.{dep}", f"{dep!r} is not a process in this file; left out")
                continue
            target = self.names[str(dep)]
            wanted[target] = self._condition(f"{where}.{dep}", condition, target, services[target])
        if wanted:
            service["depends_on"] = wanted

    def _condition(self, where: str, condition: str, target: str, dep: dict[str, Any]) -> str:
        tinit = _CONDITIONS[condition]
        if condition == "process_log_ready":
            why = "tinit can't wait for a line of output: became started; give it a ready: probe"
            self.note(where, why)
        if tinit == "ready" and "ready" not in dep:
            why = f"{target} has no readiness probe that carried over: became started"
            self.note(where, why)
            return "started"
        if tinit != "completed":
            return tinit
        if dep.get("restart") == "always":
            why = f"{target} restarts always, so it never completes: became started"
            self.note(where, why)
            return "started"
        _make_oneshot(self, target, dep)
        if condition == "process_completed":
            why = (
                f"tinit waits for {target} to exit with one of its success_exit_codes (0 unless"
                " listed); process-compose waited for any exit"
            )
            self.note(where, why)
        return "completed"

    def _check_cycles(self, services: dict[str, dict[str, Any]]) -> None:
        state: dict[str, int] = {}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                loop = " -> ".join((*path[path.index(name) :], name))
                self.problem(f"processes.{name}.depends_on", f"dependency cycle: {loop}")
                return
            state[name] = 1
            for dep in services[name].get("depends_on") or {}:
                visit(dep, (*path, name))
            state[name] = 2

        for name in services:
            visit(name, ())


def _make_oneshot(c: Converter, name: str, service: dict[str, Any]) -> None:
    """A process others wait to complete is a task that runs once: a oneshot."""
    if service.get("oneshot"):
        return
    service["oneshot"] = True
    if service.get("restart") == "never":
        del service["restart"]
    if service.pop("health", None) is not None:
        c.note(f"processes.{name}.liveness_probe", "a oneshot can't have a health probe: left out")


__all__ = ["convert"]
