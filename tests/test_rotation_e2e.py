"""Rotation of a ``file:`` output, with tinit as PID 1 and a service writing flat out.

The writer prints numbered lines of varied lengths, some longer than
``max_size``, as fast as it can, then says how many it wrote. Afterwards the
files on disk must be what rotation promises: at most ``keep`` old files;
each within ``max_size`` unless it holds a single longer line; none starting
or ending inside a line; together the last lines written, each exactly once,
none missing in between. Since a file only rotates when the next line would
not fit, all of them together hold at most ``(keep + 1) * max_size`` bytes,
with no slack (a file that holds a single over-long line is over by that
line's excess alone).

The hostile tests run the service as ``nobody`` in a directory it owns and
let it plant symbolic links to a root-only file where rotated files go, and
a directory where a rename must land.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.nobody import NOBODY, SECRET
from tests.nsrun import ROOT, Tinit, tinit_argv, wait_for
from tests.svcrun import finish, run_config, start, write_config

if TYPE_CHECKING:
    pass

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(os.getuid() != 0, reason="needs root to run tinit as PID 1"),
]

#: the writer: argv TOTAL_BYTES LONG_LINE_BYTES COUNT_FILE. Line n is its number, a
#: space, and filler whose length follows from n (see `expected`), so every line
#: read back can be checked whole. Every 997th line is long.
WRITER = r"""
import os, sys
total, long_len, count_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = sys.stdout.buffer
written = n = 0
while written < total:
    chunk = []
    size = 0
    while size < 256 * 1024:
        fill = long_len if n % 997 == 996 else n * 7919 % 113
        line = b"%010d %s\n" % (n, b"x" * fill)
        chunk.append(line)
        size += len(line)
        n += 1
    out.write(b"".join(chunk))
    written += size
out.flush()
with open(count_file + ".tmp", "w") as f:
    f.write(str(n))
