"""Reading the config's YAML with the position of every value.

The config is validated from the node tree of ``yaml.compose`` rather than
from ``yaml.safe_load``'s plain data, because only nodes carry a start mark:
that is what lets every problem name its line and column. This module handles
what all keys share -- syntax errors, duplicate and unknown keys, ``<<``
merges, wrong types, ``${VAR}`` expansion -- and records each problem on the
``Reader`` instead of stopping, so that one run reports all of them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import yaml

from tinit.config import _compose
from tinit.config._bounded import MAX_STRING
from tinit.config._units import did_you_mean, show
from tinit.errors import Problem

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence

T = TypeVar("T")
S = TypeVar("S", bound=str)

_YAML_TAG: Final = "tag:yaml.org,2002:"
_STR: Final = "tag:yaml.org,2002:str"
_NULL: Final = "tag:yaml.org,2002:null"
_MERGE: Final = "tag:yaml.org,2002:merge"
_EXPANSION: Final = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
)

#: what PyYAML's constructors raise for a value that doesn't fit its tag
#: (``!!bool maybe`` is a KeyError, ``!!timestamp x`` an AttributeError)
_CONSTRUCT_ERRORS: Final = (
    yaml.YAMLError,
    ValueError,
    TypeError,
    ArithmeticError,
    LookupError,
    AttributeError,
)


class Invalid(Exception):
    """A problem with this value has been reported; the caller goes on without it."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``key: value`` of a mapping, with both nodes to locate problems at."""

    key: str
    key_node: yaml.Node
    node: yaml.Node


