"""Reading rings for ``tinit logs``: where ``-n`` starts, bounded runs, and following."""

from __future__ import annotations

import trio

from tinit.output import Ring
from tinit.ringread import RUN_BYTES, Follower, Run, read_kept


def lines_of(runs: list[Run]) -> list[tuple[str, str, str]]:
    return [(run.service, run.stream, text) for run in runs for text in run.lines]


def test_tail_finds_the_start_of_the_last_n_lines_inside_a_block() -> None:
    ring = Ring()
    ring.add("stdout", b"a\nb\nc\n", ts=1.0)
    ring.add("stderr", b"d\ne\n", ts=2.0)
    assert ring.tail(None) == (0, 0, 5)
    assert ring.tail(2) == (1, 0, 2)
    assert ring.tail(3) == (0, 2, 3)
    assert ring.tail(9) == (0, 0, 5)
    assert ring.tail(0) == (2, 0, 0)
    assert [n for n, *_ in ring.blocks(0, ring.cursor)] == [0, 1]
    assert list(ring.blocks(1, 1)) == []


def test_n_counts_per_service_unless_total() -> None:
    web, db = Ring(), Ring()
    web.add("stdout", b"w1\nw2\n", ts=1.0)
    db.add("stderr", b"d1\n", ts=2.0)
    web.add("stdout", b"w3\n", ts=3.0)
    rings = {"web": web, "db": db}
    assert lines_of(list(read_kept(rings, 2))) == [
        ("web", "stdout", "w2"),
        ("db", "stderr", "d1"),
        ("web", "stdout", "w3"),
    ]
    assert lines_of(list(read_kept(rings, 2, total=True))) == [
        ("db", "stderr", "d1"),
        ("web", "stdout", "w3"),
    ]
    assert [text for *_, text in lines_of(list(read_kept(rings, None)))] == [
        "w1",
        "w2",
        "d1",
        "w3",
    ]
    assert list(read_kept(rings, 0)) == []
    assert list(read_kept(rings, 0, total=True)) == []


def test_a_block_of_tiny_lines_is_cut_into_bounded_runs() -> None:
    ring = Ring()
    ring.add("stdout", b"\n" * 65536 + b"x" * 70000 + b"\n" + b"tail\n", ts=1.0)
    runs = list(read_kept({"web": ring}, None))
    assert len(runs) > 4
    assert all(
        sum(len(t) + 1 for t in run.lines) <= RUN_BYTES for run in runs if len(run.lines) > 1
    )
    texts = [text for run in runs for text in run.lines]
    assert texts == [""] * 65536 + ["x" * 70000, "tail"]


def test_the_end_is_taken_when_called_and_dropped_blocks_are_skipped() -> None:
    ring = Ring(max_bytes=4096)
    for i in range(10):
        ring.add("stdout", f"old {i}\n".encode(), ts=float(i))
    runs = read_kept({"web": ring}, None)
    first = next(runs)
    for i in range(1000):  # pushes every old block out of the ring
        ring.add("stdout", f"new {i}\n".encode(), ts=100.0 + i)
    rest = list(runs)
    assert first.lines == ("old 0",)
    assert all(text.startswith("old") for run in rest for text in run.lines)


async def test_follower_gives_only_lines_added_after_it_was_made() -> None:
    web, db = Ring(), Ring()
    web.add("stdout", b"kept\n")
    follower = Follower({"web": web, "db": db})
    web.add("stdout", b"one\ntwo\n")
    db.add("stderr", b"three\n")
    with trio.fail_after(5):
        got = [await follower.__anext__(), await follower.__anext__()]
        assert lines_of(got) == [
            ("web", "stdout", "one"),
            ("web", "stdout", "two"),
            ("db", "stderr", "three"),
        ]
        async with trio.open_nursery() as nursery:

            async def later() -> None:
                await trio.sleep(0.05)
                db.add("stdout", b"four\n")

            nursery.start_soon(later)
            assert lines_of([await follower.__anext__()]) == [("db", "stdout", "four")]
    await follower.aclose()
