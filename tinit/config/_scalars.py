"""Reading one value at its node: the scalars every part of the config shares.

Durations, signals, output modes, paths, umasks, accounts and commands, each
read from its YAML node through the ``Reader`` so that a problem names its
line and column. The checks against this machine (is the program on PATH, does
the user exist, is the directory there) live here too; ``offline`` skips them.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from tinit.config._units import (
    did_you_mean,
    parse_duration,
    parse_output,
    parse_signal,
    parse_umask,
)

if TYPE_CHECKING:
    import yaml

    from tinit.config._yamlnodes import Reader

T = TypeVar("T")
#: the largest uid or gid: (uid_t)-1 means "no change" to setuid(2), so it can't be one
MAX_ID: Final = 2**32 - 2
_NUMERIC_ID: Final = re.compile(r"[0-9]+")
#: longest first, so that `&&` is not read as two of something
_SHELL_OPERATORS: Final = ("&&", "||", "|", ";", ">", "<", "*", "?")
Read = Callable[["yaml.Node", str], T]


@dataclass(frozen=True, slots=True)
class Run:
    """Where the programs of a service are looked up: its PATH and its working directory."""

    environment: Mapping[str, str]
    workdir: str | None


class ScalarReader:
    """Reads single values from a file's nodes, recording problems on the reader.

    ``base`` is the config file's directory, which relative paths start from.
    """

    def __init__(self, reader: Reader, base: str, offline: bool) -> None:
        self.reader, self.base, self.offline = reader, base, offline

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
            value = str(value)
        if not isinstance(value, str) or not value:
            r.fail(
                node, path, f"expected a {kind} name or id, got {self.reader.describe_node(node)}"
            )
        if _NUMERIC_ID.fullmatch(value):
            if int(value) > MAX_ID:
                r.fail(node, path, f"{kind} id {value} is out of range (0 to {MAX_ID})")
            return value
        if self.offline or _account_exists(kind, value):
            return value
        hint = did_you_mean(value, _account_names(kind))
        fix = "create it in the image, or give a numeric id"
        r.fail(node, path, f"unknown {kind} {value!r} on this machine{hint}; {fix}")

    def _check_program(self, program: str, node: yaml.Node, path: str, run: Run) -> None:
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

    def _check_shell_syntax(self, text: str, node: yaml.Node, path: str, fix: str) -> None:
        """Warn when a string split without a shell holds what only a shell acts on."""
        found = shell_syntax(text)
        if not found:
            return
        quoted = [f"'{op}'" for op in found]
        listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
        verb, them = ("is", "it") if len(quoted) == 1 else ("are", "them")
        why = f"{listed} {verb} shell syntax, but no shell runs this: the program gets {them} as is"
        self.reader.report(node, path, f"{why}; {fix}", warning=True)

    def _split(self, text: str, node: yaml.Node, path: str) -> tuple[str, ...]:
        try:
            words = shlex.split(text)
        except ValueError as exc:
            self.reader.fail(node, path, f"can't be split into words ({str(exc).lower()})")
        if not words:
            self.reader.fail(node, path, "has no words; give at least the program")
        return tuple(words)


def shell_syntax(text: str) -> list[str]:
    """The shell operators and globs in ``text`` that quoting leaves active, in order.

    Single quotes hide everything, a backslash the character after it, and
    double quotes everything but ``$(`` and backticks, as in sh.
    """
    found: dict[str, None] = {}
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if quote == "'":
            quote = "" if char == "'" else quote
        elif char == "\\":
            index += 1
        elif text.startswith("$(", index) or char == "`":
            found[char if char == "`" else "$("] = None
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif op := next((op for op in _SHELL_OPERATORS if text.startswith(op, index)), ""):
            found[op] = None
            index += len(op) - 1
        elif char == "[" and re.match(r"\[[^\s\]]+\]", text[index:]):
            found["[...]"] = None
        index += 1
    return list(found)


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
