"""tinit.cgroups on a real, pure cgroup v2 hierarchy: limits, kill, OOM, watching.

These run only inside the .ci/cgv2-vm guest (``bash .ci/cgv2-tests``), whose
/sys/fs/cgroup offers cpu, io, memory and pids. Each test works in a fresh
``/sys/fs/cgroup/tinit-test-*`` cgroup that it treats as tinit's ROOT, starts
real processes with tinit's own spawn + reaper, and kills and removes
everything afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from tests import cgv2
from tinit import cgroups
from tinit.cgroups import Cgroups, discover
from tinit.config import Limits
from tinit.reaper import Reaper

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tinit.cgroups import ServiceCgroup

pytestmark = pytest.mark.skipif(
    os.environ.get("CGV2_VM") != "1",
    reason="needs the pure cgroup v2 guest: run them with `bash .ci/cgv2-tests`",
)

MOUNT = "/sys/fs/cgroup"
MiB = 1 << 20
PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def reaper() -> AsyncIterator[Reaper]:
    reaper = Reaper()
    async with trio.open_nursery() as nursery:
        await nursery.start(cgv2.serve_reaper, reaper)
        yield reaper
        nursery.cancel_scope.cancel()


@pytest.fixture
async def root(reaper: Reaper) -> AsyncIterator[Path]:
    """A fresh cgroup that plays tinit's ROOT; everything in it is killed afterwards."""
    path = cgv2.make_test_cgroup(MOUNT)
    try:
        yield path
    finally:
        cgv2.destroy(path)
        reaper.reap()


@pytest.fixture
async def layout(root: Path) -> Cgroups:
    return Cgroups.setup(cgv2.discovery_for(root), cgv2.quiet_log()[0])


def test_discovery_in_the_guest() -> None:
    """The guest's pure cgroup v2: usable, every controller, no problem to report."""
    d = discover()
    assert (d.mount, d.root, d.writable) == (MOUNT, MOUNT, True)
    assert d.controllers == {"cpu", "io", "memory", "pids"}
    assert d.problem is None
    assert d.missing_limits(Limits(memory=MiB, cpu=1.0, pids=5)) == []


async def test_setup_evacuates_root_and_enables_controllers(root: Path, reaper: Reaper) -> None:
    """Processes already in ROOT move to ROOT/tinit; then the controllers can be enabled."""
    sleepers = [await cgv2.place(root, ["sleep", "60"], reaper) for _ in range(2)]
    assert sorted(cgv2.pids_in(root)) == sorted(c.pid for c in sleepers)
    layout = Cgroups.setup(cgv2.discovery_for(root), cgv2.quiet_log()[0])
    assert cgv2.pids_in(root) == []
    assert sorted(cgv2.pids_in(root / "tinit")) == sorted(c.pid for c in sleepers)
    every = {"cpu", "io", "memory", "pids"}
    assert set(cgv2.read(root / "cgroup.subtree_control").split()) == every
    assert set(cgv2.read(root / "services" / "cgroup.subtree_control").split()) == every
    assert layout.controllers == every
    layout.close()
    assert not cgv2.exists(root / "services")


