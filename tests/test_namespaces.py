"""Per-service namespaces, checked in real namespaces of forked children.

Each experiment forks; the child sets itself up (``apply_in_child``), looks
around, and sends what it saw back over a pipe as JSON, then stays alive
until the test lets it go -- so the host can look while it runs. Every child
is reaped (and killed after a timeout); its mounts die with its mount
namespace, and a fixture checks that none reached the host.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import errno
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prctl
import pytest

from tinit import namespaces
from tinit.config import Namespaces
from tinit.namespaces import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SHARED,
    apply_in_child,
    host_support,
    make_mounts_private,
    mount,
    mount_proc,
    set_loopback_up,
    setns,
    unshare,
    user_namespace_available,
)
from tinit.privileges import Privileges, cap_number
from tinit.privileges import apply_in_child as drop_privileges

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20.0
NOBODY = 65534
TMP_DIRS = ("/tmp", "/var/tmp")
SYS_ADMIN = cap_number("SYS_ADMIN")
NET_ADMIN = cap_number("NET_ADMIN")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not prctl.cap_effective.sys_admin,
    reason="needs root with CAP_SYS_ADMIN to create namespaces and mount",
)
pytestmark = pytest.mark.timeout(60)


# --- running an experiment in a child ---------------------------------------


@dataclass(frozen=True, slots=True)
class Child:
    pid: int
    value: Any


@contextlib.contextmanager
def in_child(
    body: Callable[[], Any],
    ns: Namespaces | None = None,
    *,
    before: Callable[[], None] | None = None,
) -> Iterator[Child]:
    """Fork; the child runs ``before``, ``apply_in_child(ns)`` and ``body``.

    Yields what ``body`` returned while the child is still alive; the child
    exits when the block ends. An OSError in the child is raised again here.
    """
    out_r, out_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(out_r)
            os.close(hold_w)
            try:
                if before is not None:
                    before()
                if ns is not None:
                    apply_in_child(ns)
                report: dict[str, Any] = {"value": body()}
            except OSError as exc:
                report = {"errno": exc.errno, "message": exc.strerror}
            except BaseException:
                report = {"raised": traceback.format_exc()}
            os.write(out_w, json.dumps(report).encode() + b"\n")
            os.read(hold_r, 1)  # EOF when the test lets go
        finally:
            os._exit(0)
    os.close(out_w)
    os.close(hold_r)
    try:
        report = json.loads(_read_line(out_r, TIMEOUT))
        if "errno" in report:
            raise OSError(report["errno"], report["message"])
        if "raised" in report:
            raise AssertionError(f"the child failed:\n{report['raised']}")
        yield Child(pid, report["value"])
    finally:
        os.close(hold_w)
        os.close(out_r)
        _reap(pid, TIMEOUT)


def run_in_child(
    body: Callable[[], Any],
    ns: Namespaces | None = None,
    *,
    before: Callable[[], None] | None = None,
) -> Any:
    """What ``body`` returns in a child set up by ``apply_in_child(ns)``."""
    with in_child(body, ns, before=before) as child:
        return child.value


def _read_line(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError("the child did not report in time")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError("the child died without reporting")
        data += chunk
    return data


def _reap(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


# --- what a child looks at ----------------------------------------------------


def try_write(path: str | Path) -> str:
    """ "ok" or the errno name of creating/appending to ``path``."""
    try:
        with open(path, "a") as f:
            f.write("x")
    except OSError as exc:
        return errno.errorcode[exc.errno or 0]
    return "ok"


def mountinfo() -> list[tuple[str, str, str]]:
    """(mount point, fs type, source) of every mount in this namespace."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, source = tail.split()[:2]
        out.append((fields.split()[4], fstype, source))
    return out


def with_paths(field: str, *paths: str) -> Namespaces:
    """Namespaces with ``paths`` as its read_only_paths or hidden_paths."""
    if field == "read_only_paths":
        return Namespaces(read_only_paths=paths)
    return Namespaces(hidden_paths=paths)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


def umount(target: str, flags: int = 0) -> None:
    """``umount2(2)``, for tests that take a mount away again (tinit never unmounts)."""
    if _libc.umount2(os.fsencode(target), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), target)


