"""Line assembly and formatting of service output: pure bytes work, no I/O.

Throughput comes from never touching single lines in Python on the hot path.
A pipe is read in blocks of up to ``READ_SIZE`` bytes; `LineAssembler` keeps
the partial last line and hands back whole lines as one ``bytes`` block, and
`PrefixFormat` puts the service name before every line of a block with one
``bytes.replace``. Only over-long lines and the JSON format need work per line.

Every block these functions return ends with a newline: a line longer than
``MAX_LINE`` is cut into ``MAX_LINE`` pieces, each of which becomes a line of
its own, and a partial last line gets a newline when it is flushed at EOF.
"""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_LINE: Final = 64 * 1024
"""Longest line passed on whole; longer lines are split into pieces this long."""

READ_SIZE: Final = 64 * 1024
"""Bytes read from a service pipe at a time. Must not exceed ``MAX_LINE``."""

OUT_MAX: Final = 256 * 1024
"""Formatted output is written in pieces of about this size at most."""

# Foreground colors for names, skipping red (looks like an error) and the
# greys (unreadable on some terminals).
_PALETTE: Final = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)

_JSON: Final = json.JSONEncoder(ensure_ascii=False)
_JSON_STEP: Final = 16 * 1024  # lines are decoded this many bytes at a time


class LineAssembler:
    """Turns the bytes of one stream into blocks of whole lines."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    @property
    def pending(self) -> int:
        """Bytes of the partial last line held back, at most ``MAX_LINE``."""
        return len(self._tail)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` (at most ``READ_SIZE`` bytes); return the blocks of lines now whole."""
        if self._tail:
            data = self._tail + data
        blocks: list[bytes] = []
        cut = data.rfind(b"\n") + 1
        rest = data[cut:] if cut < len(data) else b""
        if cut:
            body = data[:cut] if cut < len(data) else data
            # The held-back tail is at most MAX_LINE bytes and a read at most
            # READ_SIZE <= MAX_LINE, so a line that lies wholly inside this
            # read is short enough: only the first line, the one continuing
            # the tail, can be over-long.
            if cut > MAX_LINE + 1 and body.find(b"\n", 0, MAX_LINE + 1) < 0:
                end = body.find(b"\n")
                blocks.extend(_pieces(body[:end]))
                blocks.append(body[end - (end - 1) % MAX_LINE - 1 : end + 1])
                body = body[end + 1 :]
            if body:
                blocks.append(body)
        if len(rest) > MAX_LINE:
            # Held-back bytes stay bounded even if no newline ever comes; keep
            # up to MAX_LINE bytes, since an exactly MAX_LINE-long line must not
            # be split if its newline arrives next.
            keep = (len(rest) - 1) % MAX_LINE + 1
            blocks.extend(_pieces(rest[: len(rest) - keep], whole=True))
            rest = rest[len(rest) - keep :]
        self._tail = rest
        return blocks

    def flush(self) -> bytes:
        """Return the partial last line with a newline added (or ``b""``), at EOF."""
        tail, self._tail = self._tail, b""
        return tail + b"\n" if tail else b""


def _pieces(line: bytes, *, whole: bool = False) -> list[bytes]:
    """Cut ``line`` (no newline) into newline-terminated ``MAX_LINE`` pieces.

    Without ``whole``, the last piece (1..MAX_LINE bytes) is left out: the
    caller emits it together with the line's own newline.
    """
    stop = len(line) if whole else len(line) - (len(line) - 1) % MAX_LINE - 1
    return [line[i : i + MAX_LINE] + b"\n" for i in range(0, stop, MAX_LINE)]


def _cuts(body: bytes, step: int) -> Iterator[bytes]:
    """Split a block of whole lines into blocks of at most ``step`` bytes.

    A single line longer than ``step`` becomes a block of its own.
    """
    if len(body) <= step:
        yield body
        return
    start = 0
    while len(body) - start > step:
        cut = body.rfind(b"\n", start, start + step) + 1
        if cut <= start:
            cut = body.find(b"\n", start + step) + 1
        yield body[start:cut]
        start = cut
    if start < len(body):
        yield body[start:]


