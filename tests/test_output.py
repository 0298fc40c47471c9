"""Service output: formats, line assembly, back-pressure, sinks and the ring."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import trio

from tinit._lines import (
    MAX_LINE,
    OUT_MAX,
    READ_SIZE,
    JsonFormat,
    LineAssembler,
    PrefixFormat,
    name_prefix,
)
from tinit.output import Output, Ring, Sink, _piece

_procs: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    yield
    while _procs:
        proc = _procs.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def spawn(code: str, stdout: int, stderr: int, *args: str) -> subprocess.Popen[bytes]:
    """Start ``python -c code`` with the given fds 1 and 2; the test's fixture reaps it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
    )
    _procs.append(proc)
    return proc


async def reap(proc: subprocess.Popen[bytes]) -> int:
    while proc.poll() is None:
        await trio.sleep(0.005)
    return proc.returncode


class Drained:
    """A pipe whose write end is wrapped in a `Sink` and whose read end the test reads."""

    def __init__(self) -> None:
        r, w = os.pipe()
        self.sink = Sink.for_fd(w)
        os.close(w)
        os.set_blocking(r, False)
        self.r = r
        self.data = bytearray()

    def finish(self) -> bytes:
        """Close the sink, read what it wrote, and close the read end."""
        self.sink.close()
        while chunk := os.read(self.r, 1 << 20):
            self.data += chunk
        os.close(self.r)
        return bytes(self.data)

    async def drain(self) -> None:
        """Read until EOF, that is until the sink is closed."""
        while True:
            try:
                chunk = os.read(self.r, 1 << 20)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.r)
                continue
            if not chunk:
                break
            self.data += chunk
        trio.lowlevel.notify_closing(self.r)
        os.close(self.r)


def make_output(
    name: str, mode: str, stdout: Sink, stderr: Sink, ring: Ring | None = None
) -> Output:
    return Output(
        name, mode, width=len(name), stdout=stdout, stderr=stderr, ring=ring or Ring(), color=False
    )


@dataclass
class Run:
    out: bytes
    err: bytes
    ring: Ring
    output: Output


async def run_service(
    code: str, mode: str = "prefix", *, name: str = "web", width: int = 3, color: bool = False
) -> Run:
    """Run ``python -c code`` under an `Output` until it exits and its output is pumped."""
    out, err, ring = Drained(), Drained(), Ring()
    output = Output(
        name, mode, width=width, stdout=out.sink, stderr=err.sink, ring=ring, color=color
    )
    fd1, fd2 = output.open()
    proc = spawn(code, fd1, fd2)
    output.close_child_ends()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(out.drain)
        nursery.start_soon(err.drain)
        await output.pump()
        out.sink.close()
        err.sink.close()
    assert await reap(proc) == 0
    return Run(bytes(out.data), bytes(err.data), ring, output)


# Formats


async def test_prefix_pads_names_and_keeps_stdout_and_stderr_apart() -> None:
    """`prefix` mode pads names to the width; stdout lines go to stdout, stderr lines to stderr."""
    code = "import sys; print('hello'); print('oops', file=sys.stderr); print('bye')"
    with trio.fail_after(10):
        run = await run_service(code, name="web", width=6)
    assert run.out == b"web    | hello\nweb    | bye\n"
    assert run.err == b"web    | oops\n"


async def test_prefix_colors_only_the_prefix_and_only_when_asked() -> None:
    """With ``color`` the name gets a stable ANSI color and the line stays plain; without, none."""
    with trio.fail_after(10):
        plain = await run_service("print('hi')", name="db", width=2)
        colored = await run_service("print('hi')", name="db", width=2, color=True)
    assert plain.out == b"db | hi\n"
    assert re.fullmatch(rb"\x1b\[\d+mdb \|\x1b\[0m hi\n", colored.out)
    assert name_prefix("db", 2, color=True) == colored.out[:-3]
    assert name_prefix("db", 9, color=True).split(b"m")[0] == colored.out.split(b"m")[0]