def unshare_private_mounts() -> None:
    unshare(CLONE_NEWNS)
    make_mounts_private()


def enter_user_namespace() -> None:
    """Become root of a new user namespace, as in a rootless container."""
    unshare(CLONE_NEWUSER)
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text("0 0 1")
    Path("/proc/self/gid_map").write_text("0 0 1")


@pytest.fixture(autouse=True)
def _host_mounts_unchanged() -> Iterator[None]:
    """No test leaves one of its mounts on the host."""
    before = set(mountinfo())
    yield
    ours = [
        m
        for m in set(mountinfo()) - before
        if m[2].startswith("tinit-")
        or m[0] in ("/", *TMP_DIRS, "/proc")
        or m[0].startswith(("/tmp/", "/var/tmp/", "/proc/", "/var/lib/tinit-ns-"))
    ]
    assert ours == []


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory outside /tmp, which a private /tmp would hide."""
    path = Path(tempfile.mkdtemp(prefix="tinit-ns-", dir="/var/lib"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """ro/ (with old and sub/), hid/ (with secret), file (content), under tmp_path."""
    (tmp_path / "ro" / "sub").mkdir(parents=True)
    (tmp_path / "ro" / "old").write_text("old")
    (tmp_path / "hid").mkdir()
    (tmp_path / "hid" / "secret").write_text("secret")
    (tmp_path / "file").write_text("content")
    return tmp_path


# --- private_tmp --------------------------------------------------------------


@needs_root
def test_private_tmp_is_seen_by_no_one_else() -> None:
    """A file in a private /tmp or /var/tmp is not on the host nor in another service's."""
    name = f"tinit-test-{uuid.uuid4().hex}"
    ns = Namespaces(private_tmp=True)

    def write() -> list[list[str]]:
        for directory in TMP_DIRS:
            Path(directory, name).write_text("secret")
        return [os.listdir(directory) for directory in TMP_DIRS]

    def look() -> list[list[str]]:
        return [os.listdir(directory) for directory in TMP_DIRS]

    with in_child(write, ns) as child:
        assert child.value == [[name], [name]], "a private /tmp starts empty"
        for directory in TMP_DIRS:
            assert not Path(directory, name).exists()
            # The file is real: the host sees it through the child's root.
            assert Path(f"/proc/{child.pid}/root{directory}/{name}").read_text() == "secret"
        assert run_in_child(look, ns) == [[], []]
    for directory in TMP_DIRS:
        assert not Path(directory, name).exists()


@needs_root
def test_private_tmp_is_a_sticky_world_writable_tmpfs() -> None:
    """/tmp and /var/tmp are fresh tmpfs, mode 1777, nosuid and nodev, not noexec."""

    def look() -> list[dict[str, Any]]:
        mounts = {point: (fstype, source) for point, fstype, source in mountinfo()}
        return [
            {
                "mount": mounts[directory],
                "mode": oct(os.stat(directory).st_mode & 0o7777),
                "flags": os.statvfs(directory).f_flag,
            }
            for directory in TMP_DIRS
        ]

    for seen in run_in_child(look, Namespaces(private_tmp=True)):
        assert seen["mount"] == ["tmpfs", "tinit-private-tmp"]
        assert seen["mode"] == "0o1777"
        assert seen["flags"] & os.ST_NOSUID and seen["flags"] & os.ST_NODEV
        assert not seen["flags"] & (os.ST_NOEXEC | os.ST_RDONLY)


# --- read_only_paths ------------------------------------------------------------


@needs_root
def test_read_only_paths_refuse_writes_with_erofs(tree: Path) -> None:
    """Creating, appending and mkdir in a read-only path fail with EROFS; the host still writes."""
    ro, file = tree / "ro", tree / "file"

    def look() -> dict[str, str]:
        seen = {"new": try_write(ro / "new"), "old": try_write(ro / "old")}
        seen["file"] = try_write(file)
        try:
            os.mkdir(ro / "dir")
            seen["mkdir"] = "ok"
        except OSError as exc:
            seen["mkdir"] = errno.errorcode[exc.errno or 0]
        seen["read"] = (ro / "old").read_text()
        return seen

    seen = run_in_child(look, Namespaces(read_only_paths=(str(ro), str(file))))
    assert seen == {
        "new": "EROFS",
        "old": "EROFS",
        "file": "EROFS",
        "mkdir": "EROFS",
        "read": "old",
    }
    assert try_write(ro / "new") == "ok"
    assert try_write(file) == "ok"


