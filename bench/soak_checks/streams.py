"""Service output read back from tinit's stdout and stderr, line by line, per service.

Every service line the soak's services write is ``@S NAME RUN STREAM SEQ SIZE
CRC PAYLOAD``: numbered and checksummed, so a line that comes out of tinit
can be told whole, torn, repeated or out of order. tinit prints a service's
lines with a ``NAME | `` prefix or as JSON records, and ``raw`` services
write straight into the same stdout pipe; lines longer than tinit's maximum
come out in pieces, which are put together again here.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import zlib
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from soak import Soak

MAX_LINE: Final = 64 * 1024  # tinit cuts longer lines into pieces this long (docs/configuration.md)
PIPE_BUF: Final = select.PIPE_BUF  # writes up to this size to a pipe are atomic


def verify_line(line: bytes) -> str:
    """'ok', 'short' (a piece of a split line), or 'corrupt' for an ``@S`` line."""
    parts = line.split(b" ", 7)
    if len(parts) < 7:
        return "corrupt"
    try:
        size = int(parts[5])
        crc = int(parts[6], 16)
    except ValueError:
        return "corrupt"
    payload = parts[7] if len(parts) == 8 else b""
    if len(payload) < size:
        return "short"
    if len(payload) > size:
        return "corrupt"
    head = b" ".join(parts[1:6])
    return "ok" if zlib.crc32(head + b" " + payload) == crc else "corrupt"


class Stream:
    """The lines of one service on one stream, as they came out of tinit, checked in order."""

    def __init__(self, service: str, stream: str, mode: str) -> None:
        self.service = service
        self.stream = stream
        self.mode = mode
        self.seqs: dict[int, list[int]] = defaultdict(list)
        self.torn: dict[int, list[int]] = defaultdict(list)
        self.last: tuple[int, int] = (0, -1)
        self.piece: list[bytes] | None = None
        self.piece_size = 0
        self.junk: list[bytes] = []
        self.junk_after: dict[tuple[int, int], list[bytes]] = {}
        self.problems: list[str] = []
        self.lines = 0
        self.bytes = 0
        self.long_lines = 0
        self.unattributed = 0

    def feed(self, body: bytes) -> None:
        """Take one line (or piece of a long line) of this stream's output."""
        if self.piece is not None:
            if body.startswith(b"@S "):
                self.finish_piece(torn=True)
            else:
                if len(self.piece[-1]) != MAX_LINE and self.mode != "raw":
                    self.problems.append(f"a piece of a long line is {len(self.piece[-1])} bytes")
                self.piece.append(body)
                if sum(map(len, self.piece)) >= self.piece_size:
                    self.finish_piece(torn=False)
                return
        if not body.startswith(b"@S "):
            self.junk.append(body)
            return
        verdict = verify_line(body)
        if verdict == "short":
            parts = body.split(b" ", 7)
            self.piece = [body]
            self.piece_size = len(body) - len(parts[7]) + int(parts[5])
            return
        self.accept(body, verdict == "corrupt")

    def finish_piece(self, *, torn: bool) -> None:
        assert self.piece is not None
        whole = b"".join(self.piece)
        self.piece = None
        self.long_lines += 1
        self.accept(whole, torn or verify_line(whole) != "ok")

    def accept(self, line: bytes, torn: bool) -> None:
        parts = line.split(b" ", 7)
        try:
            name, run, stream, seq = (
                parts[1].decode(),
                int(parts[2]),
                parts[3].decode(),
                int(parts[4]),
            )
        except (IndexError, ValueError, UnicodeDecodeError):
            self.problems.append(f"unparseable line {line[:100]!r}")
            return
        if name != self.service or stream != self.stream:
            self.problems.append(
                f"line of {name}/{stream} came out as {self.service}'s: {line[:80]!r}"
            )
            return
        self.lines += 1
        self.bytes += len(line) + 1
        if self.junk:
            self.junk_after[self.last] = self.junk
            self.junk = []
        if (run, seq) <= self.last:
            self.problems.append(
                f"run {run} line {seq} after run {self.last[0]} line {self.last[1]}"
            )
        self.last = (run, seq)
        if torn:
            self.torn[run].append(seq)
        self.seqs[run].append(seq)

    def close(self) -> None:
        if self.piece is not None:
            self.finish_piece(torn=True)
        if self.junk:
            self.junk_after[self.last] = self.junk
            self.junk = []