def expand(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand ``${NAME}``, ``${NAME:-default}`` and ``$$`` in ``text``.

    Returns the expanded text and the names that are unset and have no
    default; those references are left in the text as written.
    """
    unset: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        value = environ.get(match["name"])
        if match["default"] is not None and not value:
            return match["default"]
        if value is None:
            unset.append(match["name"])
            return match[0]
        return value

    return _EXPANSION.sub(replace, text), unset


def describe(node: yaml.Node, value: object = None) -> str:
    """What a node holds, as a message names it: ``a list``, ``the string 'x'``."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"the number {node.value}"
    return show(value)


class Reader:
    """Turns YAML nodes into Python values and records every problem at its node."""

    def __init__(self, file: str, environ: Mapping[str, str], *, at_run: bool = False) -> None:
        self.file = file
        self.environ = environ
        #: reading for `tinit run`: this environment is the run time's, so a
        #: variable unset here can never be resolved later
        self.at_run = at_run
        self.problems: list[Problem] = []
        self._unresolved: set[int] = set()
        self._flattened: dict[int, dict[str, Entry]] = {}
        self._constructor = yaml.constructor.SafeConstructor()
        self._resolver: Any = yaml.resolver.Resolver()  # its stubs are untyped

    # -- problems

    def report(
        self, node: yaml.Node | None, path: str, message: str, *, warning: bool = False
    ) -> None:
        """Record a problem located at ``node`` (or nowhere, for None)."""
        line = column = 0
        if node is not None:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
        self.problems.append(Problem(self.file, line, column, path, message, warning))

    def fail(self, node: yaml.Node | None, path: str, message: str) -> NoReturn:
        """Record a problem and give up on this value."""
        self.report(node, path, message)
        raise Invalid

    # -- structure

    def compose(self, text: str) -> yaml.Node | None:
        """The document's root node, or None (with a problem) when it is not YAML."""
        try:
            return _compose.compose(text)
        except _compose.TooComplex as exc:
            line, column = (exc.mark.line + 1, exc.mark.column + 1) if exc.mark else (0, 0)
            self.problems.append(Problem(self.file, line, column, "", str(exc)))
        except yaml.MarkedYAMLError as exc:
            self._syntax_error(exc)
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
            message = f"invalid YAML: {exc.reason} (character {chr(exc.character)!r})"
            self.problems.append(Problem(self.file, line, column, "", message))
        return None

    def _syntax_error(self, exc: yaml.MarkedYAMLError) -> None:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        if exc.problem and "'\\t'" in exc.problem:
            message = "found a tab character; indent YAML with spaces"
        else:
            message = "invalid YAML: " + ", ".join(filter(None, (exc.context, exc.problem)))
        self.problems.append(Problem(self.file, line, column, "", message))

    def is_null(self, node: yaml.Node) -> bool:
        """Whether the node is YAML's null (``~``, ``null`` or nothing)."""
        return isinstance(node, yaml.ScalarNode) and node.tag == _NULL

    def is_list(self, node: yaml.Node) -> bool:
        """Whether the node is a YAML sequence."""
        return isinstance(node, yaml.SequenceNode)

    def is_mapping(self, node: yaml.Node) -> bool:
        """Whether the node is a YAML mapping."""
        return isinstance(node, yaml.MappingNode)

    def fields(self, node: yaml.Node, path: str, keys: Collection[str]) -> Fields:
        """A mapping of config keys (see ``mapping``), to read key by key."""
        return Fields(self, self.mapping(node, path, keys), path)

    def mapping(self, node: yaml.Node, path: str, keys: Collection[str]) -> dict[str, Entry]:
        """The entries of a mapping of config keys; unknown keys are reported.

        A null stands for an empty mapping. Keys starting with ``x-`` are left
        out, so that they can hold YAML anchors.
        """
        entries = self.pairs(node, path)
        for entry in list(entries.values()):
            if entry.key not in keys:
                hint = did_you_mean(entry.key, keys)
                self.report(entry.key_node, path, f"unknown key {entry.key!r}{hint}")
                del entries[entry.key]
        return entries

    def pairs(self, node: yaml.Node, path: str) -> dict[str, Entry]:
        """The entries of a mapping whose keys are data (names, variables, codes)."""
        if self.is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"expected a mapping, got {self.describe_node(node)}")
        return dict(self._flatten(node, path, set()))

    def _flatten(self, node: yaml.MappingNode, path: str, seen: set[int]) -> dict[str, Entry]:
        # YAML merge keys: merged mappings first, earlier ones in a list winning,
        # then the mapping's own keys over all of them. Cached, so that an anchor
        # merged many times is read (and its problems reported) once.
        if id(node) in self._flattened:
            return self._flattened[id(node)]
        merged: dict[str, Entry] = {}
        own: dict[str, Entry] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self._merge_into(merged, value_node, path, seen | {id(node)})
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                kind = self.describe_node(key_node)
                self.report(key_node, path, f"a key must be a plain name, not {kind}")
                continue
            key = key_node.value
            if key.startswith("x-"):
                continue
            if key in own:
                first = own[key].key_node.start_mark.line + 1
                self.report(
                    key_node, _join(path, key), f"duplicate key (first set on line {first})"
                )
                continue
            own[key] = Entry(key, key_node, value_node)
        merged.update(own)
        self._flattened[id(node)] = merged
        return merged

    def _merge_into(
        self, merged: dict[str, Entry], node: yaml.Node, path: str, seen: set[int]
    ) -> None:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in reversed(sources):
            if not isinstance(source, yaml.MappingNode) or id(source) in seen:
                self.report(source, path, "a merge key (<<) takes a mapping or a list of mappings")
                continue
            merged.update(self._flatten(source, path, seen))

    def values(self, node: yaml.Node, path: str, read: Callable[[Entry, str], T]) -> dict[str, T]:
        """``read(entry, path)`` of each entry of a data mapping, ``path`` being the
        mapping's own; entries with a problem are left out."""
        values = {}
        for key, entry in self.pairs(node, path).items():
            try:
                values[key] = read(entry, path)
            except Invalid:
                pass
        return values

    def items(self, node: yaml.Node, path: str, read: Callable[[yaml.Node, str], T]) -> list[T]:
        """``read`` applied to each item of a list; items with a problem are left out."""
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"expected a list, got {self.describe_node(node)}")
        values = []
        for index, item in enumerate(node.value):
            try:
                values.append(read(item, f"{path}[{index}]"))
            except Invalid:
                pass
        return values

    # -- scalars

    def scalar(self, node: yaml.Node, path: str, expected: str, *, runtime: bool = False) -> object:
        """The Python value of a scalar, strings expanded (see ``expand``).

        An unset variable is an error, or with ``runtime`` a warning, and the
        reference is left in the text for the run time to resolve.
        """
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, path, f"expected {expected}, got {self.describe_node(node)}")
        if node.tag == _MERGE:
            return node.value
        if node.tag != _STR or "$" not in node.value:
            value = self._construct(node, path)
            if isinstance(value, str):
                self._check_text(node, path, value)
            return value
        text = self._expand(node, path, runtime)
        if node.style is None and text != node.value:
            # A plain `${N}` holding "5" reads as the number 5, as if written there.
            tag = self._resolver.resolve(yaml.ScalarNode, text, (True, False))
            return self._construct(yaml.ScalarNode(tag, text, node.start_mark), path)
        return text

    def _expand(self, node: yaml.ScalarNode, path: str, runtime: bool) -> str:
        text, unset = expand(node.value, self.environ)
        for name in dict.fromkeys(unset):
            self._report_unset(node, path, name, runtime)
        return self._check_text(node, path, text)

    def _check_text(self, node: yaml.Node, path: str, text: str) -> str:
        """``text``, if the kernel can take it: no NUL, and nothing UTF-8 can't encode."""
        if len(text) > MAX_STRING:
            self.fail(node, path, f"is longer than {MAX_STRING} characters, the limit")
        if "\0" in text:
            why = "which no path, name or argument can hold"
            self.fail(node, path, f"contains a NUL character (\\0), {why}")
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError as exc:
                where = f"character {exc.start + 1} ({text[exc.start]!r})"
                self.fail(node, path, f"is not valid Unicode text: {where} is a lone surrogate")
        return text

    def _report_unset(self, node: yaml.Node, path: str, name: str, runtime: bool) -> None:
        if runtime and not self.at_run:
            self._unresolved.add(id(node))
            message = (
                f"${{{name}}} is not set here, so the command can only be resolved at run time"
            )
            self.report(node, path, message, warning=True)
        else:
            message = (
                f"environment variable {name!r} is not set; set it or write ${{{name}:-default}}"
            )
            self.fail(node, path, message)

    def unresolved(self, node: yaml.Node) -> bool:
        """Whether the scalar kept a ``${NAME}`` that is unset here."""
        return id(node) in self._unresolved

    def _construct(self, node: yaml.ScalarNode, path: str) -> object:
        if not node.tag.startswith(_YAML_TAG):
            self.fail(node, path, f"unknown tag {node.tag!r}; tinit reads plain YAML values")
        try:
            return self._constructor.construct_object(node)
        except _CONSTRUCT_ERRORS as exc:
            why = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else exc
            self.fail(node, path, f"can't read {node.value!r} as {node.tag.rsplit(':')[-1]}: {why}")

    def describe_node(self, node: yaml.Node) -> str:
        """What a node holds, as a message names it: ``a list``, ``the string 'x'``."""
        if not isinstance(node, yaml.ScalarNode) or node.tag == _MERGE:
            return describe(node, node.value)
        if node.tag == _STR:
            return describe(node, expand(node.value, self.environ)[0])
        try:
            return describe(node, self._constructor.construct_object(node))
        except _CONSTRUCT_ERRORS:
            return repr(node.value)

    def text(self, node: yaml.Node, path: str, *, runtime: bool = False) -> str:
        """A scalar as text, numbers and booleans as written (``8000``, ``yes``)."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, path, f"expected a string, got {self.describe_node(node)}")
        if node.tag == _NULL:
            self.fail(node, path, "has no value; write '' for an empty string")
        if node.tag == _STR:
            return self._expand(node, path, runtime)
        if not node.tag.startswith(_YAML_TAG):
            self.fail(node, path, f"unknown tag {node.tag!r}; tinit reads plain YAML values")
        return self._check_text(node, path, str(node.value))

    def string(self, node: yaml.Node, path: str, *, runtime: bool = False) -> str:
        """A string scalar; anything else is reported with a hint to quote it."""
        value = self.scalar(node, path, "a string", runtime=runtime)
        if not isinstance(value, str):
            message = f"expected a string, got {self.describe_node(node)}"
            if value is not None and isinstance(node, yaml.ScalarNode) and node.style is None:
                message += f'; quote it ("{node.value}") if you mean the text'
            self.fail(node, path, message)
        if not value:
            self.fail(node, path, "is empty")
        return value

    def boolean(self, node: yaml.Node, path: str) -> bool:
        """``true`` or ``false`` (YAML 1.1's ``yes``/``no``/``on``/``off`` too)."""
        value = self.scalar(node, path, "true or false")
        if not isinstance(value, bool):
            self.fail(node, path, f"expected true or false, got {self.describe_node(node)}")
        return value

    def integer(
        self, node: yaml.Node, path: str, low: int | None = None, high: int | None = None
    ) -> int:
        """A whole number, between ``low`` and ``high`` when they are given."""
        value = self.scalar(node, path, "a whole number")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, path, f"expected a whole number, got {self.describe_node(node)}")
        _check_range(self, node, path, value, low, high)
        return value

    def number(self, node: yaml.Node, path: str, *, positive: bool = False) -> float:
        """A finite number (``1.5``, ``2``); with ``positive``, more than zero."""
        value = self.scalar(node, path, "a number")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(node, path, f"expected a number, got {self.describe_node(node)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.fail(node, path, f"expected a finite number, got {node.value}")
        if positive and number <= 0:
            self.fail(node, path, f"must be more than 0, got {node.value}")
        return number

    def choice(
        self,
        node: yaml.Node,
        path: str,
        choices: Sequence[S],
        booleans: Mapping[bool, S] | None = None,
    ) -> S:
        """One of ``choices``; ``booleans`` maps YAML's true/false to one of them."""
        options = ", ".join(choices)
        value = self.scalar(node, path, f"one of {options}")
        if booleans and isinstance(value, bool) and value in booleans:
            return booleans[value]
        if not isinstance(value, str):
            self.fail(node, path, f"expected one of {options}, got {self.describe_node(node)}")
        if value not in choices:
            hint = did_you_mean(value, choices) or f"; expected one of {options}"
            self.fail(node, path, f"unknown value {value!r}{hint}")
        return next(choice for choice in choices if choice == value)

    def parsed(self, node: yaml.Node, path: str, parse: Callable[[object], T], expected: str) -> T:
        """A scalar put through one of the ``_units`` parsers."""
        value = self.scalar(node, path, expected)
        try:
            return parse(value)
        except ValueError as exc:
            self.fail(node, path, str(exc))


class Fields:
    """The entries of one config mapping, read with defaults for what is absent."""

    def __init__(self, reader: Reader, entries: dict[str, Entry], path: str) -> None:
        self.reader, self.entries, self.path = reader, entries, path

    def get(self, key: str, read: Callable[[yaml.Node, str], T], default: T) -> T:
        """``read(node, path)`` of the key's value; ``default`` if absent or invalid."""
        entry = self.entries.get(key)
        if entry is None:
            return default
        try:
            return read(entry.node, _join(self.path, key))
        except Invalid:
            return default

    def nullable(
        self, key: str, read: Callable[[yaml.Node, str], T], default: T | None
    ) -> T | None:
        """Like ``get``, with YAML's null read as None."""
        return self.get(key, lambda n, p: None if self.reader.is_null(n) else read(n, p), default)

    def node(self, key: str) -> yaml.Node | None:
        """The value node of ``key``, if the file sets it."""
        entry = self.entries.get(key)
        return entry.node if entry else None

    def key_node(self, key: str) -> yaml.Node | None:
        """The key node of ``key``, if the file sets it."""
        entry = self.entries.get(key)
        return entry.key_node if entry else None


def _check_range(
    reader: Reader, node: yaml.Node, path: str, value: int, low: int | None, high: int | None
) -> None:
    if low is not None and high is not None and not low <= value <= high:
        reader.fail(node, path, f"must be between {low} and {high}, got {value}")
    if low is not None and value < low:
        reader.fail(node, path, f"must be {low} or more, got {value}")
    if high is not None and value > high:
        reader.fail(node, path, f"must be {high} or less, got {value}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