def name_prefix(name: str, width: int, *, color: bool) -> bytes:
    """The ``prefix`` mode marker, ``NAME | `` padded to ``width``, ANSI-colored if asked.

    The color is picked from the name with a stable hash, so a service keeps its
    color across restarts and runs of tinit.
    """
    label = f"{name:<{width}} |"
    if color:
        code = _PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)]
        label = f"\x1b[{code}m{label}\x1b[0m"
    return (label + " ").encode()


class PrefixFormat:
    """Puts a fixed prefix before every line of a block."""

    __slots__ = ("_nl_prefix", "_step", "prefix")

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self._nl_prefix = b"\n" + prefix
        # A block of n bytes holds at most n lines, so n * (1 + len(prefix))
        # bounds its formatted size.
        self._step = max(1, OUT_MAX // (1 + len(prefix)))

    def max_out(self) -> int:
        """Upper bound of the size of one block `blocks` returns."""
        return max(OUT_MAX, MAX_LINE + 1) + len(self.prefix)

    def blocks(self, body: bytes) -> Iterator[memoryview]:
        """Format a block of whole lines, in pieces of at most `max_out` bytes.

        The pieces are made one at a time, as the caller asks for them.
        """
        plen = len(self.prefix)
        # At most `room` prefixes fit in OUT_MAX. replace() stops after that
        # many (finding newlines with memchr, faster than bytes.count), so a
        # block of very short lines costs one bounded try before it is cut.
        room = max(0, (OUT_MAX - len(body)) // plen)
        replaced = body.replace(b"\n", self._nl_prefix, room)
        if len(replaced) - len(body) < room * plen:
            yield self._view(self.prefix + replaced)
            return
        del replaced
        for part in _cuts(body, self._step):
            yield self._view(self.prefix + part.replace(b"\n", self._nl_prefix))

    def _view(self, out: bytes) -> memoryview:
        # Replacing every newline also put a prefix after the last one; a view
        # that stops short of it saves copying the block once more.
        return memoryview(out)[: len(out) - len(self.prefix)]


def rfc3339(ts: float) -> str:
    """A Unix time as an RFC 3339 UTC timestamp with microseconds."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JsonFormat:
    """Turns lines into JSON records ``{"ts", "service", "stream", "line"}``, one a line."""

    __slots__ = ("_service",)

    def __init__(self, service: str) -> None:
        self._service = _JSON.encode(service)

    def max_out(self) -> int:
        """Upper bound of the size of one block `blocks` returns."""
        # A line's bytes expand at most sixfold (a control byte becomes \u00XX).
        return OUT_MAX + 6 * MAX_LINE + len(self._service) + 128

    def blocks(self, body: bytes, stream: str, ts: float) -> Iterator[bytes]:
        """Format a block of whole lines, in pieces of at most `max_out` bytes.

        The pieces are made one at a time, as the caller asks for them. Invalid
        UTF-8 becomes U+FFFD; decoding many lines at once gives the same text
        as decoding them one by one, since a newline byte never belongs to a
        multi-byte sequence.
        """
        head = (
            f'{{"ts": "{rfc3339(ts)}", "service": {self._service}, "stream": "{stream}", "line": '
        )
        records: list[bytes] = []
        size = 0
        for part in _cuts(body, _JSON_STEP):
            texts = part.decode("utf-8", "replace").split("\n")
            texts.pop()
            for text in texts:
                record = f"{head}{_JSON.encode(text)}}}\n".encode()
                records.append(record)
                size += len(record)
                if size >= OUT_MAX:
                    piece = b"".join(records)
                    records, size = [], 0
                    yield piece
        if records:
            yield b"".join(records)
