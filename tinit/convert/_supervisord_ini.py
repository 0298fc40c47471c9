"""supervisord's INI dialect, read the way supervisord 4.2 reads it.

`tinit.convert.supervisord` turns a supervisord.conf into a services.yaml;
this module does the reading: sections and ``[include]`` files, the
``%(name)s`` expansions, and the value types (booleans, exit code lists,
signals, sizes, ``KEY="v",K2=v2`` environments). Each rule follows
supervisord's own behaviour, checked against the Debian ``supervisor`` 4.2.5
package: a value supervisord refuses is a `Finding` in ``problems``; an
option that has no tinit equivalent is left to the caller to note.

Expansions known only at run time (``%(ENV_X)s`` for a variable not defined
in the file) become placeholders inside the text, so that the environment
parser and the shell-syntax check see one word, as supervisord sees the
expanded value; `Expander.finish` turns them into tinit's ``${X}`` at the
end and doubles every ``$`` that tinit would otherwise read as an expansion.
"""

from __future__ import annotations

import ast
import configparser
import glob
import os
import re
import shlex
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from tinit.convert._render import Bad as Bad
from tinit.convert._render import Finding

if TYPE_CHECKING:
    from collections.abc import Mapping

TRUE: Final = ("yes", "true", "on", "1")
FALSE: Final = ("no", "false", "off", "0")
_FORMAT: Final = re.compile(
    r"%(?:(?P<percent>%)|\((?P<name>[^)]*)\)(?P<spec>[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa])"
    r"|(?P<bad>\([^)]*\)?.?|.?))",
    re.DOTALL,
)
_VARIABLE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIZES: Final = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}


@dataclass
class Ini:
    """The merged sections of a supervisord.conf and its includes.

    ``files`` maps each section to the file that first defined it;
    ``included`` lists the included files in the order they were read.
    """

    parser: configparser.RawConfigParser
    main: str
    files: dict[str, str] = field(default_factory=dict)
    included: list[str] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)

    def file_of(self, section: str) -> str:
        return self.files.get(section, self.main)


def new_parser() -> configparser.RawConfigParser:
    """A parser with supervisord's settings: ``;`` and ``#`` start inline comments
    (after a space), a section or option given twice merges instead of failing."""
    return configparser.RawConfigParser(
        inline_comment_prefixes=(";", "#"), strict=False, interpolation=None
    )


def read_ini(text: str, filename: str, environ: Mapping[str, str]) -> Ini:
    """Parse ``text`` (the file ``filename``) and the files its [include] names.

    Include patterns are relative to ``filename``'s directory and globbed, as
    supervisord does; ``environ`` resolves ``%(ENV_X)s`` in them, since the
    files must be found now. Only the main file's [include] is followed.
    """
    ini = Ini(new_parser(), filename)
    here = os.path.dirname(os.path.abspath(filename))
    if not _read_into(ini, text, filename, here):
        return ini
    if not ini.parser.has_section("include"):
        return ini
    if not ini.parser.has_option("include", "files"):
        ini.problems.append(Finding(filename, "include", "", "has no files= option"))
        return ini
    names = {"here": here, "host_node_name": os.uname().nodename}
    try:
        patterns = expand_now(ini.parser.get("include", "files"), names, environ).split()
    except Bad as exc:
        ini.problems.append(Finding(filename, "include", "files", str(exc)))
        return ini
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.join(here, pattern)))
        if not matches:
            why = "no file matches it here; skipped, as supervisord skips it"
            ini.notes.append(Finding(filename, "include", "files", f"{pattern}: {why}"))
        for path in matches:
            _include(ini, path)
    return ini


def _include(ini: Ini, path: str) -> None:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        ini.problems.append(Finding(path, "", "", f"can't read this included file: {reason}"))
        return
    alone = new_parser()
    try:
        alone.read_string(text, source=path)
    except configparser.Error as exc:
        ini.problems.extend(parse_problems(path, exc))
        return
    if alone.has_section("include"):
        why = "an included file's [include] is not followed (supervisord doesn't either)"
        ini.notes.append(Finding(path, "include", "", why))
    ini.included.append(path)
    _read_into(ini, text, path, os.path.dirname(os.path.abspath(path)))


