"""The rotation of a file output, in this process: where to cut, and what a failure leaves.

End to end (tinit as PID 1, a writer flat out, a hostile service user) is
in test_rotation_e2e.py.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from tinit.config import LogRotation
from tinit.output import Sink
from tinit.rotation import RETRY_AFTER, Rotator, Step, fitting
from tinit.safeopen import FileRefused

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("data", "start", "used", "limit", "want"),
    [
        (b"ab\ncd\n", 0, 0, 10, 6),  # all of it fits
        (b"ab\ncd\n", 0, 4, 10, 6),  # exactly up to the limit
        (b"ab\ncd\n", 0, 5, 10, 3),  # one line of two
        (b"ab\ncd\n", 3, 5, 10, 3),  # from an offset
        (b"ab\ncd\n", 0, 8, 10, 0),  # not even the first line: rotate
        (b"ab\ncd\n", 0, 12, 10, 0),  # already past the limit
        (b"abcdefgh\nx\n", 0, 0, 4, 9),  # an empty file takes one long line whole
        (b"abcdefgh\nx\n", 0, 1, 4, 0),  # a file that is not empty does not
        (b"abcdefgh", 0, 0, 4, 8),  # no newline at all: all of it, as one line
    ],
)
def test_fitting_cuts_only_after_a_newline(
    data: bytes, start: int, used: int, limit: int, want: int
) -> None:
    assert fitting(data, start, used, limit) == want


def _lines(n: int, first: int = 0) -> bytes:
    return b"".join(b"%05d\n" % i for i in range(first, first + n))


def _write(rotator: Rotator, fd: int, data: bytes, now: float) -> tuple[int, int]:
    """What the file sink does with ``data``; returns the current fd and bytes dropped."""
    start = dropped = 0
    while start < len(data):
        step, n = rotator.next_step(data, start, now)
        if step is Step.WRITE:
            n = os.write(fd, data[start : start + n])
            rotator.written(n)
        elif step is Step.ROTATE:
            new = rotator.rotate(now)
            if new is not None:
                os.close(fd)
                fd = new
            continue
        else:
            dropped += n
        start += n
    return fd, dropped


def test_files_move_up_and_the_oldest_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    rotator, fd = Rotator.open_first(str(path), LogRotation(max_size=4096, keep=2), None)
    try:
        for block in range(4):  # each block is 4092 bytes: one file each
            fd, dropped = _write(rotator, fd, _lines(682, block * 682), now=0.0)
            assert dropped == 0
    finally:
        os.close(fd)
        rotator.close()
    assert rotator.rotations == 3
    assert path.read_bytes() == _lines(682, 3 * 682)
    assert (tmp_path / "app.log.1").read_bytes() == _lines(682, 2 * 682)
    assert (tmp_path / "app.log.2").read_bytes() == _lines(682, 682)
    assert not (tmp_path / "app.log.3").exists()
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)


def test_a_planted_link_is_moved_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"keep me\n")
    path = tmp_path / "app.log"
    os.symlink(target, f"{path}.1")
    os.symlink(target, f"{path}.2")
    rotator, fd = Rotator.open_first(str(path), LogRotation(max_size=4096, keep=2), None)
    try:
        fd, _ = _write(rotator, fd, _lines(1000), now=0.0)
    finally:
        os.close(fd)
        rotator.close()
    assert target.read_bytes() == b"keep me\n"
    assert (tmp_path / "app.log.1").read_bytes() == _lines(682)
    assert os.path.islink(f"{path}.2")  # the link moved up, untouched


def test_a_link_as_the_file_itself_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"keep me\n")
    os.symlink(target, tmp_path / "app.log")
    with pytest.raises(FileRefused, match="symbolic link"):
        Rotator.open_first(str(tmp_path / "app.log"), LogRotation(max_size=4096), None)
    assert target.read_bytes() == b"keep me\n"


def test_a_failed_rotation_writes_on_to_the_cap_then_drops_and_retries_later(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.log"
    (tmp_path / "app.log.1").mkdir()
    (tmp_path / "app.log.1" / "x").touch()  # a rename onto it fails: not an empty directory
    rotator, fd = Rotator.open_first(str(path), LogRotation(max_size=4096, keep=1), None)
    try:
        fd, dropped = _write(rotator, fd, _lines(2000), now=0.0)
        failed = rotator.error
        assert isinstance(failed, OSError)
        assert rotator.rotations == 0
        assert path.stat().st_size == 8190  # the cap (2 files' room) in whole lines
        assert dropped == 2000 * 6 - 8190
        # Not yet time to try again: still dropping.
        assert rotator.next_step(b"xyz\n", 0, RETRY_AFTER / 2)[0] is Step.DROP
        (tmp_path / "app.log.1" / "x").unlink()
        (tmp_path / "app.log.1").rmdir()
        assert rotator.next_step(b"x\n", 0, RETRY_AFTER)[0] is Step.ROTATE
        fd, dropped = _write(rotator, fd, _lines(1), now=RETRY_AFTER)
    finally:
        os.close(fd)
        rotator.close()
    assert dropped == 0
    assert rotator.error is None
    assert rotator.rotations == 1
    assert path.read_bytes() == _lines(1)


def test_after_a_failed_open_the_next_try_opens_without_moving_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renames were done: trying them again would move the current file up once more."""
    path = tmp_path / "app.log"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"")
    rotator, fd = Rotator.open_first(str(path), LogRotation(max_size=4096, keep=3), None)
    shift = Rotator._shift

    def shift_then_plant(self: Rotator) -> None:
        shift(self)
        os.symlink(elsewhere, path)  # as a hostile user could, between rename and open

    monkeypatch.setattr(Rotator, "_shift", shift_then_plant)
    try:
        fd, _ = _write(rotator, fd, _lines(700), now=0.0)
        assert rotator.rotations == 0
        assert "symbolic link" in str(rotator.error)
        monkeypatch.setattr(Rotator, "_shift", shift)
        path.unlink()
        fd, _ = _write(rotator, fd, _lines(100, 700), now=RETRY_AFTER)
    finally:
        os.close(fd)
        rotator.close()
    assert rotator.rotations == 1
    assert elsewhere.read_bytes() == b""
    # the lines written while the open failed went on into the moved file
    assert (tmp_path / "app.log.1").read_bytes() == _lines(700)
    assert not (tmp_path / "app.log.2").exists()
    assert path.read_bytes() == _lines(100, 700)


