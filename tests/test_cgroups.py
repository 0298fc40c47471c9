"""tinit.cgroups on this host: discovery, problem sentences, layout logic, degraded paths.

Pure logic runs against fake ``/proc`` files and a directory that imitates
cgroupfs (tests/cgv2.py). The degraded paths run for real on this host: a
v1/v2 hybrid whose cgroup2 (``/sys/fs/cgroup/unified``) has no controllers,
and a read-only view of it in a private mount namespace. Real limits are
tested in the pure cgroup v2 guest: tests/test_cgroups_vm.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from tests import cgv2
from tests.cgv2 import V1_MOUNTS, FakeCgroupfs, fake_proc, mountinfo_line
from tinit import _cgroupfs, cgroups
from tinit.cgroups import CgroupError, Cgroups, Discovery, ServiceCgroup, cpu_max, discover
from tinit.config import Limits
from tinit.reaper import Reaper

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

ALL = frozenset({"cpu", "io", "memory", "pids"})
MiB = 1 << 20


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    return tmp_path / "sys" / "fs" / "cgroup"


def fake_discover(tmp_path: Path, cgroup: str, *lines: str) -> Discovery:
    return discover(proc=fake_proc(tmp_path / "proc", cgroup, lines))


# -- parsing ---------------------------------------------------------------------


def test_mountinfo_fields_are_unescaped_and_options_merged() -> None:
    """Mount points with spaces come back whole; per-mount and superblock options merge."""
    line = mountinfo_line("/x y/cg", options="ro,relatime", super_options="rw,nsdelegate")
    (m,) = _cgroupfs.parse_mountinfo(line + "\ngarbage\n")
    assert m.point == "/x y/cg"
    assert m.fstype == "cgroup2"
    assert {"ro", "rw", "nsdelegate", "relatime"} <= m.options


def test_unified_path_is_the_0_line() -> None:
    """Only the ``0::`` line of /proc/self/cgroup is cgroup v2."""
    text = "12:memory:/docker/abc\n1:name=systemd:/x\n0::/docker/abc\n"
    assert _cgroupfs.unified_path(text) == "/docker/abc"
    assert _cgroupfs.unified_path("12:memory:/\n") is None


# -- discovery against fake /proc and mount trees ----------------------------------


def test_pure_v2_at_a_namespace_root(tmp_path: Path, mount: Path) -> None:
    """A private cgroupns shows "0::/": ROOT is the mount itself, with every controller."""
    FakeCgroupfs(mount, hierarchy_root=False)
    d = fake_discover(tmp_path, "0::/\n", mountinfo_line(str(mount)))
    assert d == Discovery(str(mount), str(mount), True, ALL, None)
    assert d.usable


def test_nested_cgroup_path(tmp_path: Path, mount: Path) -> None:
    """Without a cgroupns, ROOT is the mount plus tinit's path from /proc/self/cgroup."""
    fake = FakeCgroupfs(mount)
    (mount / "cgroup.subtree_control").write_text("cpu io memory pids")
    (fake.cgroup("system.slice") / "cgroup.subtree_control").write_text("cpu io memory pids")
    fake.cgroup("system.slice", "docker-abc.scope")
    d = fake_discover(tmp_path, "0::/system.slice/docker-abc.scope\n", mountinfo_line(str(mount)))
    assert d.root == str(mount / "system.slice" / "docker-abc.scope")
    assert d.controllers == ALL
    assert d.problem is None


def test_bind_mounted_subtree(tmp_path: Path, mount: Path) -> None:
    """A mount of a subtree (mountinfo root /docker/abc) maps the path below it."""
    fake = FakeCgroupfs(mount, ())
    fake.cgroup("svc")
    d = fake_discover(
        tmp_path, "0::/docker/abc/svc\n", mountinfo_line(str(mount), root="/docker/abc")
    )
    assert d.root == str(mount / "svc")


def test_hybrid_host_without_limit_controllers(tmp_path: Path, mount: Path) -> None:
    """A v1/v2 hybrid: cgroup2 at .../unified has no controllers, placement still works."""
    unified = mount / "unified"
    FakeCgroupfs(unified, ())
    cgroup = "4:memory:/x\n3:pids:/\n0::/\n"
    lines = [mountinfo_line(str(mount), fstype="tmpfs"), *V1_MOUNTS, mountinfo_line(str(unified))]
    d = fake_discover(tmp_path, cgroup, *lines)
    assert (d.mount, d.root, d.writable, d.controllers) == (
        str(unified),
        str(unified),
        True,
        frozenset(),
    )
    assert d.usable
    assert d.problem is not None
    assert d.problem.startswith(f"cgroup v2 at {unified} has no limit controllers")
    assert "v1/v2 hybrid" in d.problem
    assert "systemd.unified_cgroup_hierarchy=1" in d.problem
    assert "cgroup.kill" in d.problem