def _read_into(ini: Ini, text: str, path: str, here: str) -> bool:
    before = {s: dict(ini.parser.items(s)) for s in ini.parser.sections()}
    try:
        ini.parser.read_string(text, source=path)
    except configparser.Error as exc:
        ini.problems.extend(parse_problems(path, exc))
        return False
    for section in ini.parser.sections():
        ini.files.setdefault(section, path)
        old = before.get(section, {})
        for option, value in ini.parser.items(section):
            # %(here)s is the directory of the file the value was written in
            if value is not None and old.get(option) != value and "%(here)s" in value:
                ini.parser.set(section, option, value.replace("%(here)s", here))
    return True


def parse_problems(path: str, exc: configparser.Error) -> list[Finding]:
    """One finding per line configparser could not read."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        text = f"line {exc.lineno}: {exc.line.strip()!r} comes before any [section] header"
        return [Finding(path, "", "", text)]
    if isinstance(exc, configparser.ParsingError):
        # configparser keeps each line as its repr()
        lines = [(n, ast.literal_eval(r) if r[:1] in "'\"" else r) for n, r in exc.errors]
        return [
            Finding(path, "", "", f"line {n}: can't parse {text.strip()!r}; expected name=value")
            for n, text in lines
        ]
    return [Finding(path, "", "", str(exc).splitlines()[0])]


# -- %(name)s expansions


def expand_now(text: str, names: Mapping[str, object], environ: Mapping[str, str]) -> str:
    """Expand ``text`` completely, from ``names`` and ``environ`` for ``%(ENV_X)s``."""
    expander = Expander("\0", names, environ)
    expanded = expander.expand(text)
    if expander.has_runtime(expanded):
        raise Bad(f"{text!r} uses a variable that is not set here")
    return expanded


class Expander:
    """supervisord's ``%(name)s`` expansion, with run-time variables left as placeholders.

    ``names`` holds the values known when converting (``here``,
    ``program_name``, ``process_num``...); ``env`` the variables the file
    itself defines, which ``%(ENV_X)s`` takes first. Any other ``%(ENV_X)s``
    becomes a placeholder for tinit's ``${X}``; ``%(host_node_name)s``, when
    ``names`` maps it to None, one for ``${HOSTNAME}``, noted in ``hostname_used``.
    """

    def __init__(self, marker: str, names: Mapping[str, object], env: Mapping[str, str]) -> None:
        self.marker, self.names, self.env = marker, names, env
        self.hostname_used = False

    def expand(self, text: str) -> str:
        """``text`` with every ``%(name)s`` replaced; Bad when supervisord would refuse it."""
        return _FORMAT.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        if match["percent"]:
            return "%"
        if match["bad"] is not None:
            raise Bad(f"{match[0]!r} is not an expansion; write %% for a literal %")
        name, spec = match["name"], match["spec"]
        if name.startswith("ENV_") and name[4:] in self.env:
            return self._format(spec, self.env[name[4:]], match[0])
        if name.startswith("ENV_"):
            return self._runtime(name[4:], spec, match[0])
        if name == "host_node_name" and name in self.names and self.names[name] is None:
            self.hostname_used = True
            return self._runtime("HOSTNAME", spec, match[0])
        if name not in self.names:
            known = ", ".join(sorted(self.names))
            raise Bad(f"{match[0]} names nothing supervisord knows here (it knows {known}, ENV_*)")
        return self._format(spec, self.names[name], match[0])

    def _runtime(self, variable: str, spec: str, written: str) -> str:
        if not _VARIABLE.fullmatch(variable):
            raise Bad(f"{written}: {variable!r} can't be a tinit ${{NAME}} variable")
        if spec != "s":
            raise Bad(f"{written}: only %(...)s can stand for a variable known at run time")
        return f"{self.marker}{variable}{self.marker}"

    @staticmethod
    def _format(spec: str, value: object, written: str) -> str:
        try:
            return ("%" + spec) % (value,)
        except (TypeError, ValueError) as exc:
            raise Bad(f"{written} can't format {value!r}: {exc}") from None

    def has_runtime(self, text: str) -> bool:
        """Whether ``text`` holds a variable known only at run time."""
        return self.marker in text

    def finish(self, text: str) -> str:
        """The text as a tinit config string: ``$`` escaped, placeholders as ``${X}``."""
        marker = re.escape(self.marker)
        escaped = re.sub(rf"\$(?=[${{]|{marker})", "$$", text)
        return re.sub(rf"{marker}([A-Za-z0-9_]+?){marker}", r"${\1}", escaped)


def choose_marker(text: str) -> str:
    """A placeholder marker that occurs nowhere in ``text`` and is one shell word."""
    marker = "TINITVAR"
    while marker in text:
        marker += "Q"
    return marker


# -- value types, as supervisord's datatypes read them


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise Bad(f"{value!r} is not a boolean; write true or false")


def integer(value: str, minimum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise Bad(f"{value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise Bad(f"{number} is less than {minimum}")
    return number


def exit_codes(value: str) -> list[int]:
    try:
        codes = [int(part) for part in value.split(",")]
    except ValueError:
        raise Bad(f"{value!r} is not a list of exit codes like 0,2") from None
    for code in codes:
        if not 0 <= code <= 255:
            raise Bad(f"{code} is not an exit code (0 to 255)")
    return codes


def signal_number(value: str) -> int:
    text = value.strip()
    if text.lstrip("-").isdigit():
        number = int(text)
    else:
        name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
        found = getattr(signal, name, None)
        if not isinstance(found, signal.Signals):
            raise Bad(f"{value!r} is not a signal name")
        number = int(found)
    if number not in {int(s) for s in signal.Signals}:
        raise Bad(f"{value!r} is not a signal number")
    return number


def octal(value: str) -> int:
    try:
        return int(value, 8)
    except ValueError:
        raise Bad(f"{value!r} is not an octal mode like 022") from None


def byte_size(value: str) -> int:
    text = value.strip().lower()
    multiplier = _SIZES.get(text[-2:], 1)
    digits = text[:-2] if text[-2:] in _SIZES else text
    try:
        return int(digits) * multiplier
    except ValueError:
        raise Bad(f"{value!r} is not a size like 50MB") from None


def auto_restart(value: str) -> str:
    """``always``, ``on-failure`` or ``never``: supervisord's true, unexpected, false."""
    lowered = value.strip().lower()
    if lowered in TRUE:
        return "always"
    if lowered in FALSE:
        return "never"
    if lowered == "unexpected":
        return "on-failure"
    raise Bad(f"{value!r} is not true, false or unexpected")