async def test_a_device_takes_the_output_and_is_never_rotated() -> None:
    sink = Sink.for_file("/dev/null", None, LogRotation(max_size=4096, keep=1))
    try:
        assert await sink.write(_lines(5000)) == 0
        assert sink.rotations == 0
        assert sink.dropped == 0
    finally:
        sink.close()


async def test_a_sink_rotates_and_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    sink = Sink.for_file(str(path), None, LogRotation(max_size=4096, keep=1))
    try:
        rotated = await sink.write(_lines(1000))
        # a second service naming the same file finds the sink by the file it writes now
        again = Sink.for_file(str(path), None, LogRotation(max_size=4096, keep=1))
        assert again is sink
        again.close()
        rotated += await sink.write(_lines(500, 1000))
    finally:
        sink.close()
    assert rotated == sink.rotations == 2
    assert (tmp_path / "app.log.1").read_bytes() == _lines(682, 682)
    assert path.read_bytes() == _lines(1500 - 1364, 1364)


async def test_the_last_service_to_open_a_shared_file_sets_its_rotation(tmp_path: Path) -> None:
    """Services sharing a file rotate it alike (check says so); in a reload, the newest wins."""
    path = tmp_path / "app.log"
    first = Sink.for_file(str(path), None, LogRotation(max_size=1 << 20, keep=1))
    second = Sink.for_file(str(path), None, LogRotation(max_size=4096, keep=1))
    try:
        assert second is first
        assert await first.write(_lines(1000)) == 1
        first.close()
        assert path.read_bytes() == _lines(1000 - 682, 682)
        third = Sink.for_file(str(path), None, None)
        assert third is first
        assert await third.write(_lines(1000, 1000)) == 0
        third.close()
    finally:
        second.close()
    assert path.stat().st_size == (2000 - 682) * 6
