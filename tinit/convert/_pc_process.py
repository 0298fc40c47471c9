"""One process of a process-compose file: the tinit service it becomes.

`Process` reads one entry of ``processes:`` and reports each note and
problem to the `Converter` of the whole file, which owns the names and the
dependencies. The decisions where the two tools differ:

- restarts: process-compose's default is ``restart: no`` and an unlimited
  ``max_restarts``; tinit's are ``on-failure`` and 10, so both are written.
  ``backoff_seconds`` is a fixed delay: ``backoff`` with ``factor: 1``.
- ``exit_on_failure`` and ``exit_on_end`` end process-compose when the
  process ends: ``critical: true`` does that in tinit.
- probes: process-compose's readiness probe decides when the process is
  healthy, which is tinit's ``ready``; its liveness probe is ``health``.
  Their timings map where tinit has the field, and are noted where not.
- ``schedule``: ``cron`` (with ``timezone``) or ``interval`` (a Go duration,
  as ``@every``) on a process that becomes a oneshot; ``run_on_start`` is
  ``run_at_start``. tinit never overlaps runs (``max_concurrent`` 1).
- ``log_configuration.rotation`` of a process's ``log_location`` is
  ``log_rotation``: ``max_size_mb`` (0: process-compose's 100) and
  ``max_backups`` (0: every old file, here tinit's most, 1000). Age and
  compression are noted; tinit has neither.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Final

from tinit.config._units import format_duration, format_size
from tinit.config.model import MAX_REPLICAS, MAX_ROTATE_KEEP, MAX_ROTATE_SIZE
from tinit.convert import _pc_values as values
from tinit.convert._daemons import shell_daemon_note
from tinit.convert._pc_probes import probe
from tinit.convert._pc_values import Bad

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinit.convert.process_compose import Converter

_RESTARTS: Final = {
    "no": "never",
    "always": "always",
    "on_failure": "on-failure",
    "exit_on_failure": "never",
}
#: the log size process-compose rotates at when max_size_mb is left out or 0
_PC_SIZE_MB: Final = 100
_NO_EQUIVALENT: Final = {
    "namespace": "tinit has no namespaces of services; not converted",
    "description": "not converted; keep it as a YAML comment",
    "is_tty": "tinit gives services no terminal; for an interactive program, use tinit run -- CMD",
    "is_interactive": "tinit gives services no terminal; for an interactive program, use tinit"
    " run -- CMD",
    "is_foreground": "tinit gives services no terminal; for an interactive program, use tinit"
    " run -- CMD",
    "disable_ansi_colors": "tinit passes the output on unchanged, colours included",
    "launch_timeout_seconds": "only applies to daemons, which tinit does not run",
    "is_elevated": "tinit runs services as root, or as user:; it asks for no password",
    "ready_log_line": "tinit can't wait for a line of output; give it a ready: probe (tcp, http,"
    " exec), notify_fd or sd_notify, and depends_on: {NAME: ready}",
    "vars": "Go template variables are not evaluated: the {{.VAR}} in the values stay as written",
    "extends": "not followed; merge what it names into this process",
    "is_disabled": "tinit starts every service: remove it if it must not run, or `tinit stop` it",
    "watch": "tinit doesn't restart a service when files change; `tinit restart NAME` does",
    "mcp": "tinit runs no MCP server",
    "truncate_log": "tinit appends to an output file; empty it before it starts if you need to",
    "monitor_for": "tinit doesn't watch a service's output for activity or silence",
    "monitor_silence_threshold": "tinit doesn't watch a service's output for activity or silence",
}
#: keys with nothing to convert: tinit never reads .env, nor evaluates templates
_NOTHING_TO_DO: Final = frozenset({"is_dotenv_disabled", "is_template_disabled"})
_KNOWN: Final = frozenset(
    {
        "command", "entrypoint", "working_dir", "environment", "depends_on", "availability",
        "readiness_probe", "liveness_probe", "shutdown", "log_location", "disabled", "is_daemon",
        "replicas", "success_exit_codes", "env_file", "schedule", "log_configuration",
        *_NO_EQUIVALENT,
        *_NOTHING_TO_DO,
    }
)  # fmt: skip


def environment(raw: Any, value: Callable[[Any], str]) -> dict[str, str]:
    """``environment: [K=V, ...]``, read as process-compose reads it; ``value`` converts each V."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise Bad("must be a list of KEY=value strings")
    env: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, str) or "=" not in item:
            raise Bad(f"{values.show(item)} is not KEY=value")
        name, _, text = item.partition("=")
        env[name.strip()] = value(text)
    return env


