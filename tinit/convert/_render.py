"""What every importer shares: its findings, its error, and the services.yaml it writes.

An importer builds the services.yaml as plain dicts and lists, and records a
`Finding` for each option that does not carry over one to one (a note) or
that the other tool would refuse too (a problem). Any problem ends the
conversion with `ConversionError`, one line per problem. The notes belong
where whoever adopts the file will read them: `render_services` puts them in
the comment block at the top of the YAML (PyYAML keeps no comments, so that
is the one place for them), and the command prints them on stderr as well.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from tinit.errors import EX_USAGE, TinitError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

#: the width of the header's comment lines, under 100 columns with "# - "
WRAP: Final = 98
GUIDE: Final = "docs/migrating.md"


@dataclass(frozen=True, slots=True)
class Finding:
    """A note or a problem about one option of one section of one file.

    ``section`` is the name inside the brackets (``program:web``), empty for
    the file as a whole; ``option`` is empty for a section as a whole.
    """

    file: str
    section: str
    option: str
    text: str

    def __str__(self) -> str:
        where = f"[{self.section}]" if self.section else ""
        if self.option:
            where = f"{where} {self.option}" if where else self.option
        return f"{self.file}: {where}: {self.text}" if where else f"{self.file}: {self.text}"

    @property
    def local(self) -> str:
        """The finding without its file name."""
        return str(self).removeprefix(f"{self.file}: ")


class Bad(Exception):
    """A value the other tool itself would refuse; the message says why."""


class ConversionError(TinitError):
    """The file can't be converted; ``problems`` has one line for each reason."""

    exit_code = EX_USAGE

    def __init__(self, problems: Iterable[Finding]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def render_services(
    document: Mapping[str, Any],
    *,
    source: str,
    filename: str,
    included: Sequence[str] = (),
    notes: Sequence[Finding] = (),
) -> str:
    """``document`` as services.yaml text, under a header naming where it came from.

    ``source`` is the format (``supervisord``), ``filename`` the file
    converted and ``included`` the files it pulled in. The header lists the
    ``notes``, each without its file name when that is ``filename``.
    """
    import textwrap

    lines = [f"# Converted by `tinit import {source}` from {filename}"]
    if included:
        base = os.path.dirname(os.path.abspath(filename))
        names = ", ".join(os.path.relpath(os.path.abspath(p), base) for p in included)
        wrap = textwrap.wrap(f"(with {names})", WRAP, break_long_words=False)
        lines += [f"# {line}" for line in wrap]
    lines.append(f"# Check it with `tinit check`; {GUIDE} says how each option maps.")
    if notes:
        lines += ["#", "# What did not carry over one to one:"]
        main = os.path.abspath(filename)
        for note in notes:
            text = note.local if os.path.abspath(note.file) == main else str(note)
            lines += textwrap.wrap(
                text,
                WRAP,
                initial_indent="# - ",
                subsequent_indent="#   ",
                break_long_words=False,
                break_on_hyphens=False,
            )
    return "\n".join(lines) + "\n" + _dump(document)


def _dump(document: Mapping[str, Any]) -> str:
    """Block-style YAML, in the document's key order, lists on one line, no ``&anchors``,
    and text of several lines as a ``|`` block."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def flow_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)

    def block_text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
        # a script of several lines reads best as it was written: a | block
        style = "|" if "\n" in data.rstrip("\n") and data == data.rstrip(" ") else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(list, flow_list)
    Dumper.add_representer(str, block_text)
    return yaml.dump(
        document,
        Dumper=Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=4096,
        allow_unicode=True,
    )


__all__ = ["GUIDE", "ConversionError", "Finding", "render_services"]