def test_no_cgroup2_at_all(tmp_path: Path) -> None:
    """A v1-only host still has a "0::/" line, but no cgroup2 mount."""
    d = fake_discover(tmp_path, "4:memory:/\n0::/\n", *V1_MOUNTS)
    assert (d.mount, d.root, d.usable) == (None, None, False)
    assert d.problem is not None
    assert d.problem.startswith("cgroup v2 is not mounted")
    assert "mount -t cgroup2" in d.problem


def test_read_only_mount(tmp_path: Path, mount: Path) -> None:
    """Default Docker mounts cgroupfs read-only: not usable, and the sentence says how to fix it."""
    FakeCgroupfs(mount, hierarchy_root=False)
    d = fake_discover(tmp_path, "0::/\n", mountinfo_line(str(mount), options="ro,nosuid,relatime"))
    assert not d.writable
    assert not d.usable
    assert d.controllers == ALL
    assert d.problem == (
        f"cgroup v2 is mounted read-only at {mount}: run with `docker run --privileged` or a"
        " writable cgroup namespace (`--cgroupns=private` with a writable mount), podman"
        " `--security-opt unmask=/sys/fs/cgroup`, containerd `cgroup_writable = true`;"
        " services run without limits, tracked by process group"
    )


def test_cgroup_outside_the_mount(tmp_path: Path, mount: Path) -> None:
    """A cgroup outside the namespace's view ("/../x") or the mounted subtree is unreachable."""
    FakeCgroupfs(mount)
    d = fake_discover(tmp_path, "0::/../../x\n", mountinfo_line(str(mount)))
    assert (d.mount, d.root, d.usable) == (str(mount), None, False)
    assert d.problem is not None
    assert "is not visible in the cgroup2 mount" in d.problem
    d = fake_discover(tmp_path, "0::/other\n", mountinfo_line(str(mount), root="/docker"))
    assert d.root is None


def test_some_controllers_missing(tmp_path: Path, mount: Path) -> None:
    """A parent that delegates only cpu and pids: memory is named, with the way to grant it."""
    FakeCgroupfs(mount, ("cpu", "pids"), hierarchy_root=False)
    d = fake_discover(tmp_path, "0::/\n", mountinfo_line(str(mount)))
    assert d.usable
    assert d.controllers == {"cpu", "pids"}
    assert d.problem == (
        f"cgroup v2 at {mount} does not offer the memory controller to {mount}: enable it in"
        " the parent cgroup's cgroup.subtree_control (the runtime's cgroup delegation,"
        " systemd `Delegate=yes`); memory limits are not enforced"
    )


def test_only_io_missing_is_no_problem(tmp_path: Path, mount: Path) -> None:
    """io is enabled when offered, but no limit depends on it."""
    FakeCgroupfs(mount, ("cpu", "memory", "pids"), hierarchy_root=False)
    assert fake_discover(tmp_path, "0::/\n", mountinfo_line(str(mount))).problem is None


def test_prefers_sys_fs_cgroup(tmp_path: Path) -> None:
    """With several cgroup2 mounts, /sys/fs/cgroup wins over others."""
    main, other = tmp_path / "sys" / "fs" / "cgroup", tmp_path / "mnt" / "cg"
    FakeCgroupfs(main)
    FakeCgroupfs(other)
    d = fake_discover(tmp_path, "0::/\n", mountinfo_line(str(other)), mountinfo_line(str(main)))
    assert d.mount == str(main)


def test_unreadable_proc(tmp_path: Path) -> None:
    """Without /proc, nothing is known, and the sentence says so."""
    d = discover(proc=str(tmp_path / "nothing"))
    assert not d.usable
    assert d.problem is not None
    assert "mount /proc" in d.problem