@needs_root
def test_read_only_paths_cover_submounts_and_keep_their_flags(tree: Path) -> None:
    """A mount below a read-only path is read-only too, and keeps nosuid/nodev/noexec."""
    ro = tree / "ro"

    def mount_sub() -> None:
        unshare_private_mounts()
        mount("tmpfs", str(ro / "sub"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)

    def look() -> list[Any]:
        return [try_write(ro / "x"), try_write(ro / "sub" / "x"), os.statvfs(ro / "sub").f_flag]

    top, sub, flags = run_in_child(look, Namespaces(read_only_paths=(str(ro),)), before=mount_sub)
    assert (top, sub) == ("EROFS", "EROFS")
    for flag in (os.ST_RDONLY, os.ST_NOSUID, os.ST_NODEV, os.ST_NOEXEC):
        assert flags & flag


@needs_root
def test_read_only_root_leaves_dev_proc_and_private_tmp_writable() -> None:
    """``read_only_paths: [/]`` is like ProtectSystem=strict: /dev/shm, /proc and /tmp still work."""
    stray = f"/tinit-test-{uuid.uuid4().hex}"
    shm = f"/dev/shm/tinit-test-{uuid.uuid4().hex}"

    def look() -> dict[str, str]:
        seen = {path: try_write(path) for path in (stray, shm, "/tmp/x", "/var/tmp/x")}
        for path in (stray, shm):
            if seen[path] == "ok":
                os.unlink(path)
        with open("/proc/self/comm", "w") as f:
            f.write("renamed")
        seen["comm"] = Path("/proc/self/comm").read_text().strip()
        return seen

    try:
        seen = run_in_child(look, Namespaces(read_only_paths=("/",), private_tmp=True))
    finally:
        for path in (stray, shm):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    assert seen == {
        stray: "EROFS",
        shm: "ok",
        "/tmp/x": "ok",
        "/var/tmp/x": "ok",
        "comm": "renamed",
    }


# --- hidden_paths ---------------------------------------------------------------


@needs_root
def test_hidden_directory_looks_empty_and_read_only(tree: Path) -> None:
    """A hidden directory is an empty read-only directory; the host still sees its content."""
    hid = tree / "hid"

    def look() -> dict[str, Any]:
        return {
            "list": os.listdir(hid),
            "write": try_write(hid / "new"),
            "mode": oct(stat.S_IMODE(os.stat(hid).st_mode)),
        }

    seen = run_in_child(look, Namespaces(hidden_paths=(str(hid),)))
    assert seen == {"list": [], "write": "EROFS", "mode": "0o755"}
    assert (hid / "secret").read_text() == "secret"


@needs_root
def test_hidden_file_reads_empty_and_keeps_its_content(tree: Path) -> None:
    """A hidden file reads empty; writes to it vanish (it is /dev/null) and never reach the file."""
    file = tree / "file"

    def look() -> list[str]:
        return [file.read_text(), try_write(file), file.read_text()]

    assert run_in_child(look, Namespaces(hidden_paths=(str(file),))) == ["", "ok", ""]
    assert file.read_text() == "content"


@needs_root
def test_a_hidden_path_inside_a_read_only_one_is_hidden(tree: Path) -> None:
    """Hidden paths are applied after read-only ones."""
    (tree / "ro" / "sub" / "secret").write_text("secret")
    ns = Namespaces(read_only_paths=(str(tree / "ro"),), hidden_paths=(str(tree / "ro" / "sub"),))
    assert run_in_child(lambda: os.listdir(tree / "ro" / "sub"), ns) == []


@needs_root
def test_paths_under_tmp_work_with_a_private_tmp(tree: Path) -> None:
    """Paths under the host's /tmp are handled before the private /tmp covers them."""
    ns = Namespaces(
        private_tmp=True,
        read_only_paths=(str(tree / "ro"),),
        hidden_paths=(str(tree / "hid"), str(tree / "file")),
    )
    assert run_in_child(lambda: os.listdir("/tmp"), ns) == []


# --- network: none ------------------------------------------------------------


@needs_root
def test_network_none_has_only_its_own_loopback() -> None:
    """Only ``lo``, up; the host's 127.0.0.1 is unreachable, its own loopback works."""
    with socket.create_server(("127.0.0.1", 0)) as host_server:
        port = host_server.getsockname()[1]

        def look() -> dict[str, Any]:
            seen: dict[str, Any] = {"interfaces": socket.if_nameindex()}
            seen["lo_up"] = bool(_interface_flags("lo") & namespaces.IFF_UP)
            set_loopback_up()  # a second time is harmless
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                seen["host"] = "connected"
            except OSError as exc:
                seen["host"] = errno.errorcode[exc.errno or 0]
            # The same port is free on its own loopback.
            with (
                socket.create_server(("127.0.0.1", port)) as own,
                socket.create_connection(("127.0.0.1", port), timeout=5) as client,
            ):
                peer, _ = own.accept()
                client.sendall(b"ping")
                seen["own"] = peer.recv(4).decode()
                peer.close()
            return seen

        seen = run_in_child(look, Namespaces(network="none"))
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert seen == {
        "interfaces": [[1, "lo"]],
        "lo_up": True,
        "host": "ECONNREFUSED",
        "own": "ping",
    }


def _interface_flags(name: str) -> int:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = namespaces._IFREQ.pack(name.encode(), 0)
        reply = fcntl.ioctl(sock.fileno(), namespaces.SIOCGIFFLAGS, request)
        return int(namespaces._IFREQ.unpack(reply)[1])


# --- what apply_in_child does and does not do --------------------------------


@needs_root
@pytest.mark.parametrize(
    ("ns", "changed"),
    [
        (Namespaces(), []),
        (Namespaces(pid="private"), []),
        (Namespaces(private_tmp=True), ["mnt"]),
        (Namespaces(network="none"), ["net"]),
        (Namespaces(hidden_paths=("/etc/hostname",), network="none"), ["mnt", "net"]),
    ],
    ids=["nothing", "pid-is-the-spawners", "private_tmp", "network", "both"],
)
def test_apply_in_child_unshares_only_what_is_asked(ns: Namespaces, changed: list[str]) -> None:
    """Each option makes only its own namespace; ``pid: private`` is left to the spawner."""
    kinds = ("mnt", "net", "pid", "uts", "ipc", "user", "cgroup")

    def look() -> dict[str, str]:
        return {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in kinds}

    host = look()
    seen = run_in_child(look, ns)
    assert sorted(kind for kind in kinds if seen[kind] != host[kind]) == changed


@needs_root
@pytest.mark.parametrize(
    ("field", "stage"),
    [("read_only_paths", "make {} read-only"), ("hidden_paths", "hide {}")],
)
def test_a_missing_path_fails_with_a_message_naming_it(field: str, stage: str) -> None:
    """apply_in_child raises OSError(ENOENT, "<stage naming the path>: <reason>")."""
    missing = f"/nonexistent-{uuid.uuid4().hex}"
    with pytest.raises(OSError, match=r"^\[Errno 2\] ") as caught:
        run_in_child(lambda: None, with_paths(field, missing))
    assert caught.value.errno == errno.ENOENT
    assert caught.value.strerror == f"{stage.format(missing)}: No such file or directory"


@needs_root
def test_mounts_do_not_propagate_back_to_a_shared_host() -> None:
    """With every mount of the host shared, the service's mounts still stay its own.

    The "host" here is a child whose mounts are all made shared (as on a
    systemd machine); a control child that skips make_mounts_private shows
    that its mounts would otherwise appear there. Nor does a mount the host
    makes later reach the service (private, not slave): under a read-only
    path it would be writable.
    """
    tmp = Path(tempfile.mkdtemp(prefix="tinit-ns-", dir="/var/lib"))
    (tmp / "ro" / "late").mkdir(parents=True)
    (tmp / "hid").mkdir()
    ns = Namespaces(
        private_tmp=True,
        read_only_paths=(str(tmp / "ro"),),
        hidden_paths=(str(tmp / "hid"),),
    )

    def make_shared_host() -> None:
        unshare(CLONE_NEWNS)
        mount(None, "/", None, MS_REC | MS_SHARED)

    def control() -> None:
        unshare(CLONE_NEWNS)  # copies stay peers of the "host"'s mounts
        mount("tinit-control", str(tmp / "hid"), "tmpfs")

    def host() -> dict[str, Any]:
        before = Path("/proc/self/mountinfo").read_text()
        with in_child(lambda: None, ns) as service:
            during = Path("/proc/self/mountinfo").read_text()
            mount("tinit-late", str(tmp / "ro" / "late"), "tmpfs")
            late = "tinit-late" in Path(f"/proc/{service.pid}/mountinfo").read_text()
            umount(str(tmp / "ro" / "late"))
        after = Path("/proc/self/mountinfo").read_text()
        with in_child(lambda: None, before=control):
            leaked = Path("/proc/self/mountinfo").read_text()
        return {
            "during": during == before,
            "after": after == before,
            "control": "tinit-control" in leaked,
            "late": late,
        }

    try:
        seen = run_in_child(host, before=make_shared_host)
    finally:
        shutil.rmtree(tmp)
    assert seen == {"during": True, "after": True, "control": True, "late": False}


@needs_root
def test_namespaces_work_inside_a_user_namespace(scratch: Path) -> None:
    """As root of a user namespace (rootless containers), where mount flags are locked."""
    (scratch / "ro" / "sub").mkdir(parents=True)
    (scratch / "hid").mkdir()
    (scratch / "hid" / "secret").write_text("secret")
    (scratch / "file").write_text("content")
    ns = Namespaces(
        private_tmp=True,
        read_only_paths=(str(scratch / "ro"),),
        hidden_paths=(str(scratch / "hid"), str(scratch / "file")),
        network="none",
    )

    def before() -> None:
        unshare_private_mounts()
        mount("tmpfs", str(scratch / "ro" / "sub"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        enter_user_namespace()

    def look() -> dict[str, Any]:
        return {
            "ro": try_write(scratch / "ro" / "x"),
            "sub": try_write(scratch / "ro" / "sub" / "x"),
            "hid": os.listdir(scratch / "hid"),
            "file": (scratch / "file").read_text(),
            "tmp": os.listdir("/tmp"),
            "net": socket.if_nameindex(),
        }

    assert run_in_child(look, ns, before=before) == {
        "ro": "EROFS",
        "sub": "EROFS",
        "hid": [],
        "file": "",
        "tmp": [],
        "net": [[1, "lo"]],
    }


# --- mount_proc -------------------------------------------------------------------


@needs_root
def test_mount_proc_shows_the_new_pid_namespace_and_keeps_the_runtimes_masks() -> None:
    """A fresh /proc lists only the new PID namespace; masked /proc paths stay masked."""
    files = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if os.path.exists(p)]
    dirs = [p for p in ("/proc/acpi", "/proc/scsi", "/proc/driver") if os.path.isdir(p)]
    assert files and dirs, "no /proc path to mask on this kernel"
    masked_file, masked_dir = files[0], dirs[0]
    # A runtime also binds pieces of proc read-only: a directory and a file.
    ro_file = next(p for p in ("/proc/sysrq-trigger", "/proc/loadavg") if os.path.exists(p))

    def mask_like_a_runtime() -> None:
        unshare_private_mounts()
        mount("/dev/null", masked_file, None, MS_BIND)
        mount("tmpfs", masked_dir, "tmpfs", MS_RDONLY)
        for path in ("/proc/sys", ro_file):
            mount(path, path, None, MS_BIND | MS_REC)
            mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        unshare(CLONE_NEWPID)

    def pid_one() -> dict[str, Any]:
        mount_proc()
        return {
            "pid": os.getpid(),
            "self": os.readlink("/proc/self"),
            "pids": sorted(int(e) for e in os.listdir("/proc") if e.isdigit()),
            "file": os.stat(masked_file).st_rdev == os.stat("/dev/null").st_rdev,
            "dir": os.listdir(masked_dir),
            "sys": bool(os.statvfs("/proc/sys").f_flag & os.ST_RDONLY),
            "ro_file": try_write(ro_file),
        }

    seen = run_in_child(lambda: run_in_child(pid_one), before=mask_like_a_runtime)
    assert seen == {
        "pid": 1,
        "self": "1",
        "pids": [1],
        "file": True,
        "dir": [],
        "sys": True,
        "ro_file": "EROFS",
    }


# --- the syscall wrappers ---------------------------------------------------------


@needs_root
def test_setns_returns_to_a_namespace_left_by_unshare() -> None:
    """unshare(CLONE_NEWUTS) gives a hostname of one's own; setns goes back."""

    def look() -> list[str]:
        with open("/proc/self/ns/uts") as original:
            unshare(CLONE_NEWUTS)
            socket.sethostname("tinit-test")
            inside = socket.gethostname()
            setns(original.fileno(), CLONE_NEWUTS)
        return [inside, socket.gethostname()]

    assert run_in_child(look) == ["tinit-test", socket.gethostname()]


@needs_root
def test_wrappers_raise_oserror_with_errno_and_path() -> None:
    """mount names the target; unshare of an unknown flag is EINVAL."""
    missing = f"/nonexistent-{uuid.uuid4().hex}"

    def look() -> list[Any]:
        unshare_private_mounts()
        seen: list[Any] = []
        calls: list[Callable[[], None]] = [
            lambda: mount("tmpfs", missing, "tmpfs"),
            lambda: unshare(1),  # not a namespace flag
        ]
        for call in calls:
            try:
                call()
                seen.append("ok")
            except OSError as exc:
                seen.append([errno.errorcode[exc.errno or 0], exc.filename])
        return seen

    assert run_in_child(look) == [["ENOENT", missing], ["EINVAL", None]]


@needs_root
def test_unshare_fails_with_eperm_without_cap_sys_admin() -> None:
    """The failure host_support predicts, for real."""

    def look() -> str:
        prctl.cap_effective.sys_admin = False
        try:
            unshare(CLONE_NEWNS | CLONE_NEWNET)
        except OSError as exc:
            return errno.errorcode[exc.errno or 0]
        return "ok"

    assert run_in_child(look) == "EPERM"


# --- host_support -------------------------------------------------------------------

EVERYTHING = Namespaces(
    private_tmp=True,
    read_only_paths=("/etc",),
    hidden_paths=("/etc/hostname",),
    network="none",
    pid="private",
)


@needs_root
def test_host_support_as_root_is_none() -> None:
    """Root with every capability gets everything; asking for nothing is always fine."""
    assert host_support(EVERYTHING) is None
    assert host_support(Namespaces()) is None


@pytest.mark.parametrize("field", ["read_only_paths", "hidden_paths"])
def test_host_support_names_a_missing_path(field: str) -> None:
    """A path that does not exist is named, with its key and the fix."""
    missing = f"/nonexistent-{uuid.uuid4().hex}"
    answer = host_support(with_paths(field, "/etc", missing))
    assert answer == f"{field}: {missing} does not exist: create it in the image or leave it out"


@needs_root
def test_host_support_without_cap_sys_admin_says_how_to_grant_it() -> None:
    """Dropping CAP_SYS_ADMIN (as a container without --cap-add SYS_ADMIN) gets one sentence."""

    def look() -> list[str | None]:
        drop_privileges(Privileges(drop=frozenset({SYS_ADMIN})))
        return [host_support(EVERYTHING), host_support(Namespaces())]

    answer, nothing = run_in_child(look)
    assert nothing is None
    assert answer.startswith("per-service namespaces need CAP_SYS_ADMIN")
    assert "--cap-add SYS_ADMIN" in answer and "\n" not in answer


@needs_root
def test_host_support_for_network_none_needs_cap_net_admin() -> None:
    """Without CAP_NET_ADMIN the new loopback cannot be brought up: say so."""

    def look() -> list[str | None]:
        drop_privileges(Privileges(drop=frozenset({NET_ADMIN})))
        return [
            host_support(Namespaces(network="none")),
            host_support(Namespaces(private_tmp=True)),
        ]

    network, tmp = run_in_child(look)
    assert network is not None and "CAP_NET_ADMIN" in network
    assert tmp is None


@needs_root
def test_host_support_without_proc_asks_the_kernel() -> None:
    """With /proc unmounted, capabilities come from capget(2)."""

    def look() -> list[str | None]:
        unshare_private_mounts()
        umount("/proc", MNT_DETACH)
        assert not os.path.exists("/proc/self/status")
        root = host_support(EVERYTHING)
        drop_privileges(Privileges(drop=frozenset({SYS_ADMIN})))
        return [root, host_support(EVERYTHING)]

    root, dropped = run_in_child(look)
    assert root is None
    assert dropped is not None and "CAP_SYS_ADMIN" in dropped


@pytest.mark.parametrize(
    ("label", "profile"),
    [
        ("docker-default (enforce)", "docker-default"),
        ("cri-containerd.apparmor.d (enforce)", "cri-containerd.apparmor.d"),
        ("containers-default-0.57.4 (enforce)", "containers-default-0.57.4"),
        ("docker-default (complain)", None),
        ("unconfined", None),
        ("my-profile (enforce)", None),
        ("", None),
    ],
)
def test_apparmor_profiles_known_to_deny_mounts(label: str, profile: str | None) -> None:
    """The default profiles of Docker, containerd and podman forbid mount(2) when enforced."""
    assert namespaces._mount_denying_profile(label) == profile


# --- user_namespace_available ---------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, None),
        ({"sys/user/max_user_namespaces": "15000"}, None),
        ({"sys/kernel/unprivileged_userns_clone": "1"}, None),
        ({"sys/kernel/unprivileged_userns_clone": "0"}, "kernel.unprivileged_userns_clone = 0"),
        ({"sys/user/max_user_namespaces": "0"}, "user.max_user_namespaces = 0"),
        (
            {"sys/kernel/apparmor_restrict_unprivileged_userns": "1"},
            "kernel.apparmor_restrict_unprivileged_userns = 1",
        ),
        ({"self/ns/mnt": ""}, "CONFIG_USER_NS"),
        ({"self/ns/mnt": "", "self/ns/user": ""}, None),
    ],
)
def test_user_namespace_available_reads_the_sysctls(
    tmp_path: Path, files: dict[str, str], expected: str | None
) -> None:
    """Each switch that turns user namespaces off gives a sentence naming it and the fix."""
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content + "\n")
    answer = user_namespace_available(proc=str(tmp_path))
    if expected is None:
        assert answer is None
    else:
        assert answer is not None and expected in answer and "run tinit as root" in answer


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_user_namespace_available_agrees_with_unshare_as_nobody() -> None:
    """As uid 65534, the answer matches whether ``unshare --user`` really works."""
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    code = "from tinit.namespaces import user_namespace_available as f; print(repr(f()))"
    asked = subprocess.run(
        [*as_nobody, sys.executable, "-c", code],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    answer = ast.literal_eval(asked.stdout)  # None or a str, printed by repr
    tried = subprocess.run(
        [*as_nobody, "unshare", "--user", "--map-root-user", "true"],
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert answer is None or (isinstance(answer, str) and "\n" not in answer)
    assert (answer is None) == (tried.returncode == 0), (answer, tried.stderr)
    assert user_namespace_available() == answer


def test_clone_flags_are_the_kernels() -> None:
    """The constants match the kernel ABI (and os's, where Python has them)."""
    assert (CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET) == (0x20000, 0x20000000, 0x40000000)
    for name in ("CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWPID", "CLONE_NEWNET"):
        if hasattr(os, name):
            assert getattr(os, name) == getattr(namespaces, name)