def process_name(value: str) -> str:
    name = value.strip()
    for character in " :/":
        if character in name:
            raise Bad(f"{name!r} can't be a name: it contains {character!r}")
    return name


def environment(value: str) -> dict[str, str]:
    """``KEY="v",K2=v2`` as supervisord splits it.

    supervisord uses a non-POSIX ``shlex`` with ``/.+-():`` added to the word
    characters: a value with other punctuation or spaces must be quoted, the
    quotes are stripped from both ends, and the token between two pairs is
    skipped whatever it is.
    """
    lexer = shlex.shlex(value)
    lexer.wordchars += "/.+-():"
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise Bad(f"can't read {value!r} as KEY=value pairs: {exc}") from None
    pairs: dict[str, str] = {}
    for start in range(0, len(tokens), 4):
        triple = tokens[start : start + 3]
        if len(triple) != 3 or triple[1] != "=":
            raise Bad(f"can't read {value!r} as KEY=value pairs; quote values with spaces or ,")
        pairs[triple[0]] = triple[2].strip("'\"")
    return pairs


def logfile(value: str) -> str:
    """``AUTO``, ``NONE``, ``SYSLOG`` (supervisord's special names) or a path."""
    lowered = value.strip().lower()
    if lowered in ("none", "off"):
        return "NONE"
    if lowered in ("auto", "syslog"):
        return lowered.upper()
    return value.strip()
