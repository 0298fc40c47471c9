"""``tinit import FORMAT FILE [-o PATH]``: a services.yaml from another supervisor's config.

The command around the importers of `tinit.convert.IMPORTERS`: it prints the
YAML (or writes it to PATH) and each note on stderr, as ``tinit import:
FILE: [section] option: note``. A file it can't read, or that the other tool
would refuse too, is exit code 2 and one line per problem, with nothing
written.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from tinit.convert import IMPORTERS, import_file
from tinit.convert._render import ConversionError
from tinit.errors import EX_USAGE

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``import FORMAT FILE [-o PATH]`` to ``tinit``'s subparsers."""
    text = "print a services.yaml converted from another supervisor's config"
    parser: argparse.ArgumentParser = sub.add_parser("import", help=text, description=text)
    formats = tuple(IMPORTERS)
    parser.add_argument("format", choices=formats, metavar="FORMAT", help=", ".join(formats))
    sources = " or ".join(importer.source for importer in IMPORTERS.values())
    parser.add_argument("file", metavar="FILE", help=f"{sources} to convert")
    parser.add_argument(
        "-o", "--output", metavar="PATH", help="write the YAML to PATH (default: stdout)"
    )


def run(args: argparse.Namespace) -> int:
    """Convert ``args.file``; notes and problems go to stderr. 0, or 2 when it can't."""
    path: str = args.file
    try:
        document, notes = import_file(args.format, path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        print(f"tinit import: {path}: can't read it: {reason}", file=sys.stderr)
        return EX_USAGE
    except ConversionError as exc:
        for problem in exc.problems:
            print(f"tinit import: {problem}", file=sys.stderr)
        return exc.exit_code
    for note in notes:
        print(f"tinit import: {note}", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(document)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(document)
    except OSError as exc:
        print(f"tinit import: can't write {args.output}: {exc.strerror}", file=sys.stderr)
        return EX_USAGE
    return 0


__all__ = ["add_parser", "run"]