_GO_DURATION: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS: Final = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0
}  # fmt: skip


def _go_duration(raw: Any) -> float:
    """Seconds from a Go duration (``30m``, ``1h30m``, ``1.5s``), as process-compose reads it."""
    text = values.scalar(raw, "a duration like 30m or 1h30m")
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise Bad(f"interval: {values.show(raw)} is not a duration like 30m or 1h30m")
    seconds = sum(float(number) * _GO_UNITS[unit] for number, unit in parts)
    if seconds < 1:
        raise Bad(f"interval: {text} is shorter than tinit's least, 1s")
    return seconds


def _exit_code(raw: Any) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 255


class Process:
    """One entry of ``processes:``."""

    def __init__(self, c: Converter, name: str, raw: dict[str, Any]) -> None:
        self.c, self.name, self.raw = c, name, raw
        self.service: dict[str, Any] = {}

    def note(self, key: str, text: str) -> None:
        self.c.note(f"processes.{self.name}.{key}", text)

    def problem(self, key: str, text: str) -> None:
        self.c.problem(f"processes.{self.name}.{key}", text)

    def value(self, raw: Any, key: str) -> str:
        """A string value outside the command, its variables written for tinit."""
        return self.c.value(raw, f"processes.{self.name}.{key}")

    def convert(self) -> dict[str, Any]:
        for key in self.raw:
            if str(key).startswith("x-"):
                continue  # an extension: process-compose ignores it too
            if key not in _KNOWN:
                self.note(key, "unknown key; not converted")
            elif key in _NO_EQUIVALENT and self.raw[key] not in (None, False, "", [], {}):
                self.note(key, _NO_EQUIVALENT[key])
        steps = (
            ("command", self._command),
            ("working_dir", self._workdir),
            ("environment", self._environment),
            ("success_exit_codes", self._exit_codes),
            ("availability", self._availability),
            ("readiness_probe", lambda: self._probe("readiness_probe", "ready")),
            ("liveness_probe", lambda: self._probe("liveness_probe", "health")),
            ("shutdown", self._shutdown),
            ("log_location", self._output),
            ("log_configuration", self._log_configuration),
            ("schedule", self._schedule),
        )
        for key, step in steps:
            try:
                step()
            except Bad as exc:
                self.problem(key, str(exc))
        self._switches()
        return self.service

    def _command(self) -> None:
        raw, entrypoint = self.raw.get("command"), self.raw.get("entrypoint")
        if entrypoint is not None and raw:
            self.note("entrypoint", "ignored, as process-compose ignores it when command is set")
        elif entrypoint is not None:
            if not isinstance(entrypoint, list) or not entrypoint:
                raise Bad("entrypoint must be a list of words")
            # process-compose runs an entrypoint as it is, without a shell
            self.service["command"] = [values.for_shell(values.scalar(w)) for w in entrypoint]
            return
        if not isinstance(raw, str) or not raw.strip():
            raise Bad("is missing or empty; process-compose refuses that too")
        if values.has_template(raw):
            self.note("command", values.TEMPLATE_NOTE)
        command, shell, why = values.command(raw, self.c.shell)
        self.service["command"] = command
        if shell:
            self.service["shell"] = True
        if why:
            self.note("command", why)
        daemon = shell_daemon_note(raw)
        if daemon:
            self.note("command", daemon)

    def _workdir(self) -> None:
        workdir = self.raw.get("working_dir")
        if workdir is not None:
            self.service["workdir"] = self.value(workdir, "working_dir")
            if not str(workdir).startswith(("/", "$")):
                why = "is relative: tinit reads it from the services.yaml's directory"
                self.note("working_dir", f"{why}, process-compose from its working directory")

    def _environment(self) -> None:
        own = environment(self.raw.get("environment"), lambda raw: self.value(raw, "environment"))
        env = {**self.c.environment, **own}
        if env:
            self.service["env"] = env
        env_file = self.raw.get("env_file")
        if env_file:
            path = self.value(env_file, "env_file")
            self.service["env_file"] = [path]
            if not path.startswith(("/", "$")):
                why = "is relative: tinit reads it from the services.yaml's directory"
                self.note("env_file", f"{why}, process-compose from its working directory")

    def _exit_codes(self) -> None:
        codes = self.raw.get("success_exit_codes")
        if codes is None:
            return
        if not isinstance(codes, list) or not all(_exit_code(c) for c in codes) or not codes:
            raise Bad("must be a list of exit codes from 0 to 255")
        self.service["success_exit_codes"] = sorted({0, *codes})  # 0 stays a success

    def _availability(self) -> None:
        raw = self.raw.get("availability") or {}
        if not isinstance(raw, dict):
            raise Bad("must be a mapping")
        policy = raw.get("restart", "no")
        policy = "no" if policy is False else policy  # YAML reads a bare no as false
        if not isinstance(policy, str) or policy not in _RESTARTS:
            raise Bad(f"restart: {values.show(policy)} is not one of {', '.join(_RESTARTS)}")
        self.service["restart"] = _RESTARTS[policy]
        if policy == "exit_on_failure":
            self.service["critical"] = True
            why = (
                "exit_on_failure became critical: true with restart: never: a failure ends tinit,"
                " as it ended process-compose; but so does a success, unless it is a oneshot"
            )
            self.note("availability.restart", why)
        if raw.get("exit_on_end"):
            self.service["critical"] = True
        if raw.get("exit_on_skipped"):
            why = "no equivalent: a critical: true service whose dependency failed ends tinit"
            self.note("availability.exit_on_skipped", why)
        if self.service["restart"] == "never":
            return
        limit = raw.get("max_restarts", 0)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise Bad(f"max_restarts: {values.show(limit)} is not a number of restarts")
        self.service["max_restarts"] = limit or None
        if limit:
            why = (
                f"tinit gives up after {limit} failures in a row, and forgets them once a run"
                " lasted backoff.reset_after (30s); process-compose counted every restart"
            )
            self.note("availability.max_restarts", why)
        if "backoff_seconds" in raw:
            delay = values.seconds(raw["backoff_seconds"])
            fixed = values.duration(delay)
            self.service["backoff"] = (
                {"initial": fixed, "max": fixed, "factor": 1}
                if delay
                else {"initial": "0s", "factor": 1}
            )

    def _probe(self, key: str, target: str) -> None:
        raw = self.raw.get(key)
        if raw is not None:
            converted = probe(self, key, raw, liveness=target == "health")
            if converted is not None:
                self.service[target] = converted

    def _shutdown(self) -> None:
        raw = self.raw.get("shutdown") or {}
        if not isinstance(raw, dict):
            raise Bad("must be a mapping")
        if "signal" in raw:
            name = values.signal_name(raw["signal"])
            if name != "SIGTERM":
                self.service["stop_signal"] = name
        if "timeout_seconds" in raw:
            self.service["stop_timeout"] = values.duration(values.seconds(raw["timeout_seconds"]))
        if raw.get("command"):
            ran = values.show(raw["command"])
            why = (
                f"tinit runs no command to stop a service (process-compose ran {ran});"
                " it sends stop_signal, then SIGKILL after stop_timeout"
            )
            self.note("shutdown.command", why)
        if raw.get("parent_only"):
            self.note("shutdown.parent_only", "tinit always signals the whole process group")
        for key in raw:
            if key not in ("signal", "timeout_seconds", "command", "parent_only"):
                self.note(f"shutdown.{key}", "unknown key; not converted")

    def _output(self) -> None:
        location = self.raw.get("log_location")
        if location is None:
            return
        path = self.value(location, "log_location")
        if not path.startswith(("/", "$")):
            path = os.path.normpath(os.path.join(self.c.here, path))
            self.note("log_location", "is relative: made absolute from the file's directory")
        self.service["output"] = f"file:{path}"

    def _log_configuration(self) -> None:
        raw = self.raw.get("log_configuration")
        if raw is None:
            return
        if not isinstance(raw, dict):
            raise Bad("must be a mapping")
        for key, value in raw.items():
            if key != "rotation" and value not in (None, False, "", [], {}):
                why = "tinit writes the output as it comes, without fields or timestamps"
                self.note(f"log_configuration.{key}", why)
        rotation = raw.get("rotation")
        if rotation in (None, {}):
            return
        if not isinstance(rotation, dict):
            raise Bad("rotation: must be a mapping")
        if "output" not in self.service:
            why = "rotates the log_location, and this process has none: not converted"
            self.note("log_configuration.rotation", why)
            return
        self.service["log_rotation"] = self._rotation(rotation)

    def _rotation(self, raw: dict[str, Any]) -> dict[str, Any]:
        where = "log_configuration.rotation"
        for key in raw:
            if key not in ("max_size_mb", "max_backups", "max_age_days", "compress"):
                self.note(f"{where}.{key}", "unknown key; not converted")
        if raw.get("max_age_days"):
            self.note(f"{where}.max_age_days", "tinit keeps old files by number, not by age")
        if raw.get("compress"):
            self.note(f"{where}.compress", "tinit keeps old files as they were written")
        size_mb = int(values.seconds(raw.get("max_size_mb", 0), what="a number of megabytes"))
        size_mb = size_mb or _PC_SIZE_MB
        if size_mb > MAX_ROTATE_SIZE >> 20:
            self.note(f"{where}.max_size_mb", "is more than tinit's most, 1T: rotated at 1T")
            size_mb = MAX_ROTATE_SIZE >> 20
        backups = int(values.seconds(raw.get("max_backups", 0), what="a number of files"))
        if not 0 < backups <= MAX_ROTATE_KEEP:
            why = "every old file" if backups == 0 else f"{backups} old files"
            self.note(f"{where}.max_backups", f"keeps {why}; tinit keeps {MAX_ROTATE_KEEP} at most")
            backups = MAX_ROTATE_KEEP
        return {"max_size": format_size(size_mb << 20), "keep": backups}

    def _schedule(self) -> None:
        """``schedule: {cron | interval, timezone, run_on_start}``: a oneshot on a schedule."""
        raw = self.raw.get("schedule")
        if raw is None:
            return
        if not isinstance(raw, dict):
            raise Bad("must be a mapping of cron or interval, timezone, run_on_start")
        if raw.get("cron"):  # process-compose lets cron win over interval
            expression = values.scalar(raw["cron"], "a cron expression")
        elif raw.get("interval"):
            expression = f"@every {format_duration(_go_duration(raw['interval']))}"
        else:
            raise Bad("has neither cron nor interval")
        timezone = raw.get("timezone")
        if timezone and not raw.get("cron"):
            self.note("schedule.timezone", "left out: an interval does not depend on a time zone")
            timezone = None
        self.service["schedule"] = (
            {"cron": expression, "timezone": values.scalar(timezone, "a time zone")}
            if timezone
            else expression
        )
        if raw.get("run_on_start"):
            self.service["run_at_start"] = True
        if raw.get("max_concurrent", 1) not in (None, 1):
            why = "tinit never overlaps runs: a time due while a run goes on is skipped"
            self.note("schedule.max_concurrent", why)
        for key in raw:
            if key not in ("cron", "interval", "timezone", "run_on_start", "max_concurrent"):
                self.note(f"schedule.{key}", "unknown key; not converted")
        self.service["oneshot"] = True  # each run goes to its end, then waits for the next
        if self.service.get("restart") == "always":
            self.service["restart"] = "on-failure"
            why = "restart: always became on-failure: a scheduled run ends, the next comes on time"
            self.note("availability.restart", why)
        if self.service.pop("health", None) is not None:
            why = "a scheduled job runs to completion: its health probe is left out"
            self.note("liveness_probe", why)

    def _switches(self) -> None:
        if self.raw.get("disabled"):
            self.service["disabled"] = True
        if self.raw.get("is_daemon"):
            why = (
                "tinit watches the process it starts and needs it in the foreground: run the"
                " program without its daemon option; a forked daemon would never be stopped cleanly"
            )
            self.note("is_daemon", why)
        self._replicas()

    def _replicas(self) -> None:
        replicas = self.raw.get("replicas", 1)
        if replicas in (None, 1):
            return
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            self.problem("replicas", f"expected a whole number, got {values.show(replicas)}")
            return
        if not 1 <= replicas <= MAX_REPLICAS:
            self.problem(
                "replicas", f"{replicas} is not between 1 and {MAX_REPLICAS}, tinit's range"
            )
            return
        self.service["replicas"] = replicas
        why = (
            f"instances are {self.name}-1 to {self.name}-{replicas} (process-compose counts"
            " from -0), and TINIT_REPLICA counts from 1 where PC_REPLICA_NUM counts from 0:"
            " check the commands and probes that use it"
        )
        self.note("replicas", why)


__all__ = ["Process"]
