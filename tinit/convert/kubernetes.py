"""``tinit export kubernetes CONFIG``: the same services as Kubernetes objects.

The mapping is in _k8s.py; the objects (a Deployment or Pod, and a Service
when there are ports) are printed as one stream of YAML documents. This
module is the command and a small YAML writer: PyYAML drops comments, and
the comments are the point here (every ``# tinit:`` line is something
Kubernetes can't say as tinit did), so the text is written by hand, block
style, each scalar in a form that YAML 1.1 and 1.2 parsers read back the
same: plain only when unambiguous, literal blocks for multi-line commands,
else double-quoted.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from tinit.convert._k8s import KINDS, Commented, Kind, Target, build, dns_label
from tinit.convert._k8s_vars import deferred_commands
from tinit.errors import UsageError

if TYPE_CHECKING:
    from tinit.config import Config

__all__ = [
    "DEFAULT_IMAGE",
    "add_parser",
    "export_kubernetes",
    "parse_version",
    "plain",
    "run",
    "to_yaml",
]

DEFAULT_IMAGE: Final = "REPLACE-ME:latest"
WIDTH: Final = 100
# Plain scalars that no YAML parser reads as anything but this string: a letter
# (or '/', or '-'/'--' and a letter) first, nothing that starts a comment,
# mapping, alias, tag or flow collection, and none of YAML 1.1's other words;
# or a path.
_PLAIN: Final = re.compile(r"/[A-Za-z0-9_./=+-]*|(?:--?)?[A-Za-z][A-Za-z0-9_./=+-]*")
# YAML 1.1's booleans and null, in any case
_WORDS: Final = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_VERSION: Final = re.compile(r"v?(\d{1,3})\.(\d{1,3})")


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``export`` to ``tinit``'s subparsers."""
    text = (
        "print Kubernetes objects (a Deployment or a Pod, and a Service) for the services of CONFIG"
    )
    parser: argparse.ArgumentParser = sub.add_parser("export", help=text, description=text)
    parser.add_argument("format", choices=("kubernetes",), metavar="FORMAT", help="kubernetes")
    parser.add_argument("config", metavar="CONFIG", help="the services file, as for tinit run")
    parser.add_argument(
        "--name", help="the object's name (default: CONFIG's file name without extension)"
    )
    parser.add_argument(
        "--image",
        default=DEFAULT_IMAGE,
        help="the image every container runs: the one tinit ran in (default: a placeholder)",
    )
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="deployment",
        help="a Deployment (default), or a bare Pod, which can also restart on failure or never",
    )
    parser.add_argument(
        "--kubernetes-version",
        metavar="X.Y",
        help="the oldest Kubernetes the objects must run on (default: 1.29 or later); before "
        "1.29 the services others wait for are plain containers, not native sidecars",
    )
    parser.add_argument(
        "--service",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also print a Service for the ports the probes name (default); --no-service doesn't",
    )
    parser.add_argument(
        "--offline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="don't check CONFIG against this machine, the target is another one (default); "
        "--no-offline checks commands and takes user and group ids from this machine",
    )


def run(args: argparse.Namespace) -> int:
    """Print the objects for ``args.config``; raises ConfigError for an invalid config."""
    from tinit.config import load_config

    name = args.name
    if name is None:
        name = dns_label(os.path.splitext(os.path.basename(args.config))[0], "tinit")
    elif dns_label(name, "") != name:
        fix = dns_label(name, "tinit")
        raise UsageError(
            f"--name: {name!r} is not a Kubernetes name (lowercase letters, digits and '-', "
            f"at most 63); try {fix!r}"
        )
    version = None if args.kubernetes_version is None else parse_version(args.kubernetes_version)
    config = load_config(args.config, offline=args.offline)
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    deferred = deferred_commands(
        config, os.environ, lambda environ: load_config(args.config, environ=environ, offline=True)
    )
    target = Target(
        args.image, args.kind, not args.offline, version, args.service, MappingProxyType(deferred)
    )
    text, notes = export_kubernetes(config, name=name, target=target)
    sys.stdout.write(text)
    if notes:
        count = f"{len(notes)} note" + ("s" if len(notes) > 1 else "")
        print(
            f"tinit: {count} on what doesn't map exactly: see the '# tinit:' comments",
            file=sys.stderr,
        )
    return 0


def parse_version(text: str) -> tuple[int, int]:
    """``X.Y`` (or ``vX.Y``) as numbers; raises UsageError for anything else."""
    match = _VERSION.fullmatch(text)
    if match is None or match[1] != "1":
        raise UsageError(f"--kubernetes-version: {text!r} is not a Kubernetes version like 1.30")
    return int(match[1]), int(match[2])


