"""Composing a config's YAML within the limits of depth, size and string length.

PyYAML's composer recurses once per level of nesting, and an alias hands
back its anchor's node rather than a copy, so that one mapping aliased into
a thousand places costs nothing to compose but a thousand times its size to
walk: a "billion laughs". This composer counts as it goes, each alias at
what it repeats, and stops at the first limit passed (``_bounded`` has them)
with the place it did, long before Python's recursion limit or the memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from tinit.config._bounded import MAX_DEPTH, MAX_NODES, MAX_STRING


class Mark(Protocol):
    """Where in the text a YAML event is (PyYAML has a Python and a C kind of mark)."""

    line: int
    column: int


class TooComplex(Exception):
    """The YAML goes past a limit; ``mark`` is where it did."""

    def __init__(self, message: str, mark: Mark | None) -> None:
        super().__init__(message)
        self.mark = mark


def compose(text: str) -> yaml.Node | None:
    """The root node of ``text``, composed within the limits.

    Raises ``TooComplex``, or what ``yaml.compose`` raises for a syntax error.
    """
    try:
        return _compose_with(_BoundedLoader, text)
    except yaml.YAMLError:
        if _BoundedLoader is _PythonLoader:
            raise
    # libyaml words its errors differently: the Python parser, reading the
    # same text, says what is wrong the way tinit's messages and docs do.
    return _compose_with(_PythonLoader, text)


def _compose_with(kind: type[_Counting], text: str) -> yaml.Node | None:
    loader: Any = kind(text)  # type: ignore[call-arg]  # every loader takes the text
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


class _Counting(Composer):
    """PyYAML's composer, counting depth and nodes as it goes.

    An alias costs what it repeats: its anchor's node count and height. So
    the limits hold for the document as the loader walks it, however
    aliases and merge keys (``<<``) repeat one mapping, and the composer
    (which recurses once per level) stops long before Python's recursion
    limit.
    """

    def __init__(self) -> None:
        super().__init__()
        self._open: list[int] = []  # per open collection: the height of its tallest child
        self._nodes = 0
        self._anchored: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, height)

    if TYPE_CHECKING:

        def peek_event(self) -> Any:
            """The next event, from whichever parser the loader is made with."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            nodes, height = self._anchored.get(id(node), (1, 0))
            self._count(nodes, height, event.start_mark)
            return node
        if len(self._open) >= MAX_DEPTH:
            why = f"nested more than {MAX_DEPTH} levels deep, the limit"
            raise TooComplex(why, event.start_mark)
        before = self._nodes
        self._open.append(-1)
        try:
            node = super().compose_node(parent, index)
        finally:
            tallest = self._open.pop()
        height = tallest + 1
        self._count(1, height, event.start_mark)
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            self._anchored[id(node)] = (self._nodes - before, height)
        return node

    def compose_scalar_node(self, anchor: Any) -> Any:
        node = super().compose_scalar_node(anchor)
        if node.style == "":
            node.style = None  # libyaml's plain style, as the Python parser says it
        if len(node.value) > MAX_STRING:
            why = f"a string of more than {MAX_STRING} characters, the limit"
            raise TooComplex(why, node.start_mark)
        return node

    def _count(self, nodes: int, height: int, mark: Mark | None) -> None:
        """Add a node (or an alias's repeat of one) to the open collection."""
        if self._open:
            self._open[-1] = max(self._open[-1], height)
        if len(self._open) + height >= MAX_DEPTH:
            why = f"an alias nests its anchor more than {MAX_DEPTH} levels deep, the limit"
            raise TooComplex(why, mark)
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            why = f"more than {MAX_NODES:,} values, counting each alias as what it repeats"
            raise TooComplex(f"{why}; the limit is {MAX_NODES:,}", mark)


class _PythonLoader(_Counting, Reader, Scanner, Parser, SafeConstructor, Resolver):
    """The same, all in Python: where PyYAML has no libyaml, and to word errors."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Counting.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


_BoundedLoader: type[_Counting] = _PythonLoader

if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _LibyamlLoader(_Counting, CParser, SafeConstructor, Resolver):
        """Events from libyaml's scanner and parser (C), composed and counted here.

        Scanning and parsing are most of the work of reading a config: in C
        they take an eighth of the time (a 200-service file: 5 ms instead of
        38). The composing stays in Python, so every limit is counted the same.
        """

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _Counting.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    _BoundedLoader = _LibyamlLoader