os.rename(count_file + ".tmp", count_file)
"""
LINE = re.compile(rb"(\d{10}) (x*)\n")


def expected(n: int, long_len: int) -> bytes:
    fill = long_len if n % 997 == 996 else n * 7919 % 113
    return b"%010d %s\n" % (n, b"x" * fill)


def rotated(path: Path, keep: int) -> list[Path]:
    """The files of ``path`` that exist, oldest first: PATH.keep ... PATH.1, PATH."""
    names = [Path(f"{path}.{i}") for i in range(keep, 0, -1)] + [path]
    return [p for p in names if p.exists()]


def check_files(path: Path, *, keep: int, max_size: int, long_len: int, count: int) -> int:
    """Assert what rotation promises of the files of ``path``; return the lines they hold."""
    assert not Path(f"{path}.{keep + 1}").exists()
    files = rotated(path, keep)
    total = 0
    numbers: list[int] = []
    for file in files:
        data = file.read_bytes()
        total += len(data)
        assert data.endswith(b"\n"), f"{file} ends inside a line"
        lines = data.splitlines(keepends=True)
        for line in lines:
            match = LINE.fullmatch(line)
            assert match is not None, f"{file} has a broken line: {line[:40]!r}"
            n = int(match[1])
            assert line == expected(n, long_len), f"{file}: line {n} is not whole"
            numbers.append(n)
        if len(data) > max_size:
            assert len(lines) == 1, f"{file} is {len(data)} bytes in {len(lines)} lines"
    assert total <= (keep + 1) * max(max_size, long_len + 12)
    # a contiguous run of the last lines written: no gap, no line twice
    assert numbers == list(range(count - len(numbers), count))
    return len(numbers)


def status(tinit: Tinit, name: str) -> dict[str, object]:
    done = subprocess.run(
        tinit_argv("status", "--json", name),
        env=tinit.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    [found] = json.loads(done.stdout)
    return dict(found)


def run_writer(
    tmp_path: Path, *, total: int, max_size: int, keep: int, long_len: int, timeout: float
) -> None:
    log = tmp_path / "out" / "writer.log"
    log.parent.mkdir()
    writer = tmp_path / "writer.py"
    writer.write_text(WRITER)
    count_file = tmp_path / "count"
    config = write_config(
        tmp_path,
        f"""
        version: 1
        settings:
          log_rotation: {{max_size: {max_size}, keep: {keep}}}
        services:
          writer:
            command: [PYTHON, {writer}, "{total}", "{long_len}", {count_file}]
            oneshot: true
            output: file:{log}
          keeper:
            command: [sleep, "600"]
        """,
    )
    tinit = start(config)
    try:
        assert wait_for(count_file.exists, timeout=timeout, interval=0.2)
        assert wait_for(
            lambda: status(tinit, "writer")["state"] == "exited", timeout=30, interval=0.2
        )
        rotations = status(tinit, "writer")["log_rotations"]
        tinit.signal(signal.SIGTERM)
        result = finish(tinit)
    finally:
        tinit.kill()
    count = int(count_file.read_text())
    held = check_files(log, keep=keep, max_size=max_size, long_len=long_len, count=count)
    assert held < count  # the oldest lines were dropped: rotation went all the way round
    events = result.named("output_rotated")
    assert len(events) == rotations
    assert isinstance(rotations, int)
    assert rotations >= total // max_size - 1
    assert not result.named("output_rotate_failed")


def test_a_fast_writer_rotates_at_line_boundaries(tmp_path: Path) -> None:
    """20 MB in 16 KiB files, with lines of 20 KiB among them."""
    run_writer(tmp_path, total=20 << 20, max_size=16 << 10, keep=4, long_len=20_000, timeout=60)


def test_two_hundred_megabytes_flat_out(tmp_path: Path) -> None:
    """200 MB into 8 MiB files: about 3 s here, so it always runs."""
    run_writer(tmp_path, total=200 << 20, max_size=8 << 20, keep=3, long_len=60_000, timeout=150)


# -- a hostile service user --------------------------------------------------------


def test_links_planted_where_rotated_files_go_are_never_followed(own: Path, secret: Path) -> None:
    """Each rename replaces the planted link itself; the root file stays as it was."""
    log = own / "app.log"
    plant = "; ".join(f"ln -sfn {secret} {log}.{i}" for i in (1, 2, 3))
    result = run_config(
        own,
        f"""
        version: 1
        services:
          app:
            command: [sh, -c, 'for n in $(seq 200); do {plant}; i=0; while [ $i -lt 40 ]; do echo "line $n $i padding padding padding padding"; i=$((i+1)); done; done']
            user: nobody
            oneshot: true
            output: file:{log}
            log_rotation: {{max_size: 4K, keep: 3}}
        """,
        timeout=60,
    )
    assert result.code == 0, result.stderr[-2000:]
    assert secret.read_bytes() == SECRET
    assert secret.stat().st_uid == 0
    assert oct(secret.stat().st_mode & 0o777) == oct(0o600)
    assert len(result.named("output_rotated")) > 50
    assert not result.named("output_rotate_failed")
    for i in (1, 2, 3):
        rotated_file = Path(f"{log}.{i}")
        if not rotated_file.is_symlink():  # a link planted after the last rotation may be left
            assert rotated_file.read_bytes().startswith(b"line ")
            assert rotated_file.stat().st_uid == NOBODY
    assert log.read_bytes().endswith(b"line 200 39 padding padding padding padding\n")


def test_a_rotation_that_fails_is_said_once_and_output_goes_on_bounded(own: Path) -> None:
    """A directory named PATH.1 makes every rename fail: the file grows to the cap, then drops."""
    log = own / "app.log"
    result = run_config(
        own,
        f"""
        version: 1
        services:
          app:
            command: [sh, -c, 'mkdir {log}.1 && touch {log}.1/x && seq 100000']
            user: nobody
            oneshot: true
            output: file:{log}
            log_rotation: {{max_size: 8K, keep: 1}}
        """,
        timeout=60,
    )
    assert result.code == 0, result.stderr[-2000:]
    [failed] = result.named("output_rotate_failed")
    assert failed["sink"] == str(log)
    assert failed["writes_on_up_to"] == 16384
    assert not result.named("output_rotated")
    data = log.read_bytes()
    assert len(data) <= 16384
    assert data.endswith(b"\n")
    assert data.splitlines()[:3] == [b"1", b"2", b"3"]
    assert Path(f"{log}.1").is_dir()