def export_kubernetes(
    config: Config,
    *,
    name: str,
    image: str = DEFAULT_IMAGE,
    kind: str = "deployment",
    offline: bool = True,
    target: Target | None = None,
) -> tuple[str, list[str]]:
    """The YAML of a Deployment or Pod for ``config`` and its Service, and the notes written in.

    Each note is ``services.NAME.KEY: why`` (or ``settings.KEY: ...``), one per
    thing Kubernetes can't say as tinit did; the YAML has each as a comment
    above what it concerns. ``offline`` False takes user and group ids from
    this machine's databases. ``target``, when given, says all of that and
    more, and the other keywords are ignored.
    """
    if target is None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        kind_: Kind = "pod" if kind == "pod" else "deployment"
        target = Target(image, kind_, resolve_ids=not offline)
    documents, notes = build(config, name=name, target=target)
    image = target.image
    header = [
        f"Kubernetes objects for the services of {config.path} (tinit export kubernetes):",
        "one container per service, all in one pod. Each 'tinit:' comment is something",
        "Kubernetes can't say as tinit did; read them before you apply this.",
    ]
    if image == DEFAULT_IMAGE:
        header.append(f"image: {image} stands for the image tinit ran in; set it with --image.")
    texts = [to_yaml(documents[0], header), *(to_yaml(d) for d in documents[1:])]
    return "---\n".join(texts), notes


# -- the YAML writer


def to_yaml(document: Mapping[str, object], header: Sequence[str] = ()) -> str:
    """``document`` as block-style YAML, each ``Commented`` value's comments above it."""
    writer = _Writer()
    writer.comments(header, 0)
    writer.mapping(document, 0)
    return "\n".join(writer.lines) + "\n"


def plain(value: object) -> object:
    """``value`` without its ``Commented`` wrappers: what the YAML reads back as."""
    if isinstance(value, Commented):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def comments(self, comments: Sequence[str], indent: int) -> None:
        pad = " " * indent
        width = max(40, WIDTH - indent - 4)
        for comment in comments:
            wrapped = textwrap.wrap(comment, width, break_long_words=False, break_on_hyphens=False)
            self.lines.append(f"{pad}# {wrapped[0]}")
            self.lines.extend(f"{pad}#   {line}" for line in wrapped[1:])

    def mapping(self, mapping: Mapping[str, object], indent: int) -> None:
        for key, item in mapping.items():
            value, comments = _unwrap(item)
            self.comments(comments, indent)
            self.entry(f"{' ' * indent}{_scalar(key)}:", value, indent)

    def sequence(self, items: Sequence[object], indent: int) -> None:
        for item in items:
            value, comments = _unwrap(item)
            self.comments(comments, indent)
            if isinstance(value, Mapping) and value:
                start = len(self.lines)
                self.mapping(value, indent + 2)
                # The first entry goes on the dash's line; its comments stay above.
                lines = range(start, len(self.lines))
                first = next(i for i in lines if not self.lines[i].lstrip().startswith("#"))
                self.lines[first] = f"{' ' * indent}- {self.lines[first][indent + 2 :]}"
            else:
                self.entry(f"{' ' * indent}-", value, indent)

    def entry(self, head: str, value: object, indent: int) -> None:
        """``head`` (``key:`` or ``-``) and its value, on its line or indented below it."""
        if isinstance(value, Mapping) and value:
            self.lines.append(head)
            self.mapping(value, indent + 2)
        elif isinstance(value, list | tuple) and value:
            self.lines.append(head)
            self.sequence(value, indent + 2)
        elif isinstance(value, str) and _literal(value):
            chomp = "" if value.endswith("\n") else "-"  # keep the one newline, or none
            self.lines.append(f"{head} |{chomp}")
            pad = " " * (indent + 2)
            body = value.removesuffix("\n").split("\n")
            self.lines.extend(f"{pad}{line}" if line else "" for line in body)
        else:
            self.lines.append(f"{head} {_scalar(value)}")


def _unwrap(value: object) -> tuple[object, tuple[str, ...]]:
    if isinstance(value, Commented):
        return value.value, value.comments
    return value, ()


def _scalar(value: object) -> str:
    """One value on one line: a scalar, or an empty mapping or list."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _WORDS:
            return value
        return _quote(value)
    if isinstance(value, Mapping) and not value:
        return "{}"
    if isinstance(value, list | tuple) and not value:
        return "[]"
    raise TypeError(f"can't write {type(value).__name__} {value!r} as YAML here")


def _quote(text: str) -> str:
    """A double-quoted scalar; whatever isn't printable is escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _literal(text: str) -> bool:
    """Whether ``text`` reads back the same from a ``|`` or ``|-`` literal block.

    Several lines of printable characters (no tabs), the first neither empty
    nor indented (its indentation would set the block's), and at most one
    newline at the end (``|`` keeps one, ``|-`` none).
    """
    if "\n" not in text or text.endswith("\n\n"):
        return False
    lines = text.removesuffix("\n").split("\n")
    first = lines[0]
    return (
        bool(first)
        and not first[0].isspace()
        and all(char.isprintable() for line in lines for char in line)
    )
