"""One ``[program:x]`` of a supervisord.conf: the tinit services it becomes.

A program is ``numprocs`` processes, each a service; `Program` reads its
options through an `Options` (supervisord's ``%(name)s`` expansions, with
the process's own names) and tells the `Converter` of the whole file about
each note, problem and service.

Decisions where supervisord and tinit differ:

- ``numprocs=N`` becomes ``replicas: N`` when the processes differ only in
  their number and it fits ``TINIT_REPLICA`` (plain ``%(process_num)d``
  from 1, in ``command`` or ``environment``); otherwise a service each, as
  before, with a note. ``autostart=false`` is ``disabled: true``.
- ``command`` stays a string with ``shell: false``: supervisord splits it
  like ``shlex`` and runs it without a shell, as tinit does; shell syntax in
  it is only noted.
- ``startsecs``/``startretries``: tinit counts failures in a row and resets
  the count after ``backoff.reset_after`` up; with ``reset_after: startsecs``
  and ``max_restarts: startretries`` only short runs count, as in supervisord.
  Both are written even when the file sets neither, with supervisord's
  defaults (1 s, 3 retries): tinit's own (30 s, 10) would give up on a
  program that supervisord restarts forever.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
from typing import TYPE_CHECKING, Any, Final, TypeVar

from tinit.config._units import format_size
from tinit.config.model import MAX_ROTATE_KEEP, MAX_ROTATE_SIZE, MIN_ROTATE_SIZE, REPLICA_VAR
from tinit.convert import _supervisord_ini as ini
from tinit.convert._daemons import daemon_note
from tinit.convert._supervisord_ini import Bad, Expander

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinit.convert.supervisord import Converter

T = TypeVar("T")
#: ``%(process_num)d`` and its kin, with the format spec, for ``replicas``
_PROCESS_NUM: Final = re.compile(r"%\(process_num\)([-#0 +]*[0-9]*(?:\.[0-9]+)?[a-zA-Z])")
UNKNOWN: Final = "unknown option; supervisord ignores it, and so does this"
_STREAM_OPTIONS: Final = (
    "logfile",
    "logfile_maxbytes",
    "logfile_backups",
    "capture_maxbytes",
    "events_enabled",
    "syslog",
)
PROGRAM_OPTIONS: Final = frozenset(
    {
        "command", "process_name", "numprocs", "numprocs_start", "priority", "autostart",
        "startsecs", "startretries", "autorestart", "exitcodes", "stopsignal", "stopwaitsecs",
        "stopasgroup", "killasgroup", "user", "redirect_stderr", "environment", "directory",
        "umask", "serverurl",
        *(f"{stream}_{option}" for stream in ("stdout", "stderr") for option in _STREAM_OPTIONS),
    }
)  # fmt: skip
#: log files that are the console: the output stays on tinit's stdout/stderr
CONSOLE: Final = frozenset(
    f"{base}/{fd}" for base in ("/dev/fd", "/proc/self/fd", "/proc/1/fd") for fd in (1, 2)
) | {"/dev/stdout", "/dev/stderr"}
_SHELLS: Final = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "busybox"})
_SHELL_WORDS: Final = frozenset({"&&", "||", "|", ";", "&", ">", ">>", "<", "2>&1", "&>"})
_SHELL_SYNTAX: Final = re.compile(r"^[0-9]?[<>]|\$[A-Za-z_{(]|`")


class Options:
    """The options of one section, read through one Expander."""

    def __init__(self, c: Converter, section: str, raw: dict[str, str], exp: Expander) -> None:
        self.c, self.section, self.raw, self.exp = c, section, raw, exp

    def get(self, option: str, parse: Callable[[str], T], default: T, text: bool = False) -> T:
        """The option parsed, or ``default`` when absent or (reported) wrong.

        Only ``text`` options may hold a variable known at run time.
        """
        if option not in self.raw:
            return default
        try:
            value = self.exp.expand(self.raw[option])
            if self.exp.hostname_used:
                self.exp.hostname_used = False
                why = "%(host_node_name)s became ${HOSTNAME}, from tinit's environment"
                self.c.note(self.section, option, why)
            if not text and self.exp.has_runtime(value):
                raise Bad(f"{self.raw[option]!r} needs a variable set at run time; write the value")
            return parse(value)
        except Bad as exc:
            self.c.problem(self.section, option, str(exc))
            return default

    def finish(self, value: str) -> str:
        return self.exp.finish(value)


class Program:
    """One [program:x] section: numprocs services, in one group."""

    def __init__(
        self,
        c: Converter,
        section: str,
        raw: dict[str, str],
        group: str | None,
        group_priority: int | None,
    ) -> None:
        self.c, self.section, self.raw = c, section, raw
        self.group, self.group_priority = group, group_priority
        self.name = section.split(":", 1)[1]

    def note(self, option: str, text: str) -> None:
        self.c.note(self.section, option, text)

    def convert(self) -> None:
        try:
            ini.process_name(self.name)
        except Bad as exc:
            self.c.problem(self.section, "", str(exc))
            return
        for option in self.raw:
            if option not in PROGRAM_OPTIONS:
                self.note(option, UNKNOWN)
        names: dict[str, object] = {
            "program_name": self.name,
            "group_name": self.group or self.name,
            "host_node_name": None,
        }
        o = Options(self.c, self.section, self.raw, self.c.expander(self.section, names))
        count = o.get("numprocs", lambda v: ini.integer(v, 0), 1)
        first = o.get("numprocs_start", lambda v: ini.integer(v, 0), 0)
        template = self.raw.get("process_name", "%(program_name)s")
        if count > 1 and "%(process_num)" not in template:
            why = f"numprocs={count} needs %(process_num) in process_name, or the names clash"
            self.c.problem(self.section, "process_name", why)
            return
        if count == 0:
            self.note("numprocs", "is 0, so no service comes from this program")
        priority = o.get("priority", ini.integer, 999)
        if self.group is not None and "priority" in self.raw:
            why = f"ignored: the priority of [group:{self.group}] orders it, as in supervisord"
            self.note("priority", why)
        if count > 1 and self._replicable(first):
            replica = f"{self.c.marker}{REPLICA_VAR}{self.c.marker}"
            self._process({**names, "process_num": replica, "numprocs": count}, priority, count)
            return
        for number in range(first, first + count):
            process = {**names, "process_num": number, "numprocs": count}
            self._process(process, priority)

    def _replicable(self, first: int) -> bool:
        """Whether the processes can be one service with ``replicas``: their numbers are
        used nowhere, or only as plain ``%(process_num)d`` or ``s`` counting from 1 in
        ``command`` and ``environment``, where ``${TINIT_REPLICA}`` says the same.
        Otherwise they stay a service each, with a note saying why."""
        uses = {
            option: _PROCESS_NUM.findall(value)
            for option, value in self.raw.items()
            if option not in ("process_name", "numprocs", "numprocs_start")
        }
        used = {option: specs for option, specs in uses.items() if specs}
        if not used:
            return True
        if (
            first == 1
            and set(used) <= {"command", "environment"}
            and all(spec in ("d", "s") for specs in used.values() for spec in specs)
        ):  # %(process_num)d formats an int; made a string, the run-time number fits it
            self.raw = {
                option: _PROCESS_NUM.sub("%(process_num)s", value)
                for option, value in self.raw.items()
            }
            return True
        why = (
            "the processes stay a service each, not one with replicas: "
            f"{', '.join(sorted(used))} use %(process_num) in a way TINIT_REPLICA can't "
            "stand for (it counts from 1, unpadded, only in command and environment)"
        )
        self.note("numprocs", why)
        return False

    def _process(self, names: dict[str, object], priority: int, replicas: int = 1) -> None:
        c = self.c
        env_names = Options(c, self.section, self.raw, c.expander(self.section, names))
        env: dict[str, str] = env_names.get("environment", ini.environment, {}, text=True)
        exp = Expander(c.marker, env_names.exp.names, {**c.global_env, **env})
        o = Options(c, self.section, self.raw, exp)
        service: dict[str, Any] = {}
        if replicas > 1:
            name = self.name
            why = f"became replicas: {replicas}, instances {name}-1 to {name}-{replicas}"
            self.note("numprocs", f"{why}, not supervisord's process names")
        else:
            name = o.get("process_name", ini.process_name, self.name)
        self._command(o, service)
        self._place(o, service)
        merged = {**c.global_env, **env}
        if merged:
            service["env"] = {key: o.finish(value) for key, value in merged.items()}
        self._output(o, service)
        self._restart(o, service)
        self._stop(o, service)
        if not o.get("autostart", ini.boolean, True):
            service["disabled"] = True
        if replicas > 1:
            service["replicas"] = replicas
        serverurl = o.get("serverurl", str, "AUTO", text=True)
        if serverurl.strip().upper() != "AUTO":
            why = "tinit sets no SUPERVISOR_SERVER_URL; use `tinit status` instead"
            self.note("serverurl", why)
        name = c.add_service(name, service, self.section, self.group)
        if self.group_priority is not None:
            c.tiers.append((self.group_priority, name, f"group:{self.group}", self.group_priority))
        else:
            c.tiers.append((priority, name, self.section, priority))

    def _command(self, o: Options, service: dict[str, Any]) -> None:
        command = o.get("command", str, None, text=True)
        if "command" not in self.raw or (command is not None and not command.strip()):
            self.c.problem(self.section, "command", "is missing; supervisord refuses that too")
        if command is None or not command.strip():
            return
        try:
            words = shlex.split(command)
        except ValueError as exc:
            why = f"can't be split into words ({str(exc).lower()}); supervisord can't run it either"
            self.c.problem(self.section, "command", why)
            return
        service["command"] = o.finish(command)
        daemon = daemon_note(words)
        if daemon is not None:
            self.note("command", daemon)
        if words and os.path.basename(words[0]) not in _SHELLS:
            for word in words[1:]:
                if word in _SHELL_WORDS or _SHELL_SYNTAX.search(word):
                    text = (
                        f"{word!r} looks like shell syntax, but supervisord runs commands"
                        " without a shell, as tinit does, so it stays a literal argument; if you"
                        " meant a shell, add shell: true"
                    )
                    self.note("command", text)
                    break

    def _place(self, o: Options, service: dict[str, Any]) -> None:
        directory = o.get("directory", str, None, text=True)
        if directory is not None:
            if not directory.startswith(("/", o.exp.marker)):
                why = "is relative: tinit reads it from the YAML file's directory"
                self.note("directory", f"{why}, supervisord from its own working directory")
            service["workdir"] = o.finish(directory)
        user = o.get("user", str, self.c.global_user, text=True)
        if user is not None:
            service["user"] = o.finish(user)
        umask = o.get("umask", ini.octal, None)
        if umask is not None and umask > 0o777:
            self.c.problem(self.section, "umask", f"{umask:o} is more than 777")
        elif umask is not None:
            service["umask"] = f"{umask:03o}"

    def _restart(self, o: Options, service: dict[str, Any]) -> None:
        restart = o.get("autorestart", ini.auto_restart, "on-failure")
        startsecs = o.get("startsecs", lambda v: ini.integer(v, 0), None)
        retries = o.get("startretries", lambda v: ini.integer(v, 0), None)
        codes = o.get("exitcodes", ini.exit_codes, [0])
        if restart == "never" and startsecs == 0:
            service["oneshot"] = True
            text = (
                "autorestart=false with startsecs=0 is a task that runs once: it became"
                " oneshot: true (dependents can wait for it with depends_on: {NAME: completed})"
            )
            self.note("autorestart", text)
        elif restart != "on-failure":
            service["restart"] = restart
        if codes != [0]:
            service["success_exit_codes"] = sorted(set(codes))
        if service.get("oneshot") or restart == "never":
            return
        if startsecs == 0:
            service["max_restarts"] = None
            text = (
                "startsecs=0 counts every start as a success, so supervisord restarts without"
                " limit: max_restarts: null (tinit still backs off between restarts)"
            )
            self.note("startsecs", text)
        else:
            seconds = 1 if startsecs is None else startsecs
            service["max_restarts"] = 3 if retries is None else retries
            service["backoff"] = {"reset_after": f"{seconds}s"}
            if startsecs is not None:
                text = (
                    f"tinit has no start-up grace period: backoff.reset_after: {seconds}s makes"
                    f" max_restarts count only runs shorter than {seconds}s, like startretries;"
                    " add a ready: probe to say when it is really up"
                )
                self.note("startsecs", text)

    def _stop(self, o: Options, service: dict[str, Any]) -> None:
        signum = o.get("stopsignal", ini.signal_number, int(signal.SIGTERM))
        if signum != signal.SIGTERM:
            service["stop_signal"] = signal.Signals(signum).name
        if "stopwaitsecs" in self.raw:
            service["stop_timeout"] = f"{o.get('stopwaitsecs', lambda v: ini.integer(v, 0), 10)}s"
        stopasgroup = o.get("stopasgroup", ini.boolean, False)
        killasgroup = o.get("killasgroup", ini.boolean, stopasgroup)
        if stopasgroup and not killasgroup:
            self.c.problem(self.section, "killasgroup", "can't be false when stopasgroup is true")
        group_notes = {
            "stopasgroup": "tinit always sends the stop signal to the whole process group",
            "killasgroup": "tinit always SIGKILLs the whole process group (and cgroup)",
        }
        for option, text in group_notes.items():
            if option in self.raw and not o.get(option, ini.boolean, False):
                self.note(option, text)

    def _output(self, o: Options, service: dict[str, Any]) -> None:
        """The service's ``output:`` (left out for the default) and its ``log_rotation``."""
        redirect = o.get("redirect_stderr", ini.boolean, False)
        streams = ["stdout"] if redirect else ["stdout", "stderr"]
        if redirect and ini.logfile(self.raw.get("stderr_logfile", "AUTO")) not in ("AUTO", "NONE"):
            self.note("stderr_logfile", "ignored, as supervisord does, since redirect_stderr=true")
        where = {s: o.get(f"{s}_logfile", ini.logfile, "AUTO", text=True) for s in streams}
        for stream in ("stdout", "stderr"):
            self._stream_notes(o, stream, where.get(stream))
        files = [(s, w) for s, w in where.items() if w not in ("AUTO", "NONE", "SYSLOG", *CONSOLE)]
        if files:
            stream, path = files[0]
            if not path.startswith(("/", o.exp.marker)):
                here = os.path.dirname(os.path.abspath(self.c.ini.file_of(self.section)))
                path = os.path.join(here, path)
                why = "is relative: made absolute from the config file's directory"
                self.note(f"{stream}_logfile", why)
            for other, target in where.items():
                if other != stream and target != files[0][1]:
                    why = f"tinit has one output per service: {other} goes to {path} too"
                    self.note(f"{other}_logfile", why)
            service["output"] = f"file:{o.finish(path)}"
            rotation = self._rotation(o, [s for s, w in where.items() if w == files[0][1]])
            if rotation is not None:
                service["log_rotation"] = rotation
            return
        if all(w == "NONE" for w in where.values()):
            service["output"] = None
            return
        for stream, target in where.items():
            if target == "NONE":
                self.note(f"{stream}_logfile", "tinit can't discard one stream only; it is shown")

    def _stream_notes(self, o: Options, stream: str, where: str | None) -> None:
        written = [f"{stream}_{option}" for option in _STREAM_OPTIONS[:3]]
        if where == "AUTO" and any(option in self.raw for option in written):
            why = "tinit keeps no AUTO log file: it prints the output and keeps its last lines"
            self.note(f"{stream}_logfile", f"{why} for `tinit logs`")
        if where == "SYSLOG" or o.get(f"{stream}_syslog", ini.boolean, False):
            option = f"{stream}_syslog" if where != "SYSLOG" else f"{stream}_logfile"
            self.note(option, "tinit doesn't write to syslog; the output goes where output: says")
        if o.get(f"{stream}_capture_maxbytes", ini.byte_size, 0):
            self.note(f"{stream}_capture_maxbytes", "only feeds event listeners, which tinit lacks")
        if o.get(f"{stream}_events_enabled", ini.boolean, False):
            self.note(f"{stream}_events_enabled", "only feeds event listeners, which tinit lacks")
        o.get(f"{stream}_logfile_backups", lambda v: ini.integer(v, 0), 10)

    def _rotation(self, o: Options, streams: list[str]) -> dict[str, Any] | None:
        """``log_rotation`` for a file the ``streams`` share, as supervisord rotates it.

        supervisord rotates at 50MB keeping 10 unless told otherwise, so a
        file it wrote gets that rotation even when the options are absent.
        The first stream's options decide; ``maxbytes=0`` means no rotation.
        """
        first = streams[0]
        size = o.get(f"{first}_logfile_maxbytes", ini.byte_size, 50 * 1024**2)
        backups = o.get(f"{first}_logfile_backups", lambda v: ini.integer(v, 0), 10)
        for other in streams[1:]:
            theirs = (
                o.get(f"{other}_logfile_maxbytes", ini.byte_size, 50 * 1024**2),
                o.get(f"{other}_logfile_backups", lambda v: ini.integer(v, 0), 10),
            )
            if theirs != (size, backups):
                why = f"one file, one rotation: {first}'s is kept"
                self.note(f"{other}_logfile_maxbytes", why)
        if not size:
            return None
        if not MIN_ROTATE_SIZE <= size <= MAX_ROTATE_SIZE:
            fitted = min(max(size, MIN_ROTATE_SIZE), MAX_ROTATE_SIZE)
            why = f"{_size(size)} is outside tinit's 4KB..1TB: it rotates at {_size(fitted)}"
            self.note(f"{first}_logfile_maxbytes", why)
            size = fitted
        keep = min(max(backups, 1), MAX_ROTATE_KEEP)
        if keep != backups:
            why = (
                "supervisord empties the file instead; tinit keeps one old file"
                if backups == 0
                else f"tinit keeps at most {MAX_ROTATE_KEEP} old files"
            )
            self.note(f"{first}_logfile_backups", why)
        return {"max_size": format_size(size), "keep": keep}


def _size(size: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size} bytes"


__all__ = ["CONSOLE", "PROGRAM_OPTIONS", "UNKNOWN", "Options", "Program"]