async def test_partial_last_line_is_flushed_at_eof() -> None:
    """A last line without a newline is passed on, with the newline added, when the pipe closes."""
    code = "import os; os.write(1, b'a\\nb'); os.write(2, b'no newline')"
    with trio.fail_after(10):
        run = await run_service(code)
    assert run.out == b"web | a\nweb | b\n"
    assert run.err == b"web | no newline\n"


async def test_json_records_carry_time_service_stream_and_line() -> None:
    """`json` mode writes one exact json.dumps record per line, to the line's own stream."""
    code = "import os; os.write(1, 'héllo\\n'.encode()); os.write(2, b'bad \\xff\\n')"
    before = time.time()
    with trio.fail_after(10):
        run = await run_service(code, "json", name='we"b')
    after = time.time()
    records = {"stdout": run.out, "stderr": run.err}
    texts = {"stdout": "héllo", "stderr": "bad \ufffd"}
    for stream, raw in records.items():
        line = raw.decode()
        assert line.endswith("}\n") and line.count("\n") == 1
        ts = json.loads(line)["ts"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ts)
        assert before - 1 <= datetime.fromisoformat(ts).timestamp() <= after + 1
        record = {"ts": ts, "service": 'we"b', "stream": stream, "line": texts[stream]}
        assert line == json.dumps(record, ensure_ascii=False) + "\n"