@pytest.mark.parametrize(
    ("cgroup", "options", "controllers"),
    [
        ("0::/\n", "rw", ()),
        ("0::/\n", "ro", ("cpu", "io", "memory", "pids")),
        ("0::/\n", "rw", ("io",)),
        ("0::/\n", "rw", ("memory",)),
        ("0::/../x\n", "rw", ()),
    ],
)
def test_every_problem_is_one_sentence_with_a_fix(
    tmp_path: Path, mount: Path, cgroup: str, options: str, controllers: tuple[str, ...]
) -> None:
    """Each problem is one line, one sentence, naming what is missing and how to grant it."""
    FakeCgroupfs(mount, controllers, hierarchy_root=False)
    problem = fake_discover(tmp_path, cgroup, mountinfo_line(str(mount), options=options)).problem
    assert problem is not None
    assert "\n" not in problem
    assert ". " not in problem
    assert not problem.endswith(".")
    what, _, how = problem.partition(": ")
    assert what
    assert "`" in how


# -- missing_limits and cpu.max -----------------------------------------------------


def test_missing_limits() -> None:
    """Only configured limits are reported, and only where their controller is missing."""
    limits = Limits(memory=64 * MiB, cpu=0.5, pids=10)
    full = Discovery("/m", "/m", True, ALL, None)
    assert full.missing_limits(limits) == []
    assert full.missing_limits(Limits()) == []
    partial = Discovery("/m", "/m", True, frozenset({"cpu", "io"}), "x")
    assert partial.missing_limits(limits) == ["memory", "pids"]
    assert partial.missing_limits(Limits(cpu=1.0)) == []
    read_only = Discovery("/m", "/m", False, ALL, "x")
    assert read_only.missing_limits(limits) == ["memory", "cpu", "pids"]
    assert read_only.missing_limits(Limits(pids=3)) == ["pids"]


@pytest.mark.parametrize(
    ("cores", "line"),
    [
        (None, "max 100000"),
        (1, "100000 100000"),
        (0.2, "20000 100000"),
        (2.5, "250000 100000"),
        (0.333333, "33333 100000"),
        (0.001, "1000 100000"),
    ],
)
def test_cpu_max(cores: float | None, line: str) -> None:
    """cores x 100000 us per 100000 us period; never below the kernel's 1 ms minimum."""
    assert cpu_max(cores) == line


# -- the layout, against a cgroupfs lookalike ----------------------------------------


