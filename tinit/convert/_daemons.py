"""Commands that put their program in the background, and their foreground forms.

A supervisor watches the process it started. A command that forks a daemon
and exits (``service nginx start``, ``nginx`` with its default ``daemon
on``, ``sshd`` without ``-D``) leaves tinit with a process that has ended:
tinit restarts it, or counts it as done, while the daemon it left runs on
unwatched, gets no stop signal, and is killed without warning with the
container. supervisord and process-compose have the same problem; the
import says so wherever it can recognise the command, and gives the
foreground form when a common one is known. The check is a heuristic over
the words of the command: a program's own configuration file can still
turn daemon mode on or off, and the notes say so where that is usual.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

_SHELLS: Final = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh"})
#: programs that run the rest of their arguments as the real command
_WRAPPERS: Final = frozenset({"exec", "nohup", "nice", "chpst", "setsid"})
_WRAPPERS_WITH_USER: Final = frozenset({"gosu", "su-exec"})
_ASSIGNMENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_INIT_TOOLS: Final = frozenset({"service", "invoke-rc.d", "rc-service"})
_INIT_SCRIPT_ACTIONS: Final = frozenset({"start", "restart", "reload", "force-reload"})
_NO: Final = frozenset({"no", "false", "0", "off"})
_SHELL_OPERATORS: Final = frozenset({"&&", "||", ";", "|", "&", ";;", "\n"})


@dataclass(frozen=True, slots=True)
class Rule:
    """A program that daemonizes when ``daemonizes(args)`` says so; ``foreground`` fixes it."""

    daemonizes: Callable[[Sequence[str]], bool]
    foreground: str


def _lacks(*flags: str) -> Callable[[Sequence[str]], bool]:
    """Daemonizes unless one of ``flags`` is among the arguments."""
    return lambda args: not any(arg in flags for arg in args)


def _has(*flags: str) -> Callable[[Sequence[str]], bool]:
    """Daemonizes when one of ``flags`` is among the arguments."""
    return lambda args: any(arg in flags for arg in args)


def _nginx(args: Sequence[str]) -> bool:
    return not any(re.search(r"daemon\s+off", arg) for arg in args)


def _apache(args: Sequence[str]) -> bool:
    joined = " ".join(args)
    return not re.search(r"-D\s*FOREGROUND", joined) and not re.search(r"-X\b", joined)


def _apachectl(args: Sequence[str]) -> bool:
    return _apache(args) and any(a in ("start", "restart", "graceful") for a in args)


def _redis(args: Sequence[str]) -> bool:
    for index, arg in enumerate(args):
        if arg == "--daemonize" and index + 1 < len(args):
            return args[index + 1].lower() == "yes"
    return False


def _php_fpm(args: Sequence[str]) -> bool:
    """Daemonizes unless -F or --nodaemonize, alone or among other short flags (-RF)."""
    return not any(a == "--nodaemonize" or re.fullmatch(r"-[A-Za-z]*F[A-Za-z]*", a) for a in args)


def _postfix(args: Sequence[str]) -> bool:
    return "start" in args


def _pg_ctl(args: Sequence[str]) -> bool:
    return any(a in ("start", "restart") for a in args)


_RULES: Final[dict[str, Rule]] = {
    "nginx": Rule(_nginx, "nginx -g 'daemon off;' (unless nginx.conf already says daemon off;)"),
    "php-fpm": Rule(_php_fpm, "php-fpm -F (unless its config says daemonize = no)"),
    "httpd": Rule(_apache, "httpd -DFOREGROUND"),
    "apache2": Rule(_apache, "apache2ctl -D FOREGROUND"),
    "apachectl": Rule(_apachectl, "apachectl -D FOREGROUND"),
    "apache2ctl": Rule(_apachectl, "apache2ctl -D FOREGROUND"),
    "sshd": Rule(_lacks("-D"), "sshd -D (add -e to log to stderr)"),
    "redis-server": Rule(_redis, "redis-server --daemonize no"),
    "cron": Rule(_lacks("-f"), "cron -f"),
    "crond": Rule(_lacks("-f", "-n"), "crond -f (busybox) or crond -n (cronie)"),
    "rsyslogd": Rule(_lacks("-n"), "rsyslogd -n"),
    "syslog-ng": Rule(_lacks("-F", "--foreground"), "syslog-ng -F"),
    "dnsmasq": Rule(_lacks("-k", "--keep-in-foreground", "-d", "--no-daemon"), "dnsmasq -k"),
    "squid": Rule(_lacks("-N"), "squid -N"),
    "named": Rule(_lacks("-f", "-g"), "named -f"),
    "memcached": Rule(_has("-d", "--daemon"), "memcached without -d"),
    "haproxy": Rule(_has("-D"), "haproxy without -D (or with -db)"),
    "gunicorn": Rule(_has("-D", "--daemon"), "gunicorn without -D/--daemon"),
    "mongod": Rule(_has("--fork"), "mongod without --fork"),
    "x11vnc": Rule(_has("-bg"), "x11vnc without -bg"),
    "websockify": Rule(_has("-D", "--daemon"), "websockify without -D"),
    "postfix": Rule(_postfix, "postfix start-fg"),
    "docker": Rule(_has("-d", "--detach"), "docker run without -d (with --rm, and --init)"),
    "podman": Rule(_has("-d", "--detach"), "podman run without -d (with --rm)"),
    "pg_ctl": Rule(_pg_ctl, "postgres -D DATADIR (pg_ctl start forks it)"),
}
_GENERIC_FLAGS: Final = ("--daemon", "--daemonize", "--detach", "--background")


def daemon_note(words: Sequence[str]) -> str | None:
    """Why the command ``words`` leaves a daemon behind and exits; None when it seems not to."""
    words = list(words)
    if len(words) >= 3 and os.path.basename(words[0]) in _SHELLS and words[1] == "-c":
        return shell_daemon_note(words[2])
    return _simple(words)


def shell_daemon_note(script: str) -> str | None:
    """`daemon_note` for each command of a shell script, and for one put in the background."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace = " \t\r"  # newlines separate commands, as ; does
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return None
    command: list[str] = []
    for token in [*tokens, ";"]:
        if token not in _SHELL_OPERATORS:
            command.append(token)
            continue
        if token == "&" and command:
            name = os.path.basename(_program(command)[0] or "the command")
            return f"the shell puts {name} in the background with &: tinit watches only the shell"
        note = _simple(command) if command else None
        if note:
            return note
        command = []
    return None


