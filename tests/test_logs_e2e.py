"""``tinit logs`` against a real tinit as PID 1 whose rings are full of the worst lines.

Ten services each print 2 MB of empty lines, so each ring holds its bound of
one-byte lines. Reading them all must neither grow tinit's memory by more
than a few megabytes nor keep other requests waiting, and must print every
line kept. The bounds asserted are generous: they tell a stream from a
reply built whole (which took tinit from 38 MB to nearly 1 GB and held the
loop for seconds), not fast from slow.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nsrun import ROOT, Tinit, tinit_argv, wait_for
from tests.svcrun import start, write_config
from tinit import client

pytestmark = pytest.mark.timeout(300)

SERVICES = [f"s{i}" for i in range(10)]
#: each service: 2 MB of empty lines, then (once tinit has surely read them: the two
#: pipes are read apart) a line on stderr and a last one on stdout
FLOOD = """
  NAME:
    command: [PYTHON, -c, "import sys, time; sys.stdout.write(chr(10) * 2_000_000); sys.stdout.flush(); time.sleep(1); print('err NAME', file=sys.stderr, flush=True); print('done NAME', flush=True); time.sleep(600)"]
    output: file:/dev/null
"""
RSS_GROWTH_MAX = 50 * 1024 * 1024  # bytes; a reply built whole took about 900 MB
STATUS_MAX = 1.0  # seconds for one `tinit status` while the logs stream
TRIP_MAX = 0.5  # seconds for one status request and reply, on a loaded machine


def cli(tinit: Tinit, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tinit_argv(*args),
        env=tinit.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def per_service(out: str) -> Counter[str]:
    return Counter(line.split(" ", 1)[0] for line in out.splitlines())


@pytest.fixture
def flooded(tmp_path: Path) -> Iterator[Tinit]:
    body = "version: 1\nservices:" + "".join(FLOOD.replace("NAME", s) for s in SERVICES)
    tinit = start(write_config(tmp_path, body))
    try:
        # Each service's last two lines: then all of them have written everything.
        last = {f"{s} | done {s}" for s in SERVICES} | {f"{s} ! err {s}" for s in SERVICES}
        assert wait_for(
            lambda: last == set(cli(tinit, "logs", "-n", "2").stdout.splitlines()),
            timeout=120,
            interval=0.5,
        )
        yield tinit
    finally:
        tinit.kill()
        tinit.wait()


def test_logs_of_full_rings_stream_in_bounded_memory_and_block_no_one(flooded: Tinit) -> None:
    before = rss(flooded.pid)
    peak = before
    status_times: list[float] = []
    trip_times: list[float] = []
    reading = threading.Event()
    reading.set()

    def sample() -> None:
        nonlocal peak
        while reading.is_set():
            peak = max(peak, rss(flooded.pid))
            time.sleep(0.005)

    def ask() -> None:
        path = flooded.env["TINIT_CONTROL_SOCKET"]
        while reading.is_set():
            began = time.monotonic()
            done = cli(flooded, "status", "--json", timeout=30)
            status_times.append(time.monotonic() - began)
            assert done.returncode == 0, done.stderr
            # The round trip alone, without starting a client process.
            began = time.monotonic()
            assert client.request(path, {"cmd": "status"})["ok"]
            trip_times.append(time.monotonic() - began)

    threads = [threading.Thread(target=sample), threading.Thread(target=ask)]
    for thread in threads:
        thread.start()
    try:
        logs = cli(flooded, "logs")
    finally:
        reading.clear()
        for thread in threads:
            thread.join(60)
    after = rss(flooded.pid)

    assert logs.returncode == 0, logs.stderr
    assert logs.stderr == ""
    counts = per_service(logs.stdout)
    assert set(counts) == set(SERVICES)
    for name in SERVICES:
        # Every line the ring keeps: the same as reading the one service alone,
        # and at least the part of the 256 KiB ring that is never dropped.
        alone = cli(flooded, "logs", name)
        assert alone.returncode == 0
        assert per_service(alone.stdout) == Counter({name: counts[name]})
        assert counts[name] > 150_000
        assert set(alone.stdout.splitlines()[-2:]) == {
            f"{name} | done {name}",
            f"{name} ! err {name}",
        }
    assert status_times, "no status answered while the logs were read"
    assert max(status_times) < STATUS_MAX, status_times
    assert max(trip_times) < TRIP_MAX, trip_times
    assert peak - before < RSS_GROWTH_MAX, (before, peak, after)
    assert after - before < RSS_GROWTH_MAX, (before, peak, after)
    print(
        f"rss before {before >> 20} MiB, peak {peak >> 20} MiB, after {after >> 20} MiB; "
        f"{len(status_times)} status calls, slowest {max(status_times):.3f}s "
        f"(round trip {max(trip_times):.3f}s); "
        f"{sum(counts.values())} lines"
    )


def test_logs_n_counts_per_service_and_total_counts_all(flooded: Tinit) -> None:
    each = cli(flooded, "logs", "-n", "3")
    assert each.returncode == 0
    assert per_service(each.stdout) == Counter({name: 3 for name in SERVICES})
    total = cli(flooded, "logs", "-n", "3", "--total")
    assert total.returncode == 0
    assert len(total.stdout.splitlines()) == 3
    # Piped, stderr lines are there to grep, marked with "!".
    errors = [line for line in each.stdout.splitlines() if " ! " in line]
    assert sorted(errors) == [f"{name} ! err {name}" for name in SERVICES]