async def test_file_mode_appends_raw_lines_of_both_streams(tmp_path: Path) -> None:
    """`file:PATH` appends the bytes the service wrote, both streams, to a file created 0640."""
    path = tmp_path / "svc.log"
    code = "import os; os.write(1, b'out 1\\n'); os.write(2, b'err\\xff\\n'); os.write(1, b'out 2')"
    old = os.umask(0o077)
    try:
        with trio.fail_after(10):
            run = await run_service(code, f"file:{path}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    content = path.read_bytes()
    assert sorted(content.splitlines(keepends=True)) == [b"err\xff\n", b"out 1\n", b"out 2\n"]
    assert content.index(b"out 1") < content.index(b"out 2")
    assert run.out == run.err == b""
    with trio.fail_after(10):
        await run_service("print('again')", f"file:{path}")
    assert path.read_bytes() == content + b"again\n"


async def test_file_sinks_are_shared_by_path(tmp_path: Path) -> None:
    """Every service naming the same file shares one sink, which closes with its last user."""
    a = Sink.for_file(str(tmp_path / "x.log"))
    b = Sink.for_file(f"{tmp_path}/./x.log")
    assert a is b
    a.close()
    await b.write(b"still open\n")
    b.close()
    c = Sink.for_file(str(tmp_path / "x.log"))
    assert c is not a
    c.close()
    assert (tmp_path / "x.log").read_bytes() == b"still open\n"


async def test_raw_mode_gives_the_service_tinits_own_fds(capfd: pytest.CaptureFixture[str]) -> None:
    """`raw` hands out duplicates of fds 1 and 2; nothing passes through tinit."""
    ring = Ring()
    sink = Sink.for_fd(1)
    output = Output("web", "raw", width=3, stdout=sink, stderr=sink, ring=ring, color=False)
    with trio.fail_after(10):
        fd1, fd2 = output.open()
        for mine, theirs in ((fd1, 1), (fd2, 2)):
            assert (os.fstat(mine).st_dev, os.fstat(mine).st_ino) == (
                os.fstat(theirs).st_dev,
                os.fstat(theirs).st_ino,
            )
        proc = spawn("import sys; print('straight'); print('through', file=sys.stderr)", fd1, fd2)
        output.close_child_ends()
        await output.pump()
        assert await reap(proc) == 0
    sink.close()
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("straight\n", "through\n")
    assert ring.lines() == []


async def test_null_mode_discards_everything() -> None:
    """`null` gives the service /dev/null; nothing reaches a sink or the ring."""
    out, ring = Drained(), Ring()
    output = make_output("web", "null", out.sink, out.sink, ring)
    with trio.fail_after(10):
        fd1, fd2 = output.open()
        devnull = os.stat(os.devnull).st_rdev
        assert os.fstat(fd1).st_rdev == os.fstat(fd2).st_rdev == devnull
        proc = spawn("print('lost')", fd1, fd2)
        output.close_child_ends()
        await output.pump()
        assert await reap(proc) == 0
    assert out.finish() == b""
    assert ring.lines() == []


@pytest.mark.parametrize("mode", ["prefix", "json", "file"])
async def test_ring_keeps_the_raw_lines_in_piping_modes(mode: str, tmp_path: Path) -> None:
    """Every mode that pipes the output feeds the ring with the lines as written."""
    if mode == "file":
        mode = f"file:{tmp_path}/f.log"
    code = "import sys; print('one'); print('two', file=sys.stderr); sys.stdout.write('three')"
    with trio.fail_after(10):
        run = await run_service(code, mode)
    lines = run.ring.lines()
    assert sorted((stream, text) for _, stream, text in lines) == [
        ("stderr", "two"),
        ("stdout", "one"),
        ("stdout", "three"),
    ]
    assert all(abs(ts - time.time()) < 10 for ts, _, _ in lines)


def test_output_rejects_unknown_modes() -> None:
    """A mode tinit does not know, or a relative file path, is a programming error."""
    sink = Sink.for_fd(1)
    try:
        for mode in ("bogus", "file:relative.log", "file"):
            with pytest.raises(ValueError, match="output"):
                Output("web", mode, width=3, stdout=sink, stderr=sink, ring=Ring(), color=False)
    finally:
        sink.close()


# Line assembly


def reference_lines(data: bytes) -> bytes:
    """What a correct assembler emits: every line cut into MAX_LINE pieces, each its own line."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    out = bytearray()
    for line in lines:
        for i in range(0, max(len(line), 1), MAX_LINE):
            out += line[i : i + MAX_LINE] + b"\n"
    return bytes(out)


@pytest.mark.parametrize("seed", range(6))
def test_line_assembly_matches_the_reference_for_any_chunking(seed: int) -> None:
    """Whatever the read boundaries, blocks hold whole lines, none over 64 KiB, nothing lost."""
    rnd = random.Random(seed)
    lengths = [0, 1, 99, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 2 * MAX_LINE, 3 * MAX_LINE + 7]
    parts = []
    for i in range(300):
        n = rnd.choice(lengths) if i % 10 == 0 else rnd.randrange(0, 300)
        parts.append(bytes([65 + i % 26]) * n + b"\n")
    data = b"".join(parts) + b"z" * rnd.choice([0, 5, MAX_LINE, 2 * MAX_LINE + 3])
    asm = LineAssembler()
    blocks: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = rnd.choice([1, 7, 100, 4096, READ_SIZE, rnd.randrange(1, READ_SIZE + 1)])
        blocks += asm.feed(data[pos : pos + size])
        assert asm.pending <= MAX_LINE
        pos += size
    last = asm.flush()
    if last:
        blocks.append(last)
    for block in blocks:
        assert block.endswith(b"\n")
        assert max(len(line) for line in block[:-1].split(b"\n")) <= MAX_LINE
    assert b"".join(blocks) == reference_lines(data)


def test_prefix_of_many_short_lines_comes_in_bounded_pieces() -> None:
    """A block of empty lines is formatted in pieces no bigger than max_out, all lines kept."""
    fmt = PrefixFormat(b"a-rather-long-service-name | ")
    body = b"\n" * (2 * READ_SIZE) + b"x" * 1000 + b"\n"
    pieces = list(fmt.blocks(body))
    assert len(pieces) > 1
    assert all(len(p) <= fmt.max_out() for p in pieces)
    expected = b"a-rather-long-service-name | \n" * (2 * READ_SIZE)
    expected += b"a-rather-long-service-name | " + b"x" * 1000 + b"\n"
    assert b"".join(bytes(p) for p in pieces) == expected


def test_json_of_many_lines_comes_in_bounded_pieces() -> None:
    """JSON output of a big block is cut into pieces no bigger than max_out."""
    fmt = JsonFormat("web")
    body = b"\x01" * (MAX_LINE - 1) + b"\n" + b"line\n" * 20000
    pieces = list(fmt.blocks(body, "stdout", 0.0))
    assert len(pieces) > 1
    assert all(len(p) <= fmt.max_out() for p in pieces)
    records = [json.loads(line) for p in pieces for line in p.splitlines()]
    assert len(records) == 20001
    assert records[0]["line"] == "\x01" * (MAX_LINE - 1)
    assert records[0]["ts"] == "1970-01-01T00:00:00.000000Z"
    assert {r["line"] for r in records[1:]} == {"line"}


async def test_200k_line_is_split_into_64k_pieces_nothing_lost(tmp_path: Path) -> None:
    """A 200 KiB line arrives as 64 KiB pieces, each its own line, in order, every byte kept."""
    code = (
        "import sys; line = bytes(range(33, 127)) * 2180 + b'end'\n"
        "sys.stdout.buffer.write(line[:204800] + b'\\nafter\\n')"
    )
    line = (bytes(range(33, 127)) * 2180 + b"end")[:204800]
    with trio.fail_after(20):
        run = await run_service(code, name="w", width=1)
        path = tmp_path / "long.log"
        await run_service(code, f"file:{path}")
    lines = run.out.split(b"\n")
    assert lines.pop() == b""
    assert [len(x) for x in lines] == [4 + MAX_LINE] * 3 + [4 + 204800 - 3 * MAX_LINE, 4 + 5]
    assert all(x.startswith(b"w | ") for x in lines)
    assert b"".join(x[4:] for x in lines[:-1]) == line
    assert path.read_bytes() == reference_lines(line + b"\nafter\n")
    ring_lines = [text for _, _, text in run.ring.lines()]
    assert "".join(ring_lines[:-1]).encode() == line


# Concurrency and back-pressure


WRITER = """
import os, random, sys
name = sys.argv[1]
rnd = random.Random(name)
data = "".join(f"{name} {seq:06d} " + "x" * (seq % 150) + "\\n" for seq in range(N)).encode()
pos = 0
while pos < len(data):
    step = rnd.randrange(1, 9000)
    os.write(1, data[pos : pos + step])
    pos += step
"""


async def test_concurrent_writers_never_tear_or_lose_a_line() -> None:
    """100,000 lines from 4 services into one sink: every line whole, in order, counts exact."""
    per_writer = 25_000
    code = WRITER.replace("N", str(per_writer))
    sink = Drained()
    err = Drained()
    outputs = [make_output(f"w{i}", "prefix", sink.sink, err.sink) for i in range(4)]
    with trio.fail_after(60):
        procs = []
        for i, output in enumerate(outputs):
            fd1, fd2 = output.open()
            procs.append(spawn(code, fd1, fd2, f"w{i}"))
            output.close_child_ends()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.drain)
            async with trio.open_nursery() as pumps:
                for output in outputs:
                    pumps.start_soon(output.pump)
            sink.sink.close()
        for proc in procs:
            assert await reap(proc) == 0
    assert err.finish() == b""
    line_re = re.compile(rb"(w\d) \| (w\d) (\d{6}) (x*)")
    next_seq = {f"w{i}".encode(): 0 for i in range(4)}
    lines = bytes(sink.data).split(b"\n")
    assert lines.pop() == b""
    for line in lines:
        m = line_re.fullmatch(line)
        assert m is not None, line[:200]
        name, writer, seq, xs = m.groups()
        assert name == writer
        assert int(seq) == next_seq[name]
        assert len(xs) == int(seq) % 150
        next_seq[name] += 1
    assert set(next_seq.values()) == {per_writer}


async def test_stalled_reader_blocks_the_service_with_bounded_memory() -> None:
    """A sink nobody reads blocks the service in write(); tinit's memory stays bounded; no loss."""
    lines = 80_000
    code = (
        "import sys\n"
        f"data = b''.join(b'line %07d ' % i + b'y' * 87 + b'\\n' for i in range({lines}))\n"
        "sys.stdout.buffer.write(data)"
    )
    expected = b"".join(b"web | line %07d " % i + b"y" * 87 + b"\n" for i in range(lines))
    out, err = Drained(), Drained()
    output = make_output("web", "prefix", out.sink, err.sink)
    with trio.fail_after(60):
        fd1, fd2 = output.open()
        proc = spawn(code, fd1, fd2)
        output.close_child_ends()
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as pumping:
                pumping.start_soon(output.pump)
                await trio.sleep(1.0)
                # Stalled: the service has not finished writing its 8 MB, and
                # tinit holds no more than its bound.
                assert proc.poll() is None
                assert 0 < output.buffered <= output.peak_buffered <= output.max_buffered
                assert output.max_buffered <= 2 * 1024 * 1024
                nursery.start_soon(out.drain)
            out.sink.close()
        assert await reap(proc) == 0
    assert err.finish() == b""
    assert output.buffered == 0
    assert output.peak_buffered <= output.max_buffered
    assert bytes(out.data) == expected


async def test_pump_closes_its_read_ends_when_cancelled() -> None:
    """Cancelling the pump closes the pipes' read ends: a writer then gets EPIPE, not a hang."""
    out = Drained()
    output = make_output("web", "prefix", out.sink, out.sink)
    with trio.fail_after(10):
        fd1, fd2 = output.open()
        keep = [os.dup(fd1), os.dup(fd2)]
        output.close_child_ends()
        try:
            os.write(keep[0], b"seen\n")
            with trio.move_on_after(0.3):
                await output.pump()
            for fd in keep:
                with pytest.raises(BrokenPipeError):
                    os.write(fd, b"x\n")
        finally:
            for fd in keep:
                os.close(fd)
    assert out.finish() == b"web | seen\n"


# Sinks


async def test_sink_for_a_pipe_leaves_the_shared_description_blocking() -> None:
    """Sink.for_fd on a pipe writes non-blocking through its own description; fd keeps its flags."""
    r, w = os.pipe()
    try:
        sink = Sink.for_fd(w)
        assert fcntl.fcntl(w, fcntl.F_GETFL) & os.O_NONBLOCK == 0
        assert not sink.isatty
        with trio.fail_after(10):
            await sink.write(b"through the pipe\n")
        assert fcntl.fcntl(w, fcntl.F_GETFL) & os.O_NONBLOCK == 0
        sink.close()
        assert os.read(r, 100) == b"through the pipe\n"
    finally:
        os.close(r)
        os.close(w)


async def test_sink_for_a_terminal_leaves_the_shared_description_blocking() -> None:
    """Sink.for_fd on a terminal reports isatty and leaves the terminal fd's flags alone."""
    master, slave = os.openpty()
    try:
        sink = Sink.for_fd(slave)
        assert sink.isatty
        assert fcntl.fcntl(slave, fcntl.F_GETFL) & os.O_NONBLOCK == 0
        with trio.fail_after(10):
            await sink.write(b"tty\n")
        sink.close()
        assert os.read(master, 100).replace(b"\r", b"") == b"tty\n"
    finally:
        os.close(master)
        os.close(slave)


async def test_sink_for_a_socket_waits_without_blocking_trio() -> None:
    """A socket sink applies back-pressure by waiting in trio, not in a blocking send()."""
    a, b = socket.socketpair()
    with a, b:
        sink = Sink.for_fd(a.fileno())
        assert fcntl.fcntl(a.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK == 0
        data = bytes(range(256)) * 16384  # 4 MiB, far more than the socket buffers
        got = bytearray()
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sink.write, data)
                await trio.sleep(0.2)  # returns only if the loop is not stuck in send()
                b.setblocking(False)
                while len(got) < len(data):
                    try:
                        got += b.recv(1 << 20)
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(b)
        sink.close()
        assert bytes(got) == data
        assert fcntl.fcntl(a.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK == 0


async def test_sink_for_a_regular_file_or_devnull_writes_directly(tmp_path: Path) -> None:
    """Regular files and /dev/null take blocking writes, which never wait for a reader."""
    path = tmp_path / "plain"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        with trio.fail_after(10):
            for target in (fd, null):
                sink = Sink.for_fd(target)
                assert not sink.isatty
                await sink.write(b"x" * 1_000_000)
                sink.close()
    finally:
        os.close(fd)
        os.close(null)
    assert path.read_bytes() == b"x" * 1_000_000


async def test_sink_whose_reader_is_gone_counts_dropped_bytes() -> None:
    """Writing to a pipe without a reader loses the data without raising, and counts it."""
    r, w = os.pipe()
    os.close(r)
    try:
        sink = Sink.for_fd(w)
        with trio.fail_after(10):
            await sink.write(b"nobody reads this\n")
        assert sink.dropped == len(b"nobody reads this\n")
        assert isinstance(sink.error, BrokenPipeError)
        sink.close()
    finally:
        os.close(w)


async def test_sink_writes_from_concurrent_tasks_stay_whole() -> None:
    """Big writes from many tasks into a small pipe never interleave inside one write()."""
    out = Drained()
    blocks = [bytes([65 + i]) * 300_000 + b"\n" for i in range(8)]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(out.drain)
            async with trio.open_nursery() as writers:
                for block in blocks:
                    writers.start_soon(out.sink.write, block)
            out.sink.close()
    assert sorted(bytes(out.data).splitlines(keepends=True)) == blocks


async def test_cancelled_write_does_not_glue_the_next_line_to_a_torn_one() -> None:
    """A write cancelled midway leaves a torn line; the next write starts on a fresh line."""
    out = Drained()
    with trio.fail_after(10):
        with trio.move_on_after(0.2):
            await out.sink.write(b"a" * 1_000_000 + b"\n")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(out.drain)
            await out.sink.write(b"next\n")
            out.sink.close()
    torn, rest = bytes(out.data).split(b"\n", 1)
    assert 0 < len(torn) < 1_000_000 and set(torn) == {ord("a")}
    assert rest == b"next\n"


# Ring


def test_ring_is_bounded_in_bytes_and_drops_the_oldest() -> None:
    """The ring never holds more than max_bytes; the oldest blocks go first."""
    ring = Ring(max_bytes=1000)
    for i in range(100):
        ring.add("stdout", f"{i:03d} ".encode() + b"." * 95 + b"\n", ts=float(i))
        assert ring.size <= 1000
    lines = ring.lines()
    # 100-byte blocks with a 13-byte header each: 8 of them fit in 1000 bytes
    assert [ts for ts, _, _ in lines] == [float(i) for i in range(92, 100)]
    assert lines[-1] == (99.0, "stdout", "099 " + "." * 95)
    ring.add("stderr", b"z" * 5000 + b"\n" + b"kept\n")
    # A block bigger than the whole ring keeps only its last whole lines that fit.
    assert ring.size <= 1000
    assert ring.lines(2)[-1][1:] == ("stderr", "kept")
    assert all("z" not in text for _, _, text in ring.lines())


def test_ring_lines_returns_the_last_n_across_blocks() -> None:
    """lines(n) is the last n lines, oldest first, split out of the stored blocks."""
    ring = Ring()
    ring.add("stdout", b"a\nb\nc\n", ts=1.0)
    ring.add("stderr", b"d \xff\n", ts=2.0)
    ring.add("stdout", b"e\nf\n", ts=3.0)
    assert ring.lines(3) == [
        (2.0, "stderr", "d \ufffd"),
        (3.0, "stdout", "e"),
        (3.0, "stdout", "f"),
    ]
    assert ring.lines(5)[0] == (1.0, "stdout", "b")
    assert len(ring.lines()) == len(ring.lines(100)) == 6
    assert ring.lines(0) == []


def test_ring_memory_stays_within_its_bound_for_tiny_blocks() -> None:
    """What a ring of 256 KiB costs is 256 KiB, even filled with 60-byte lines one by one."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ring = Ring()
        for i in range(50_000):
            ring.add("stdout", b"%05d " % i + b"x" * 54 + b"\n", ts=float(i))
        cost = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert ring.size <= ring.max_bytes
    assert cost < ring.max_bytes + 16 * 1024  # pages, plus page and deque headers
    lines = ring.lines()
    assert lines[-1] == (49999.0, "stdout", "49999 " + "x" * 54)
    assert len(lines) * (61 + 13) > ring.max_bytes * 7 // 8  # most of it holds lines


@pytest.mark.parametrize("seed", range(10))
def test_ring_holds_the_newest_blocks_in_order_and_since_resumes(seed: int) -> None:
    """Whatever the block sizes: a suffix of what was added, and since() misses nothing held."""
    rng = random.Random(seed)
    ring = Ring(max_bytes=rng.choice([1000, 4096, 64 * 1024]))
    added: list[tuple[float, str, str]] = []
    cursor = ring.cursor
    seen: list[tuple[float, str, str]] = []
    for i in range(500):
        texts = [
            f"{i}-{k}-" + "y" * rng.choice([0, 5, 100, 3000]) for k in range(rng.randint(1, 4))
        ]
        stream = rng.choice(["stdout", "stderr"])
        ring.add(stream, "".join(t + "\n" for t in texts).encode(), ts=float(i))
        assert ring.size <= ring.max_bytes
        while sum(len(t) + 1 for t in texts) > ring.max_bytes - 13:
            texts.pop(0)  # a block bigger than the ring keeps its last lines that fit
        added.extend((float(i), stream, t) for t in texts)
        if rng.random() < 0.2:
            cursor, new = ring.since(cursor)
            seen.extend(new)
    held = ring.lines()
    assert held and held == added[len(added) - len(held) :]
    assert ring.lines(3) == held[-3:]
    # every line a follower got is a line that was added, in order
    positions = [added.index(line) for line in seen]
    assert positions == sorted(positions)


def test_ring_listeners_and_cursors_give_a_follower_each_new_line_once() -> None:
    """What `tinit logs -f` is built on: a call per add, and since() from a cursor.

    Lines from before the cursor are skipped, every later one comes once and
    in order, and an unlistened callback hears nothing more.
    """
    ring = Ring()
    ring.add("stdout", b"old\n")
    cursor = ring.cursor
    heard: list[int] = []

    def on_add() -> None:
        heard.append(ring.cursor)

    ring.listen(on_add)
    ring.add("stdout", b"one\ntwo\n")
    cursor, got = ring.since(cursor)
    assert [(stream, text) for _, stream, text in got] == [("stdout", "one"), ("stdout", "two")]
    ring.add("stderr", b"three\n")
    ring.add("stdout", b"four\n")
    ring.unlisten(on_add)
    ring.add("stdout", b"five\n")
    cursor, got = ring.since(cursor)
    assert [(stream, text) for _, stream, text in got] == [
        ("stderr", "three"),
        ("stdout", "four"),
        ("stdout", "five"),
    ]
    assert heard == [2, 3, 4]  # each add, after the line is in
    assert ring.since(cursor) == (cursor, [])


# Throughput (correctness only; the speed is measured outside the test suite)


async def test_prefix_throughput_run_is_exact() -> None:
    """20 MB of 100-byte lines through prefix mode arrive exactly, in order."""
    lines = 200_000
    code = (
        "import os\n"
        "block = b''.join(b'%09d ' % i + b'p' * 89 + b'\\n' for i in range(10000))\n"
        f"for _ in range({lines // 10000}): os.write(1, block)"
    )
    expected = hashlib.sha256()
    block = b"".join(b"web | %09d " % i + b"p" * 89 + b"\n" for i in range(10000))
    for _ in range(lines // 10000):
        expected.update(block)
    with trio.fail_after(60):
        run = await run_service(code)
    assert len(run.out) == len(block) * (lines // 10000)
    assert hashlib.sha256(run.out).hexdigest() == expected.hexdigest()
    assert run.output.peak_buffered <= run.output.max_buffered
    assert OUT_MAX >= READ_SIZE


@pytest.mark.parametrize("seed", range(20))
def test_a_pipe_shared_with_raw_services_gets_whole_lines_of_at_most_pipe_buf(seed: int) -> None:
    """Each write is whole lines of <= 4096 bytes (atomic in a pipe), or one longer line alone."""
    rng = random.Random(seed)
    lines = [b"z" * rng.choice([0, 1, 80, 4095, 4096, 9000]) + b"\n" for _ in range(200)]
    data = b"".join(lines) + (b"tail" if seed % 2 else b"")
    pieces, start = [], 0
    while start < len(data):
        n = _piece(data, start)
        assert n > 0
        pieces.append(data[start : start + n])
        start += n
    assert b"".join(pieces) == data
    for piece in pieces:
        if len(piece) > 4096:
            assert piece.count(b"\n") <= 1  # one long line, alone
        if piece is not pieces[-1]:
            assert piece.endswith(b"\n")


async def test_a_pipe_sink_shared_with_raw_services_delivers_everything() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    data = b"".join(b"q" * n + b"\n" for n in (10, 5000, 3, 4095, 70000, 1, 4096) * 20)
    try:
        sink = Sink.for_fd(w)
        sink.share_with_raw_writers()
        received = bytearray()

        async def drain() -> None:
            while len(received) < len(data):
                try:
                    received.extend(os.read(r, 1000))
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(r)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                await sink.write(data)
        sink.close()
        assert bytes(received) == data
    finally:
        os.close(r)
        os.close(w)


async def test_a_cut_off_sink_stops_waiting_for_its_reader_and_counts_what_it_drops() -> None:
    """A shutdown's budget bounds output: a write waiting for a stalled reader stops
    waiting at the cut-off (even one already waiting when it is set), keeps what the
    pipe took, and counts the rest; later writes drop at once instead of waiting."""
    r, w = os.pipe()
    try:
        sink = Sink.for_fd(w)
        data = b"".join(b"%06d\n" % i for i in range(100_000))  # 700 KB: far more than a pipe
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sink.write, data)
                await trio.sleep(0.2)  # the write now waits for a reader that never reads
                began = trio.current_time()
                sink.cut_off_at(began + 0.3)
            assert trio.current_time() - began == pytest.approx(0.3, abs=0.2)
            in_pipe = len(os.read(r, len(data)))
            assert 0 < in_pipe < len(data)
            assert sink.late_bytes == len(data) - in_pipe
            assert sink.late_lines == data[in_pipe:].count(b"\n")
            await sink.write(b"a\n" * 1000)  # now fits: the reader took the pipe's content
            await sink.write(b"b\n" * 100_000)  # does not: dropped in part, without waiting
        assert sink.late_bytes > len(data) - in_pipe
        assert sink.dropped == 0  # a destination that fails is another count
        sink.close()
    finally:
        os.close(r)
        os.close(w)
