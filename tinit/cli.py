"""The command line: the only place that prints to the user or picks an exit code.

Each subcommand imports only what it needs, so ``tinit run -- CMD`` reaches
the command's exec without loading the config machinery, and the client
commands stay quick.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING, NoReturn

from . import __version__
from .errors import EX_SOFTWARE, EX_USAGE, ConfigError, TinitError, UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .config import Config

DEFAULT_CONFIG = "/etc/tinit/services.yaml"
DEFAULT_STOP_TIMEOUT = 5.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2, never two screens."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


#: subcommands whose parsers live in their own modules, loaded only when asked for
_CLIENT_COMMANDS = ("status", "start", "stop", "restart", "signal", "reload", "logs")


def _build_parser(first: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``first`` (the subcommand typed) limits which modules it loads.

    `tinit run -- CMD` is on the path to the command's exec, and `tinit
    status` is a health probe run every few seconds: neither should pay for
    importing the config machinery that `export` needs.
    """
    parser = _Parser(
        prog="tinit",
        description="A process supervisor for PID 1 of a container.",
    )
    parser.add_argument(
        "-V", "--version", action="version", version=__version__, help="as 'tinit version'"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser(
        "run",
        help="supervise the services in CONFIG, or run one command after --",
        description=(
            "tinit run [OPTIONS] [CONFIG] supervises the services of CONFIG "
            f"(default: $TINIT_CONFIG, else {DEFAULT_CONFIG}); "
            "tinit run [OPTIONS] -- CMD [ARG...] runs one command like 'tini -g --'."
        ),
    )
    run.add_argument("config", nargs="?", metavar="CONFIG")
    run.add_argument("--log-format", choices=("console", "json"))
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    run.add_argument(
        "--subreaper",
        action="store_true",
        default=None,
        help="become a child subreaper (always done when not PID 1; kept for tini users)",
    )
    run.add_argument("--no-cgroups", action="store_true", default=None)
    run.add_argument("--control-socket", metavar="PATH")
    # `--isolate` takes no separate value (it must not swallow CONFIG);
    # `--isolate=net` is rewritten to the hidden --isolate-net (see run_cli).
    run.add_argument(
        "--isolate",
        action="store_const",
        const="yes",
        help="run in new PID, mount, UTS and IPC namespaces (--isolate=net: a network one too)",
    )
    run.add_argument("--isolate-net", dest="isolate", action="store_const", const="net",
                     help=argparse.SUPPRESS)  # fmt: skip
    run.add_argument(
        "--hostname", help="the hostname inside --isolate (default: the config's name)"
    )
    run.add_argument(
        "--stop-timeout",
        metavar="DURATION",
        help="one-command mode: how long leftovers get between SIGTERM and SIGKILL (default 5s)",
    )

    check = sub.add_parser("check", help="validate CONFIG and print it normalized")
    check.add_argument("config", metavar="CONFIG")
    check.add_argument("--json", action="store_true", help="print the normalized config as JSON")
    check.add_argument(
        "--offline",
        action="store_true",
        help="skip checks against this machine (commands, users, groups)",
    )

    sub.add_parser("version", help="print tinit's version")
    quick = (
        *("run", "check", "version", "-V", "--version", *_CLIENT_COMMANDS),
        *("export", "import", "probe"),
    )
    everything = first not in quick
    if everything or first in _CLIENT_COMMANDS:
        from . import client

        client.add_parsers(sub)
    if everything or first == "export":
        from .convert import kubernetes

        kubernetes.add_parser(sub)
    if everything or first == "import":
        from .convert import importing

        importing.add_parser(sub)
    if everything or first == "probe":
        from . import probecmd

        probecmd.add_parser(sub)
    return parser


def _env_choice(name: str, value: str | None, choices: Sequence[str]) -> str | None:
    if value is not None:
        return value
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise UsageError(f"{name}: unknown value {raw!r} (expected one of: {', '.join(choices)})")
    return raw


def _env_flag(name: str, value: bool | None) -> bool:
    if value is not None:
        return value
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise UsageError(f"{name}: expected 1/true/yes or 0/false/no, got {raw!r}")


def _isolate_option(arg: str) -> str:
    """``--isolate=net`` -> ``--isolate-net``; any other ``--isolate=X`` is a usage error."""
    if not arg.startswith("--isolate="):
        return arg
    value = arg.partition("=")[2]
    if value == "net":
        return "--isolate-net"
    raise UsageError(f"--isolate takes no value or =net, not {value!r}")


def _split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Split ``run`` arguments at the first ``--``: (tinit's own, the command)."""
    if "--" not in argv:
        return argv, None
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def _cmd_run(args: argparse.Namespace, command: list[str] | None) -> int:
    log_format = _env_choice("TINIT_LOG_FORMAT", args.log_format, ("console", "json"))
    log_level = _env_choice(
        "TINIT_LOG_LEVEL", args.log_level, ("debug", "info", "warning", "error")
    )
    _env_flag("TINIT_SUBREAPER", args.subreaper)  # validated; a subreaper is always made
    if args.hostname is not None and args.isolate is None:
        raise UsageError("--hostname only means something with --isolate")
    if command is not None:
        if args.config is not None:
            raise UsageError(f"give either CONFIG or -- CMD, not both (got {args.config!r})")
        if not command:
            raise UsageError("nothing to run after '--' (usage: tinit run -- CMD [ARG...])")
        if args.isolate is not None:
            code = _isolate(args.isolate == "net", args.hostname, None, command)
            if code is not None:
                return code
        return _run_command(command, args, log_format, log_level)
    return _run_services(args, log_format, log_level)


def _isolate(
    net: bool, hostname: str | None, config: str | None, command: list[str] | None
) -> int | None:
    """Enter the namespaces of --isolate: None in the inner PID 1, the exit code outside."""
    from . import isolate

    name = hostname or isolate.default_hostname(config, command)
    return isolate.enter(net=net, hostname=name)


def _run_services(args: argparse.Namespace, log_format: str | None, log_level: str | None) -> int:
    from .config import load_config
    from .logs import make_logger

    path = args.config or os.environ.get("TINIT_CONFIG") or DEFAULT_CONFIG
    if args.stop_timeout is not None:
        raise UsageError("--stop-timeout is for one-command mode; set stop_timeout per service")
    try:
        config = load_config(path, at_run=True)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"tinit: {problem}", file=sys.stderr)
        if path == DEFAULT_CONFIG and not os.path.lexists(path):
            print(
                "tinit: no config given: run `tinit run FILE` for services from a YAML file,"
                " or `tinit run -- CMD [ARG...]` for one command",
                file=sys.stderr,
            )
        return exc.exit_code
    refusals = _unavailable_namespaces(config)
    if refusals:
        for line in refusals:
            print(f"tinit: {line}", file=sys.stderr)
        return EX_USAGE
    settings = config.settings
    log = make_logger(level=log_level or settings.log_level, fmt=log_format or settings.log_format)
    for warning in config.warnings:
        log.warning("config_warning", problem=str(warning))
    isolated = args.isolate if args.isolate is not None else settings.isolate
    if isolated:
        code = _isolate(isolated == "net", args.hostname, path, None)
        if code is not None:
            return code
    from ._loadtrio import load_trio

    load_trio()
    from .supervisor import run_services

    no_cgroups = _env_flag("TINIT_NO_CGROUPS", args.no_cgroups)
    control_socket = (
        args.control_socket or os.environ.get("TINIT_CONTROL_SOCKET") or settings.control_socket
    )
    return run_services(config, log, no_cgroups=no_cgroups, control_socket=control_socket)


def _run_command(
    command: list[str], args: argparse.Namespace, log_format: str | None, log_level: str | None
) -> int:
    from .command import run_command
    from .logs import make_logger

    raw_timeout = args.stop_timeout or os.environ.get("TINIT_STOP_TIMEOUT")
    stop_timeout = DEFAULT_STOP_TIMEOUT
    if raw_timeout:
        from .config import parse_duration

        try:
            stop_timeout = parse_duration(raw_timeout)
        except ValueError as exc:
            raise UsageError(f"--stop-timeout: {exc}") from None
    # Quiet by default: nothing on stderr unless something is wrong.
    log = make_logger(level=log_level or "warning", fmt=log_format or "console")
    return run_command(command, stop_timeout=stop_timeout, log=log)


def _cmd_check(args: argparse.Namespace) -> int:
    import json

    import yaml

    from .config import load_config, to_document

    try:
        config = load_config(args.config, offline=args.offline)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    if not args.offline:
        for line in _unenforceable_limits(config):
            print(line, file=sys.stderr)
        refusals = _unavailable_namespaces(config)
        if refusals:
            for line in refusals:
                print(line, file=sys.stderr)
            return EX_USAGE
    document = to_document(config)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(yaml.safe_dump(document, sort_keys=False, default_flow_style=False), end="")
    return 0


def _unavailable_namespaces(config: Config) -> list[str]:
    """One line per service whose `namespaces:` this host cannot provide."""
    from .config import Namespaces

    lines = []
    for name, service in config.services.items():
        if service.namespaces == Namespaces():
            continue
        from .namespaces import host_support

        problem = host_support(service.namespaces)
        if problem:
            lines.append(f"{config.path}: services.{name}.namespaces: {problem}")
    return lines


def _unenforceable_limits(config: Config) -> list[str]:
    """Warnings for limits this machine's cgroups cannot enforce."""
    if config.settings.cgroups == "off":
        return []
    from .cgroups import discover

    discovery = discover()
    found = []
    for name, service in config.services.items():
        missing = discovery.missing_limits(service.limits)
        if missing:
            found.append(
                f"{config.path}: warning: services.{name}.limits: {', '.join(missing)} cannot be"
                f" enforced on this machine: {discovery.problem}"
            )
    return found


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; return the exit code."""
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        command = None
        if raw and raw[0] == "run":
            raw, command = _split_command(raw)
            raw = [_isolate_option(arg) for arg in raw]
        args = _build_parser(raw[0] if raw else None).parse_args(raw)
        if args.command == "run":
            return _cmd_run(args, command)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "export":
            from .convert import kubernetes

            return kubernetes.run(args)
        if args.command == "import":
            from .convert import importing

            return importing.run(args)
        if args.command == "probe":
            from . import probecmd

            return probecmd.run(args)
        if args.command != "version":
            from . import client

            return client.run(args)
        print(__version__)
        return 0
    except TinitError as exc:
        print(f"tinit: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of the output (`| head`) is gone: stop quietly with the
        # status of a program that SIGPIPE ended, and keep Python's flush at
        # exit from complaining about the same pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE
    except Exception as exc:  # a bug in tinit: one line and 70, never a bare traceback
        print(f"tinit: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("TINIT_DEBUG"):
            raise
        return EX_SOFTWARE


def _fill_standard_fds() -> None:
    """Put /dev/null on any of fds 0, 1 and 2 that is closed (``tinit run ... >&-``).

    Otherwise the next descriptor tinit opens (its epoll, a pipe, the control
    socket) takes that number: tinit's own messages, or a ``raw`` service's
    output, would go into it, and a child would inherit it as a standard
    stream. Python also leaves ``sys.stdout`` (say) as None then.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: ``fd``
            if null == fd:
                os.set_inheritable(fd, True)  # a standard stream, for children too
            else:
                os.dup2(null, fd)
                os.close(null)
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False, errors="backslashreplace"))  # noqa: SIM115


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``tinit`` console script."""
    _fill_standard_fds()  # first: nothing may take fds 0-2 before them
    raw = sys.argv[1:] if argv is None else list(argv)
    running = raw[:1] == ["run"]
    if running:
        # As early as Python lets us: as PID 1, a signal with no handler and
        # not blocked is dropped by the kernel, so until tinit has handlers,
        # signals must at least wait in the mask (a `docker stop` right after
        # `docker run` would otherwise be lost).
        from .signals import block

        block()
    code = run_cli(raw)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if running:
        # Everything is reaped and written: skip the interpreter's teardown
        # (tens of milliseconds of module cleanup) before the container ends.
        os._exit(code)
    sys.exit(code)


__all__ = ["EX_USAGE", "main", "run_cli"]
