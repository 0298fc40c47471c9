"""The error vocabulary of tinit.

Every error tinit reports to a user is one of these. Each carries the exit
code `tinit` ends with when the error reaches the command line (see the table
in README.md), and its message is a sentence that names the thing at fault
and, where there is one, the fix.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import os
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterator

EX_OK: Final = 0
EX_USAGE: Final = 2  # bad command line, invalid or unreadable config
EX_SOFTWARE: Final = 70  # a bug in tinit itself
EX_NOEXEC: Final = 126  # the command exists but cannot be executed
EX_NOTFOUND: Final = 127  # the command was not found


class TinitError(Exception):
    """Base of every error tinit reports to its user."""

    exit_code: int = EX_SOFTWARE


class UsageError(TinitError):
    """The command line or the environment asks for something impossible."""

    exit_code = EX_USAGE


class Problem(NamedTuple):
    """One finding about a config file, located as precisely as the file allows.

    A NamedTuple, not a frozen dataclass: every ``tinit`` command imports this
    module, and ``dataclasses`` (with ``inspect``) would cost it milliseconds.

    ``path`` is the dotted key path (``services.web.restart``); ``line`` and
    ``column`` are 1-based and 0 when unknown.
    """

    file: str
    line: int
    column: int
    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}"
        kind = "warning: " if self.warning else ""
        subject = f"{self.path}: " if self.path else ""
        return f"{where}: {kind}{subject}{self.message}"


class ConfigError(TinitError):
    """A config file is invalid; ``problems`` lists every error found in it."""

    exit_code = EX_USAGE

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SpawnError(TinitError):
    """A child could not be started; ``exit_code`` follows the shell's rule.

    127 when the command does not exist, 126 when it exists but cannot be
    executed, as ``sh`` reports them.
    """

    def __init__(self, command: str, errno: int, strerror: str, stage: str = "exec") -> None:
        self.command = command
        self.errno = errno
        self.stage = stage
        if stage == "exec" and errno in (errnos.ENOENT, errnos.ENOTDIR):
            self.exit_code = EX_NOTFOUND
            reason = "command not found"
        elif stage == "exec":
            self.exit_code = EX_NOEXEC
            reason = strerror
        else:
            self.exit_code = EX_NOEXEC
            # privileges.py's messages already start with their own stage
            reason = strerror if stage == "drop privileges" else f"cannot {stage}: {strerror}"
        super().__init__(f"{command}: {reason}")


class ControlError(TinitError):
    """A client command could not reach the running tinit, or was refused."""

    exit_code = 1


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:  # pragma: no cover - child
    """Re-raise a failure inside as ``OSError(errno, "<name>: <reason>")``.

    For the steps of a child's set-up before its exec (namespaces,
    privileges): the child reports the message to tinit, which names the
    step that failed. python-prctl reports an unknown capability as
    ValueError; it becomes EINVAL.
    """
    try:
        yield
    except OSError as exc:
        code = exc.errno or errnos.EPERM
        raise OSError(code, f"{name}: {exc.strerror or os.strerror(code)}") from exc
    except ValueError as exc:
        raise OSError(errnos.EINVAL, f"{name}: {exc}") from exc