@pytest.fixture
def fake(mount: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupfs:
    """A namespace root (it has cgroup.events) with every controller offered."""
    return FakeCgroupfs(mount, hierarchy_root=False).install(monkeypatch)


def setup(fake: FakeCgroupfs, controllers: frozenset[str] = ALL) -> Cgroups:
    log, _ = cgv2.quiet_log()
    mount = str(fake.mount)
    return Cgroups.setup(Discovery(mount, mount, True, controllers, None), log)


def test_setup_evacuates_every_process_before_enabling(fake: FakeCgroupfs) -> None:
    """Every pid in ROOT (tinit, a `docker run --init` tini) moves to ROOT/tinit first."""
    root = fake.mount
    fake.set_procs(root, [os.getpid(), 4242])
    layout = setup(fake)
    assert fake.procs(root) == []
    assert sorted(fake.procs(root / "tinit")) == sorted([os.getpid(), 4242])
    assert fake.read(root, "cgroup.subtree_control") == "cpu io memory pids"
    assert fake.read(root / "services", "cgroup.subtree_control") == "cpu io memory pids"
    assert layout.controllers == ALL
    names = [Path(path).name for path, _ in fake.writes]
    assert names.index("cgroup.subtree_control") > max(
        i for i, n in enumerate(names) if n == "cgroup.procs"
    )
    assert ("cgroup.subtree_control", "+cpu +io +memory +pids") in fake.writes


def test_setup_at_the_hierarchy_root_moves_nothing_and_works_in_its_own_subtree(
    mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a host's real root, nothing is moved, and the layout is a private subtree
    (another tinit on the same host gets its own), removed again by close()."""
    fake = FakeCgroupfs(mount, hierarchy_root=True).install(monkeypatch)
    fake.set_procs(mount, [1, 2, os.getpid()])
    fake.write(str(mount / "cgroup.subtree_control"), "+cpu +io +memory +pids")
    layout = setup(fake)
    assert fake.procs(mount) == [1, 2, os.getpid()]
    base = Path(layout.root)
    assert base.parent == mount
    assert base.name.startswith(f"tinit-{os.getpid()}-")
    assert Path(layout.services) == base / "services"
    assert fake.read(base / "services", "cgroup.subtree_control") == "cpu io memory pids"
    layout.close()
    assert not base.exists()


def test_setup_in_a_cgroup_shared_with_other_namespaces_moves_nothing(
    fake: FakeCgroupfs,
) -> None:
    """Processes of other PID namespaces read as pid 0: ROOT is not tinit's alone."""
    fake.set_procs(fake.mount, [0, 0, os.getpid()])
    layout = setup(fake)
    assert fake.procs(fake.mount) == [0, 0, os.getpid()]
    assert Path(layout.root).name.startswith("tinit-")
    assert layout.private


def test_setup_retries_when_a_process_arrives(fake: FakeCgroupfs) -> None:
    """A process landing in ROOT meanwhile (docker exec) makes EBUSY; it is moved and retried."""
    arrivals = [777]

    def arrive(cgroup: Path) -> None:
        if cgroup == fake.mount and arrivals:
            fake.set_procs(cgroup, [arrivals.pop()])

    fake.before_enable = arrive
    setup(fake)
    assert fake.procs(fake.mount / "tinit") == [777]
    assert fake.read(fake.mount, "cgroup.subtree_control") == "cpu io memory pids"


def test_setup_gives_up_on_endless_arrivals(fake: FakeCgroupfs) -> None:
    """EBUSY is retried a few times, briefly, then reported in one line."""
    arrivals = iter(range(1000, 2000))
    fake.before_enable = lambda cgroup: fake.set_procs(cgroup, [next(arrivals)])
    started = time.monotonic()
    with pytest.raises(CgroupError) as caught:
        setup(fake)
    assert time.monotonic() - started < 2
    assert caught.value.exit_code == 2
    assert "no-internal-processes" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_setup_keeps_the_controllers_the_kernel_accepts(fake: FakeCgroupfs) -> None:
    """A refused controller (EOPNOTSUPP in a threaded subtree) is warned about, not fatal."""
    fake.refuse["memory"] = errno.EOPNOTSUPP
    log, out = cgv2.quiet_log()
    mount = str(fake.mount)
    layout = Cgroups.setup(Discovery(mount, mount, True, ALL, None), log)
    assert layout.controllers == {"cpu", "io", "pids"}
    assert fake.read(fake.mount / "services", "cgroup.subtree_control") == "cpu io pids"
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert any(
        e["event"] == "cgroup_controller_unavailable" and e["controller"] == "memory"
        for e in events
    )


def test_setup_reports_a_process_that_cannot_move(fake: FakeCgroupfs) -> None:
    """A pid the kernel refuses to move is named in the error."""
    fake.set_procs(fake.mount, [4242])
    fake.fail["cgroup.procs"] = errno.EPERM
    with pytest.raises(CgroupError, match="cannot move process 4242"):
        setup(fake)


def test_setup_without_limit_controllers(fake: FakeCgroupfs) -> None:
    """On a hybrid host: the layout is made, no controller is written."""
    layout = setup(fake, frozenset())
    assert layout.controllers == frozenset()
    assert (fake.mount / "services").is_dir()
    assert not any(path.endswith("subtree_control") for path, _ in fake.writes)


def test_setup_refuses_an_unusable_discovery() -> None:
    """The problem sentence becomes the error."""
    log, _ = cgv2.quiet_log()
    d = Discovery("/sys/fs/cgroup", "/sys/fs/cgroup", False, ALL, "cgroup v2 is read-only")
    with pytest.raises(CgroupError, match="cgroup v2 is read-only"):
        Cgroups.setup(d, log)


def test_create_writes_the_limits(fake: FakeCgroupfs) -> None:
    """memory.max, cpu.max, pids.max and memory.oom.group go to ROOT/services/NAME only."""
    layout = setup(fake)
    web = layout.create("web", Limits(memory=256 * MiB, cpu=0.5, pids=100), oom_group=True)
    path = fake.mount / "services" / "web"
    assert web.path == str(path)
    assert fake.read(path, "memory.max") == str(256 * MiB)
    assert fake.read(path, "cpu.max") == "50000 100000"
    assert fake.read(path, "pids.max") == "100"
    assert fake.read(path, "memory.oom.group") == "1"
    limit_files = {"memory.max", "cpu.max", "pids.max", "memory.oom.group"}
    assert {Path(p).name for p, _ in fake.writes if Path(p).name in limit_files} == limit_files
    assert all(Path(p).parent == Path("services/web") for p, _ in fake.writes if p in limit_files)


def test_create_reuses_an_empty_cgroup_and_resets_limits(fake: FakeCgroupfs) -> None:
    """A restart reuses the empty cgroup; limits no longer configured go back to max."""
    layout = setup(fake)
    layout.create("web", Limits(memory=MiB, cpu=1.0, pids=5), oom_group=True)
    layout.create("web", Limits(), oom_group=False)
    path = fake.mount / "services" / "web"
    assert fake.read(path, "memory.max") == "max"
    assert fake.read(path, "cpu.max") == "max 100000"
    assert fake.read(path, "pids.max") == "max"
    assert fake.read(path, "memory.oom.group") == "0"


def test_create_skips_limits_without_their_controller(fake: FakeCgroupfs) -> None:
    """Missing controllers are skipped silently (the warning was given once, at start)."""
    layout = setup(fake, frozenset({"pids"}))
    layout.create("web", Limits(memory=MiB, cpu=1.0, pids=5), oom_group=True)
    written = [Path(p).name for p, _ in fake.writes if p.startswith("services/web/")]
    assert written == ["pids.max"]


def test_create_refuses_a_cgroup_with_processes(fake: FakeCgroupfs) -> None:
    """Leftovers of an earlier run must be gone before the service starts again."""
    layout = setup(fake)
    layout.create("web", Limits(), oom_group=False)
    fake.set_procs(fake.mount / "services" / "web", [31337])
    with pytest.raises(CgroupError, match="still has processes"):
        layout.create("web", Limits(), oom_group=False)


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", ".hidden"])
def test_create_rejects_names_that_are_not_one_directory(fake: FakeCgroupfs, name: str) -> None:
    """A service name never reaches outside ROOT/services."""
    with pytest.raises(CgroupError, match="cannot name a cgroup"):
        setup(fake).create(name, Limits(), oom_group=False)


def test_create_rejects_a_name_that_is_an_interface_file(fake: FakeCgroupfs) -> None:
    """A service called cgroup.procs collides with the file of that name."""
    with pytest.raises(CgroupError, match="collides"):
        setup(fake).create("cgroup.procs", Limits(), oom_group=False)


def test_create_reports_a_refused_limit_and_cleans_up(fake: FakeCgroupfs) -> None:
    """The kernel refusing a value is an error naming file, service and value."""
    layout = setup(fake)
    fake.fail["pids.max"] = errno.EINVAL
    with pytest.raises(CgroupError, match=r"cannot set pids.max of service web to 7: Invalid"):
        layout.create("web", Limits(pids=7), oom_group=False)
    assert not (fake.mount / "services" / "web").exists()


def test_close_removes_only_empty_cgroups(fake: FakeCgroupfs) -> None:
    """A busy service cgroup is left in place, and so is ROOT/services around it."""
    layout = setup(fake)
    layout.create("idle", Limits(), oom_group=False)
    layout.create("busy", Limits(), oom_group=False)
    fake.set_procs(fake.mount / "services" / "busy", [31337])
    layout.close()
    assert sorted(p.name for p in (fake.mount / "services").iterdir() if p.is_dir()) == ["busy"]
    fake.set_procs(fake.mount / "services" / "busy", [])
    layout.close()
    assert not (fake.mount / "services").exists()
    assert (fake.mount / "tinit").is_dir()


# -- reading and watching a service cgroup (fake files) -------------------------------


@pytest.fixture
def web(fake: FakeCgroupfs) -> ServiceCgroup:
    return setup(fake).create("web", Limits(), oom_group=False)


def test_reads(fake: FakeCgroupfs, web: ServiceCgroup) -> None:
    """pids, populated, oom_kills and stats come from the cgroup's files."""
    path = Path(web.path)
    assert (web.pids(), web.populated(), web.oom_kills()) == ([], False, 0)
    fake.set_procs(path, [10, 11])
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n")
    (path / "memory.current").write_text("123456\n")
    (path / "pids.current").write_text("2\n")
    (path / "cpu.stat").write_text("usage_usec 99\nuser_usec 90\n")
    assert (web.pids(), web.populated(), web.oom_kills()) == ([10, 11], True, 2)
    assert web.stats() == {"memory.current": 123456, "pids.current": 2, "cpu_usec": 99}
    (path / "memory.current").write_text("654321\n")
    assert web.stats()["memory.current"] == 654321  # read again each time, not cached
    web.remove()
    shutil.rmtree(path, ignore_errors=True)
    assert (web.pids(), web.populated(), web.oom_kills()) == ([], False, 0)


def test_cpu_usec_is_cpu_stat_usage_usec_wherever_it_is(web: ServiceCgroup) -> None:
    """Read from cpu.stat by key, not by line; a cpu.stat without it gives no figure."""
    stat = Path(web.path) / "cpu.stat"
    stat.write_text("user_usec 5\nusage_usec 123\nsystem_usec 7\n")
    assert web.stats()["cpu_usec"] == 123
    stat.write_text("usage_usec 4567\n")
    assert web.stats()["cpu_usec"] == 4567  # the same fd, read again from the start
    stat.write_text("user_usec 5\n")
    assert "cpu_usec" not in web.stats()


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen(["sleep", "30"]) for _ in range(3)]
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_signal_reaches_every_listed_process(
    fake: FakeCgroupfs, web: ServiceCgroup, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    """signal() kills each listed pid and skips those already gone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    fake.set_procs(Path(web.path), [p.pid for p in sleepers] + [gone.pid])
    assert web.signal(signal.SIGTERM) == 4
    assert [p.wait(5) for p in sleepers] == [-signal.SIGTERM] * 3


def test_kill_without_cgroup_kill_freezes_and_signals(
    fake: FakeCgroupfs, web: ServiceCgroup, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    """Before Linux 5.14 (no cgroup.kill): freeze, SIGKILL each pid, thaw."""
    path = Path(web.path)
    (path / "cgroup.kill").unlink()
    fake.set_procs(path, [p.pid for p in sleepers])
    web.kill()
    assert [p.wait(5) for p in sleepers] == [-signal.SIGKILL] * 3
    freezes = [data for p, data in fake.writes if p.endswith("web/cgroup.freeze")]
    assert freezes == ["1", "0"]


def test_kill_writes_cgroup_kill(fake: FakeCgroupfs, web: ServiceCgroup) -> None:
    """With cgroup.kill, one write does it all."""
    web.kill()
    assert fake.writes[-1] == ("services/web/cgroup.kill", "1")


async def test_wait_empty_is_woken_by_inotify(
    fake: FakeCgroupfs, web: ServiceCgroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change of cgroup.events wakes wait_empty at once, not at the next re-check."""
    monkeypatch.setattr(cgroups, "_RECHECK", 60.0)
    path = Path(web.path)
    fake.set_procs(path, [10])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(web.wait_empty)
        await trio.sleep(0.1)
        started = trio.current_time()
        fake.set_procs(path, [])
        with trio.fail_after(5):
            while nursery.child_tasks:
                await trio.sleep(0.005)
    assert trio.current_time() - started < 1


async def test_wait_empty_returns_when_empty_or_gone(web: ServiceCgroup) -> None:
    """An empty cgroup returns at once; so does one that was removed."""
    with trio.fail_after(2):
        await web.wait_empty()
        shutil.rmtree(web.path)
        await web.wait_empty()


async def test_wait_empty_closes_its_fd_when_cancelled(
    fake: FakeCgroupfs, web: ServiceCgroup
) -> None:
    """Cancelled waits leave no fd behind: all share the run's one inotify instance."""
    fake.set_procs(Path(web.path), [10])
    with trio.move_on_after(0.05):
        await web.wait_empty()
    shared = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with trio.move_on_after(0.01):
            await web.wait_empty()
    assert len(os.listdir("/proc/self/fd")) == shared


async def test_watch_oom_reports_each_increment(
    fake: FakeCgroupfs, web: ServiceCgroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each rise of oom_kill in memory.events is reported with the new total."""
    monkeypatch.setattr(cgroups, "_OOM_RECHECK", 60.0)
    events = Path(web.path) / "memory.events"
    seen: list[int] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(web.watch_oom, seen.append)
            await trio.sleep(0.1)
            events.write_text("max 4\noom 1\noom_kill 1\n")
            while seen != [1]:
                await trio.sleep(0.005)
            events.write_text("max 5\noom 1\noom_kill 1\n")
            events.write_text("max 9\noom 2\noom_kill 3\n")
            while seen != [1, 3]:
                await trio.sleep(0.005)
            nursery.cancel_scope.cancel()


async def test_watch_oom_without_memory_controller_waits_forever(fake: FakeCgroupfs) -> None:
    """No memory controller, no OOM reports: it just waits to be cancelled."""
    web = setup(fake, frozenset({"pids"})).create("web", Limits(), oom_group=False)
    with trio.move_on_after(0.1) as scope:
        await web.watch_oom(lambda total: None)
    assert scope.cancelled_caught


# -- real degraded paths on this host -------------------------------------------------

REAL = discover()
HYBRID = REAL.mount is not None and REAL.mount.endswith("/unified") and not REAL.controllers
needs_hybrid = pytest.mark.skipif(
    not HYBRID, reason="needs a v1/v2 hybrid host (controller-less cgroup2 at .../unified)"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, cgroupfs writes)")


@needs_hybrid
def test_real_hybrid_host_has_placement_but_no_limits() -> None:
    """This host: cgroup2 without controllers is usable for placement, and says why no limits."""
    assert REAL.usable
    assert REAL.controllers == frozenset()
    assert REAL.problem is not None
    assert "no limit controllers" in REAL.problem
    assert REAL.missing_limits(Limits(memory=MiB, cpu=1.0, pids=5)) == ["memory", "cpu", "pids"]


@needs_root
@pytest.mark.skipif(REAL.mount is None, reason="needs a cgroup2 mount on this host")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_real_read_only_cgroupfs_is_reported() -> None:
    """A read-only bind of the real cgroup2 mount (in a private mount namespace)."""
    assert REAL.mount is not None
    code = (
        "import json; from tinit.cgroups import discover; d = discover();"
        " print(json.dumps([d.mount, d.writable, d.usable, d.problem]))"
    )
    script = 'mount -o remount,bind,ro "$1" && exec "$2" -c "$3"'
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", REAL.mount, sys.executable, code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    mount, writable, usable, problem = json.loads(done.stdout)
    assert (mount, writable, usable) == (REAL.mount, False, False)
    assert problem.startswith(f"cgroup v2 is mounted read-only at {REAL.mount}: ")
    assert "services run without limits, tracked by process group" in problem
    assert discover().writable  # the host's own view is untouched


@pytest.fixture
async def reaper() -> AsyncIterator[Reaper]:
    reaper = Reaper()
    async with trio.open_nursery() as nursery:
        await nursery.start(cgv2.serve_reaper, reaper)
        yield reaper
        nursery.cancel_scope.cancel()


@pytest.fixture
async def host_root(reaper: Reaper) -> AsyncIterator[Path]:
    """A tinit-test-* cgroup in the host's writable cgroup2, removed afterwards."""
    if not (REAL.usable and REAL.root and os.geteuid() == 0):
        pytest.skip("needs root and a writable cgroup2 on this host")
    path = cgv2.make_test_cgroup(REAL.root)
    try:
        yield path
    finally:
        cgv2.destroy(path)
        reaper.reap()


@needs_hybrid
async def test_real_placement_kill_and_populated_without_controllers(
    host_root: Path, reaper: Reaper
) -> None:
    """On the controller-less cgroup2: layout, placement before exec, cgroup.kill, populated."""
    bystander = await cgv2.place(host_root, ["sleep", "30"], reaper)
    layout = Cgroups.setup(cgv2.discovery_for(host_root, REAL.mount or ""), cgv2.quiet_log()[0])
    assert cgv2.pids_in(host_root / "tinit") == [bystander.pid]
    web = layout.create("web", Limits(memory=64 * MiB, cpu=0.5, pids=10), oom_group=True)
    assert not (Path(web.path) / "memory.max").exists()
    child = await cgv2.place(
        web, ["sh", "-c", "sleep 30 & setsid sleep 30 & exec sleep 30"], reaper
    )
    await cgv2.wait_until(lambda: len(web.pids()) == 3)
    relative = "/" + str(Path(web.path).relative_to(REAL.mount or "/"))
    assert {cgv2.unified_of(pid) for pid in web.pids()} == {relative}
    assert web.populated()
    web.kill()
    with trio.fail_after(5):
        await web.wait_empty()
        assert (await child.wait()).signal == signal.SIGKILL
    web.remove()
    assert not cgv2.exists(web.path)
    layout.close()
    assert not cgv2.exists(host_root / "services")