class OutputReader:
    """Routes tinit's output lines to the :class:`Stream` of their service.

    What is no service's output is kept for the checks: stdout lines from
    nobody, and the lines of tinit's that another writer's line cut into.
    """

    def __init__(self, soak: Soak) -> None:
        self.soak = soak
        self.streams: dict[tuple[str, str], Stream] = {}
        self.unattributed: list[bytes] = []
        self.spliced_short: list[bytes] = []
        self.spliced_long = 0

    def stream(self, service: str, stream: str) -> Stream:
        key = (service, stream)
        if key not in self.streams:
            spec = self.soak.by_name.get(service)
            self.streams[key] = Stream(service, stream, spec.mode if spec else "?")
        return self.streams[key]

    def route(self, line: bytes, stream: str) -> bool:
        """Service output in any mode; False if ``line`` is not service output."""
        names = self.soak.by_name
        if line.startswith(b"@S "):  # raw mode
            name = line.split(b" ", 2)[1].decode(errors="replace")
            if name in names:
                self.stream(name, "o" if stream == "stdout" else "e").feed(line)
                return True
            return False
        if line.startswith(b'{"ts": '):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("service") in names:
                    which = "o" if record["stream"] == "stdout" else "e"
                    self.stream(record["service"], which).feed(record["line"].encode())
                    return True
            return False
        label, sep, body = line.partition(b" | ")
        who = label.rstrip().decode(errors="replace")
        if sep and who in names:
            self.stream(who, "o" if stream == "stdout" else "e").feed(body)
            return True
        return False

    def read_stdout(self, lines: Iterator[bytes]) -> None:
        """Route tinit's stdout; what is nobody's output is kept as unattributed."""
        for line in self.unsplice(lines):
            if not self.route(line, "stdout") and line:
                self.unattributed.append(line[:4096])

    def close(self) -> None:
        """The end of the output: finish every stream's last line and junk."""
        for s in self.streams.values():
            s.close()

    def unsplice(self, lines: Iterator[bytes]) -> Iterator[bytes]:
        """The lines of the shared stdout pipe, with lines cut by other writers put back.

        tinit and every ``raw`` service write into one pipe. A write longer
        than PIPE_BUF to a full pipe is done in parts, and other writers' lines
        can land between the parts: the physical line then holds the head of
        one line and, after it, the start of another. Heads wait here until the
        rest of their line comes (a physical line that starts like no line).
        """
        specs = self.soak.specs
        width = max(len(s.name) for s in specs)
        starts = [re.escape(f"@S {s.name} ".encode()) for s in specs if s.mode == "raw"]
        starts += [re.escape(f"{s.name:<{width}} | ".encode()) for s in specs if s.mode != "raw"]
        starts.append(re.escape(b'{"ts": "'))
        start = re.compile(b"|".join(starts))
        held: list[bytes] = []
        for line in lines:
            cuts = [m.start() for m in start.finditer(line, 1)]
            parts = [line[a:b] for a, b in zip([0, *cuts], [*cuts, len(line)], strict=True)]
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                if held and not start.match(part):
                    joined = self.rejoin(held, part, whole=last)
                    if joined is None:
                        continue  # still not the whole line
                    part = joined
                if last:
                    yield part
                else:
                    held.append(part)
        self.unattributed.extend(h[:4096] for h in held)

    def rejoin(self, held: list[bytes], rest: bytes, *, whole: bool) -> bytes | None:
        """Join ``rest`` to the head it continues (the latest, unless another verifies)."""
        order = list(range(len(held) - 1, -1, -1))
        if whole:
            fits = [i for i in order if verifies(held[i] + rest)]
            order = fits + [i for i in order if i not in fits]
        i = order[0]
        if not whole:
            held[i] += rest
            return None
        line = held.pop(i) + rest
        self.splice(len(line) + 1, line)
        return line

    def splice(self, size: int, line: bytes) -> None:
        """Note a line of tinit's (``size`` bytes with its newline) that a raw line cut into.

        Up to PIPE_BUF bytes, one write(2) of tinit's is atomic, so a cut there
        is tinit's doing; a longer line cannot be written atomically to a pipe
        at all, which makes that cut a limit of raw mode (docs/reliability.md).
        """
        if size <= PIPE_BUF:
            self.spliced_short.append(line[:300])
        else:
            self.spliced_long += 1

    # -- runs ---------------------------------------------------------------------


def verifies(line: bytes) -> bool:
    """Whether ``line``, in any of tinit's output formats, holds a checksummed line or its head."""
    body = line.partition(b" | ")[2] if not line.startswith((b"@S ", b"{")) else line
    if line.startswith(b"{"):
        try:
            body = json.loads(line)["line"].encode()
        except (ValueError, KeyError, TypeError):
            return False
    return verify_line(body) in ("ok", "short")
