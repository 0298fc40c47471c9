"""process-compose's values as tinit writes them: variables, commands, signals, log levels.

process-compose expands ``$VAR`` and ``${VAR}`` throughout its file when it
loads it, an unset variable as nothing, and ``$$`` as ``$`` (unless
``disable_env_expansion``). tinit expands only ``${VAR}`` (and
``${VAR:-default}``), when it loads its config, and refuses an unset one.
So a value outside a command becomes ``${VAR:-}``: the same text, and the
same empty string when unset. A command is different: process-compose
hands it to ``bash -c``, and whatever it did not expand, the shell does.
The converted command leaves its variables to the shell too (``$${VAR}``
reaches the shell as ``${VAR}``), so they are read where the service runs,
from its own environment, as the shell would.
"""

from __future__ import annotations

import re
import shlex
import signal
from typing import Any, Final

from tinit.convert._render import Bad as Bad

_VARIABLE: Final = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}]*)\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)
_TEMPLATE: Final = re.compile(r"\{\{.*?\}\}", re.DOTALL)
#: what makes a command need a shell: operators, expansions, globs, quoting
#: beyond words, several lines, or VAR=value before the program
_SHELL_SYNTAX: Final = re.compile(r"[$`|&;<>(){}*?\[\]~!#\n\\]|^\s*[A-Za-z_][A-Za-z0-9_]*=")
_BASHISMS: Final = re.compile(
    r"\[\[|\$'|[<>]\(|\bfunction\s|\bsource\s|&>|\bpipefail\b|\bdeclare\s|=\(|\$\{[^}]*[/^,]"
)
TEMPLATE_NOTE: Final = "holds a Go template ({{...}}), which is not evaluated: it stays as written"
LOG_LEVELS: Final = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "fatal": "error",
    "panic": "error",
}


def show(raw: Any) -> str:
    """A value for a message, bounded: a list or mapping is named, not printed.

    YAML aliases can make a small file hold a structure far too large to print.
    """
    if isinstance(raw, dict):
        return "a mapping"
    if isinstance(raw, list):
        return "a list"
    text = repr(raw)
    return text if len(text) <= 80 else f"{text[:77]}..."


def scalar(raw: Any, what: str = "a string") -> str:
    """``raw`` as text, when it is a string or a number."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise Bad(f"{show(raw)} is not {what}")
    return str(raw)


def has_template(text: str) -> bool:
    """Whether ``text`` holds a Go template (``{{.VAR}}``), which the import leaves as it is."""
    return _TEMPLATE.search(text) is not None


def value(text: str, *, expand: bool) -> tuple[str, list[str]]:
    """A value outside a command, for tinit; and the variables it reads.

    ``expand`` is false under process-compose's ``disable_env_expansion``:
    every ``$`` is then literal, and written ``$$``.
    """
    if not expand:
        return text.replace("$", "$$"), []
    names: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$$"
        name = match["braced"] or match["bare"]
        names.append(name)
        rest = match["rest"] or ""
        if rest.startswith((":-", "-")):
            return f"${{{name}:-{rest.split('-', 1)[1]}}}"
        return f"${{{name}:-}}" if not rest else match[0].replace("$", "$$", 1)

    return _VARIABLE.sub(replace, text), names


def for_shell(text: str) -> str:
    """A command's text, for tinit, with its ``${VAR}`` left for the shell to expand."""
    return re.sub(r"\$\$|\$\{", lambda m: "$$" if m[0] == "$$" else "$${", text)


def command(text: str, shell: tuple[str, str] | None) -> tuple[str | list[str], bool, str | None]:
    """The ``command`` and ``shell`` keys for a process-compose command.

    ``shell`` is the file's own ``shell_command``/``shell_argument``, None
    for the default ``bash -c``. A plain command line runs without a shell,
    as tinit splits it the same way; anything else gets ``/bin/sh -c``
    (``shell: true``), or bash when it uses bash's own syntax, or the file's
    own shell. Returns the command, whether ``shell: true``, and a note.
    """
    if not _SHELL_SYNTAX.search(text):
        try:
            if shlex.split(text):
                return text.strip(), False, None
        except ValueError:
            pass
    if shell is not None:
        return [shell[0], shell[1], for_shell(text)], False, None
    if _BASHISMS.search(text):
        why = "uses bash's own syntax: it runs with bash -c, as in process-compose (it needs bash)"
        return ["bash", "-c", for_shell(text)], False, why
    return for_shell(text), True, None


def signal_name(raw: Any) -> str:
    """``shutdown.signal`` (a number, as process-compose writes it, or a name) as a name."""
    try:
        if isinstance(raw, bool):
            raise ValueError
        if isinstance(raw, int):
            return signal.Signals(raw).name
        text = scalar(raw, "a signal").strip().upper()
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"].name
    except (ValueError, KeyError):
        raise Bad(f"{show(raw)} is not a signal") from None


def seconds(raw: Any, *, what: str = "a number of seconds") -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise Bad(f"{show(raw)} is not {what}")
    return float(raw)


def duration(raw: float) -> str:
    return f"{raw:g}s"


__all__ = [
    "LOG_LEVELS",
    "TEMPLATE_NOTE",
    "Bad",
    "command",
    "duration",
    "for_shell",
    "has_template",
    "value",
]