def _program(words: Sequence[str]) -> tuple[str | None, list[str]]:
    """The program a command line runs, past wrappers and VAR=value words, and its arguments."""
    index = 0
    while index < len(words):
        word = os.path.basename(words[index])
        if _ASSIGNMENT.match(words[index]) or word in _WRAPPERS or word == "env":
            index += 1
        elif word in _WRAPPERS_WITH_USER:
            index += 2
        elif word == "sudo":
            index += 1
            while index < len(words) and words[index].startswith("-"):
                index += 2 if words[index] in ("-u", "-g") else 1
        elif word.startswith("-") and index > 0:
            index += 2 if word == "-n" else 1  # an option of a wrapper, like nice -n 10
        else:
            return words[index], list(words[index + 1 :])
    return None, []


def _simple(words: Sequence[str]) -> str | None:
    path, args = _program(words)
    if path is None:
        return None
    name = os.path.basename(path)
    if name in _INIT_TOOLS and len(args) >= 2 and args[1] in _INIT_SCRIPT_ACTIONS:
        return _init_script_note(f"{name} {args[0]} {args[1]}", args[0])
    if path.startswith("/etc/init.d/") and args[:1] and args[0] in _INIT_SCRIPT_ACTIONS:
        return _init_script_note(f"{path} {args[0]}", name)
    if name == "systemctl" and args[:1] and args[0] in _INIT_SCRIPT_ACTIONS:
        return "systemctl needs systemd, which doesn't run in the container; run the program itself"
    rule = _RULES.get(_family(name))
    if rule is not None and not rule.daemonizes(args):
        return None
    if rule is not None:
        return (
            f"{name} puts itself in the background and exits: tinit would watch a process that"
            f" has ended, and never see the daemon; run it in the foreground: {rule.foreground}"
        )
    after = [*args[1:], ""] if args else []
    flag = next((a for a, b in zip(args, after, strict=True) if _generic_flag(a, b)), None)
    if flag is not None:
        return (
            f"{name} {flag} puts the program in the background: tinit would watch a process that"
            " has ended, and never see the daemon; run it in the foreground (drop the flag)"
        )
    return None


def _init_script_note(command: str, what: str) -> str:
    return (
        f"{command} starts {what} in the background through its init script and exits: tinit"
        " can't watch it; run its program in the foreground instead"
    )


def _generic_flag(arg: str, following: str) -> bool:
    """``--daemon`` and the like, unless followed by (or set to) no, false or 0."""
    flag, equals, value = arg.partition("=")
    value = value if equals else following
    return flag in _GENERIC_FLAGS and value.lower() not in _NO


def _family(name: str) -> str:
    """``php-fpm8.2``, ``php5-fpm`` and ``php-fpm82`` are all php-fpm."""
    if re.fullmatch(r"php[0-9.]*-fpm[0-9.]*", name):
        return "php-fpm"
    return name


__all__ = ["daemon_note", "shell_daemon_note"]