async def test_setup_in_a_cgroup_namespace(root: Path) -> None:
    """As in a container: ROOT is "/" of a cgroupns, with nsdelegate; limits never go to ROOT."""
    program = """
import json, os
from tinit.cgroups import Cgroups, discover
from tinit.config import Limits
from tinit.logs import make_logger
d = discover()
layout = Cgroups.setup(d, make_logger("error"))
web = layout.create("web", Limits(memory=64 << 20, pids=50), oom_group=True)
fd = os.open("/sys/fs/cgroup/memory.max", os.O_WRONLY)
try:
    os.write(fd, b"1000000")
    root_write = "allowed"
except OSError as exc:
    root_write = exc.strerror
finally:
    os.close(fd)
print(json.dumps({
    "mount": d.mount, "root": d.root, "problem": d.problem,
    "self": open("/proc/self/cgroup").read().strip(),
    "subtree": open("/sys/fs/cgroup/cgroup.subtree_control").read().split(),
    "memory.max": open(web.path + "/memory.max").read().strip(),
    "root_write": root_write,
}))
"""
    shell = (
        'echo $$ > "$1/cgroup.procs" && exec unshare --cgroup --mount sh -c'
        ' \'umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$0" -c "$1"\''
        ' "$2" "$3"'
    )
    done = subprocess.run(
        ["sh", "-c", shell, "sh", str(root), PYTHON, program],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["mount"] == seen["root"] == MOUNT
    assert seen["problem"] is None
    assert seen["self"] == "0::/tinit"
    assert set(seen["subtree"]) == {"cpu", "io", "memory", "pids"}
    assert seen["memory.max"] == str(64 * MiB)
    assert seen["root_write"] == "Operation not permitted"  # nsdelegate guards ROOT
    assert cgv2.read(root / "memory.max") == "max"


async def test_create_writes_the_limits(layout: Cgroups) -> None:
    """The kernel accepts and reports back every limit tinit writes."""
    web = layout.create("web", Limits(memory=64 * MiB, cpu=0.5, pids=100), oom_group=True)
    path = Path(web.path)
    assert cgv2.read(path / "memory.max") == str(64 * MiB)
    assert cgv2.read(path / "cpu.max") == "50000 100000"
    assert cgv2.read(path / "pids.max") == "100"
    assert cgv2.read(path / "memory.oom.group") == "1"
    plain = layout.create("plain", Limits(cpu=0.001), oom_group=False)
    path = Path(plain.path)
    assert cgv2.read(path / "memory.max") == "max"
    assert cgv2.read(path / "cpu.max") == "1000 100000"
    assert cgv2.read(path / "pids.max") == "max"
    assert cgv2.read(path / "memory.oom.group") == "0"


async def test_a_child_is_in_its_cgroup_before_exec(layout: Cgroups, reaper: Reaper) -> None:
    """The first thing the exec'd program sees is its service's cgroup."""
    web = layout.create("web", Limits(), oom_group=False)
    r, w = os.pipe()
    try:
        child = await cgv2.place(web, ["cat", "/proc/self/cgroup"], reaper, stdout=w)
    finally:
        os.close(w)
    with trio.fail_after(10):
        assert (await child.wait()).code == 0
    with os.fdopen(r) as out:
        line = out.read().strip()
    assert line == "0::" + web.path.removeprefix(MOUNT)


async def test_early_forks_stay_in_the_cgroup(layout: Cgroups, reaper: Reaper) -> None:
    """A service that forks 50 children at once has all 51 processes in its cgroup."""
    web = layout.create("web", Limits(), oom_group=False)
    script = "i=0; while [ $i -lt 50 ]; do sleep 60 & i=$((i+1)); done; exec sleep 60"
    child = await cgv2.place(web, ["sh", "-c", script], reaper)
    await cgv2.wait_until(lambda: len(web.pids()) == 51, timeout=30)
    relative = web.path.removeprefix(MOUNT)
    assert {cgv2.unified_of(pid) for pid in web.pids()} == {relative}
    assert child.pid in web.pids()
    assert cgv2.pids_in(Path(layout.root)) == []
    web.kill()
    with trio.fail_after(10):
        await web.wait_empty()
        assert (await child.wait()).signal == signal.SIGKILL


async def test_wait_empty_is_notified_promptly_after_kill(
    layout: Cgroups, reaper: Reaper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cgroup.kill takes setsid'd grandchildren too; the inotify watch sees populated 0."""
    monkeypatch.setattr(cgroups, "_RECHECK", 60.0)
    web = layout.create("web", Limits(), oom_group=False)
    script = "setsid sleep 60 & (setsid sleep 60 &) ; sleep 60 & exec sleep 60"
    child = await cgv2.place(web, ["sh", "-c", script], reaper)
    await cgv2.wait_until(lambda: len(web.pids()) == 4)
    assert web.populated()
    started = trio.current_time()
    web.kill()
    with trio.fail_after(5):
        await web.wait_empty()
    elapsed = trio.current_time() - started
    assert not web.populated()
    assert web.pids() == []
    assert elapsed < 2, f"took {elapsed:.3f}s: woken by the re-check, not by the notification"
    with trio.fail_after(5):
        assert (await child.wait()).signal == signal.SIGKILL


async def test_wait_empty_when_the_service_ends_by_itself(layout: Cgroups, reaper: Reaper) -> None:
    """Without any kill, the last exit is noticed."""
    web = layout.create("web", Limits(), oom_group=False)
    child = await cgv2.place(web, ["sh", "-c", "sleep 0.3 & exec sleep 0.2"], reaper)
    with trio.fail_after(10):
        await web.wait_empty()
        assert (await child.wait()).code == 0


async def test_a_zombie_does_not_keep_its_cgroup_populated(layout: Cgroups, reaper: Reaper) -> None:
    """A task leaves its cgroup when it exits, not when it is reaped."""
    web = layout.create("web", Limits(), oom_group=False)
    other = layout.create("other", Limits(), oom_group=False)
    # sleep 0.1 becomes a zombie: its parent execs sleep 60, which never waits.
    child = await cgv2.place(web, ["sh", "-c", "sleep 0.1 & exec sleep 60"], reaper)
    await cgv2.wait_until(lambda: len(cgv2.descendants_of(child.pid)) == 1)
    (zombie,) = cgv2.descendants_of(child.pid)
    await cgv2.wait_until(lambda: cgv2.state_of(zombie) == "Z")
    cgv2.move(child.pid, other)
    assert cgv2.state_of(zombie) == "Z"
    assert web.pids() == []
    assert not web.populated()
    with trio.fail_after(1):
        await web.wait_empty()
    other.kill()
    with trio.fail_after(10):
        await other.wait_empty()
        await child.wait()


async def test_signal_reaches_every_process(layout: Cgroups, reaper: Reaper) -> None:
    """signal() reaches processes in other sessions too, which a process group would miss."""
    web = layout.create("web", Limits(), oom_group=False)
    child = await cgv2.place(web, ["sh", "-c", "setsid sleep 60 & exec sleep 60"], reaper)
    await cgv2.wait_until(lambda: len(web.pids()) == 2)
    assert web.signal(signal.SIGTERM) == 2
    with trio.fail_after(10):
        await web.wait_empty()
        assert (await child.wait()).signal == signal.SIGTERM


async def test_kill_frozen_for_old_kernels(layout: Cgroups, reaper: Reaper) -> None:
    """The pre-5.14 path (freeze, SIGKILL each, thaw) empties the cgroup and thaws it."""
    web = layout.create("web", Limits(), oom_group=False)
    child = await cgv2.place(web, ["sh", "-c", "setsid sleep 60 & sleep 60 & wait"], reaper)
    await cgv2.wait_until(lambda: len(web.pids()) == 3)
    web.kill_frozen()
    with trio.fail_after(10):
        await web.wait_empty()
        assert (await child.wait()).signal == signal.SIGKILL
    assert cgv2.read(Path(web.path) / "cgroup.freeze") == "0"


async def test_a_memory_hog_is_oom_killed_and_reported(
    layout: Cgroups, reaper: Reaper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over memory.max the OOM killer strikes inside the cgroup, and watch_oom says so."""
    monkeypatch.setattr(cgroups, "_OOM_RECHECK", 60.0)
    web = layout.create("web", Limits(memory=32 * MiB), oom_group=True)
    reported: list[int] = []
    hog = "import time; x = b'x' * (256 << 20); time.sleep(60)"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(web.watch_oom, reported.append)
        child = await cgv2.place(web, [PYTHON, "-c", hog], reaper)
        with trio.fail_after(30):
            assert (await child.wait()).signal == signal.SIGKILL
            while not reported:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert reported[0] >= 1
    assert web.oom_kills() == reported[-1]
    with trio.fail_after(5):
        await web.wait_empty()


async def test_a_fork_bomb_is_contained_by_pids_max(layout: Cgroups, reaper: Reaper) -> None:
    """Under pids.max=64 a fork bomb stays at 64 processes, and kill() ends it."""
    # cpu.max as well, so the bomb leaves the guest's one CPU to the test.
    web = layout.create("web", Limits(pids=64, cpu=0.5), oom_group=False)
    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    child = await cgv2.place(web, [PYTHON, "-c", bomb], reaper)
    path = Path(web.path)

    def refused() -> int:
        return int(
            dict(line.split() for line in cgv2.read(path / "pids.events").splitlines())["max"]
        )

    await cgv2.wait_until(lambda: refused() > 0, timeout=60)
    assert int(cgv2.read(path / "pids.current")) <= 64
    assert len(web.pids()) <= 64
    assert web.stats()["pids.current"] <= 64
    web.kill()
    with trio.fail_after(20):
        await web.wait_empty()
        assert (await child.wait()).signal == signal.SIGKILL


async def test_cpu_max_throttles_a_busy_loop(layout: Cgroups, reaper: Reaper) -> None:
    """cpu.max for 0.2 cores: the loop is throttled and gets about a fifth of a CPU."""
    web = layout.create("web", Limits(cpu=0.2), oom_group=False)
    stat = Path(web.path) / "cpu.stat"

    def read_stat() -> dict[str, int]:
        return {k: int(v) for k, v in (line.split() for line in cgv2.read(stat).splitlines())}

    child = await cgv2.place(web, ["sh", "-c", "while :; do :; done"], reaper)
    before, started = read_stat(), trio.current_time()
    await trio.sleep(1.5)
    after, elapsed = read_stat(), trio.current_time() - started
    web.kill()
    assert after["nr_throttled"] > 0
    share = (after["usage_usec"] - before["usage_usec"]) / (elapsed * 1e6)
    assert share < 0.35, f"used {share:.2f} of a CPU"
    with trio.fail_after(10):
        await web.wait_empty()
        await child.wait()


async def test_remove_only_when_empty(layout: Cgroups, reaper: Reaper) -> None:
    """remove() leaves a busy cgroup alone and removes an empty one; twice is fine."""
    web = layout.create("web", Limits(), oom_group=False)
    child = await cgv2.place(web, ["sleep", "60"], reaper)
    web.remove()
    assert cgv2.exists(web.path)
    web.kill()
    with trio.fail_after(10):
        await web.wait_empty()
        await child.wait()
    web.remove()
    assert not cgv2.exists(web.path)
    web.remove()
    assert not web.populated()
    assert web.pids() == []


async def test_stats_of_a_real_cgroup(layout: Cgroups) -> None:
    """memory.current, memory.peak, pids.current and cpu.stat's usage_usec are all there."""
    web = layout.create("web", Limits(), oom_group=False)
    assert set(web.stats()) == {"memory.current", "memory.peak", "pids.current", "cpu_usec"}


async def test_service_cgroup_api_shapes(layout: Cgroups) -> None:
    """oom_kills is 0 on a fresh cgroup; open_procs is close-on-exec and write-only."""
    web: ServiceCgroup = layout.create("web", Limits(), oom_group=False)
    assert web.oom_kills() == 0
    fd = web.open_procs()
    try:
        assert not os.get_inheritable(fd)
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
    finally:
        os.close(fd)
