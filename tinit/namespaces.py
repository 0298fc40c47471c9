"""Per-service namespaces, set up in the forked child before exec.

What each key does for a user: docs/configuration.md, ``namespaces``.

:func:`apply_in_child` runs between fork and exec, before privileges are
dropped (it needs ``CAP_SYS_ADMIN``) and before the child changes into its
working directory (a cwd taken earlier would still point into the unhidden,
writable tree). Its mounts live in a mount namespace of the service's own:
they vanish with the service's last process, and the kernel does the clean-up.

Choices and kernel quirks:

- **MS_PRIVATE, not MS_SLAVE.** A slave would still receive mounts made
  later on the host side -- including under a read-only or hidden path,
  where the new mount would be writable and visible, so the guarantee would
  quietly lapse. systemd accepts that (and documents it); we would rather a
  volume mounted later reach the service only at its next start. The cost:
  the service pins the filesystems it saw until it exits.
- **Read-only is recursive, but not into /dev, /proc and /sys** when they
  lie strictly below the path (``read_only_paths: [/]``): like systemd's
  ``ProtectSystem=strict``, so /dev/shm and ptys keep working. The kernel
  cannot flag a whole tree read-only with ``mount(2)``, so every mount under
  the path is remounted one by one, keeping its nosuid/nodev/noexec: inside a
  user namespace (rootless containers) those flags are locked, and a remount
  that would clear them fails with EPERM.
- **"/" is not bind-mounted on itself**: a mount stacked on the process's
  root is only seen after a chroot, so the remount would change the old root
  anyway. The root mount of the new namespace is already ours to change.
- **Order: read-only paths, hidden paths, then the private /tmp,** so
  ``read_only_paths: [/]`` with ``private_tmp`` leaves a writable /tmp, a
  hidden path inside a read-only one is still hidden, and a path under the
  host's /tmp is dealt with before the private one covers it (instead of
  failing there with ENOENT). Symlinks in a path are followed: their target
  is what becomes read-only or hidden.
- **A hidden directory is an empty, read-only tmpfs of mode 0755**, not
  0000: it then looks empty to every user, as a hidden file (``/dev/null``,
  read-only) reads empty to every user. Read-only does not apply to device
  nodes, so writes to a hidden file succeed and are discarded.
- **A missing /tmp or /var/tmp gets no private tmpfs**: creating one would
  change the image for everyone.
- :func:`mount_proc` keeps the masks a container runtime lays over /proc
  (``/proc/kcore`` -> /dev/null, ``/proc/acpi`` -> empty tmpfs, ``/proc/sys``
  read-only): a fresh proc would otherwise show what the runtime hid.

Python 3.11 has no ``os.unshare``/``os.setns``, so these go to libc through
ctypes, resolved at import so the child does no dlopen of its own.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import socket
import stat
import struct
from typing import TYPE_CHECKING, Final

from .errors import stage

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .config import Namespaces

CLONE_NEWNS: Final = 0x00020000
CLONE_NEWCGROUP: Final = 0x02000000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000

MS_RDONLY: Final = 0x1
MS_NOSUID: Final = 0x2
MS_NODEV: Final = 0x4
MS_NOEXEC: Final = 0x8
MS_REMOUNT: Final = 0x20
MS_NOSYMFOLLOW: Final = 0x100
MS_BIND: Final = 0x1000
MS_REC: Final = 0x4000
MS_PRIVATE: Final = 0x40000
MS_SLAVE: Final = 0x80000
MS_SHARED: Final = 0x100000
MNT_DETACH: Final = 0x2

CAP_NET_ADMIN: Final = 12
CAP_SYS_ADMIN: Final = 21

# statvfs flag -> the mount flag a bind remount must repeat to keep it.
# (ST_NOSYMFOLLOW is 0x2000 in glibc; Python 3.11's os lacks the name.)
_KEPT_FLAGS: Final = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (0x2000, MS_NOSYMFOLLOW),
)
_API_TREES: Final = ("/dev", "/proc", "/sys")
_TMP_DIRS: Final = ("/tmp", "/var/tmp")
_EMPTY_DIR_FLAGS: Final = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC

_KIND_NAMES: Final = {CLONE_NEWNET: "network", CLONE_NEWNS: "mount", CLONE_NEWPID: "PID"}

SIOCGIFFLAGS: Final = 0x8913
SIOCSIFFLAGS: Final = 0x8914
IFF_UP: Final = 0x1
# struct ifreq: a 16-byte name, then a union whose flags member is a short;
# 40 bytes in all on 64-bit (a larger buffer is harmless on 32-bit).
_IFREQ: Final = struct.Struct("16sH22x")

# AppArmor profiles that runtimes load by default; each has `deny mount,`.
_MOUNT_DENYING_PROFILES: Final = ("docker-default", "cri-containerd.apparmor.d")
_MOUNT_DENYING_PREFIXES: Final = ("containers-default",)  # podman

_libc: Final = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)


def _check(result: int, filename: str | None = None) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), filename)


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def unshare(flags: int) -> None:
    """``unshare(2)``: move this process into new namespaces of ``flags``."""
    _check(_libc.unshare(flags))


def setns(fd: int, nstype: int) -> None:
    """``setns(2)``: join the namespace open at ``fd`` (``nstype`` 0: any kind)."""
    _check(_libc.setns(fd, nstype))


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """``mount(2)``; raises OSError naming ``target``."""
    result = _libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data))
    _check(result, target)


def set_loopback_up() -> None:
    """Bring ``lo`` up in the current network namespace (a new one has it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0))
        flags = _IFREQ.unpack(request)[1]
        if not flags & IFF_UP:
            fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | IFF_UP))


def make_mounts_private() -> None:
    """Stop mount events crossing between this mount namespace and its origin.

    Private rather than slave: see the module docstring.
    """
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def mount_proc(path: str = "/proc") -> None:
    """Mount a fresh proc for the current PID namespace on ``path``.

    Call in a private mount namespace, from a process of the new PID
    namespace. Masks laid over the old proc are laid again over the new one.
    Inside a user namespace the kernel refuses (EPERM) while the old proc has
    such masks: it would reveal what they hide.
    """
    top = os.path.realpath(path)
    below = [m for m in _mountinfo() if m[0].startswith(top + "/")]
    mount("proc", top, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for point, fstype, read_only in below:
        try:
            st = os.lstat(point)
        except FileNotFoundError:
            continue  # e.g. /proc/scsi on a kernel without SCSI
        if fstype == "proc":
            if read_only:  # /proc/sys, /proc/sysrq-trigger...
                mount(point, point, None, MS_BIND | MS_REC)
                _remount_read_only(point)
        elif not stat.S_ISDIR(st.st_mode):  # /proc/kcore -> /dev/null...
            mount("/dev/null", point, None, MS_BIND)
            _remount_read_only(point)
        elif fstype == "tmpfs":  # /proc/acpi -> an empty tmpfs...
            mount("tinit-hidden", point, "tmpfs", _EMPTY_DIR_FLAGS, "mode=0755")
        # Anything else (binfmt_misc...) is simply absent from the new proc.


def apply_in_child(ns: Namespaces) -> None:  # pragma: no cover - runs in forked children
    """Set up the namespaces ``ns`` asks for, in the forked child before exec.

    ``pid: private`` is left to the spawner: it takes a fork. Raises
    ``OSError(errno, "stage: reason")`` on the first failure; the child is
    then half set up and must not exec.
    """
    if ns.private_tmp or ns.read_only_paths or ns.hidden_paths:
        with stage("unshare the mount namespace"):
            unshare(CLONE_NEWNS)
        with stage("make mounts private"):
            make_mounts_private()
        for path in ns.read_only_paths:
            with stage(f"make {path} read-only"):
                _make_read_only(path)
        for path in ns.hidden_paths:
            with stage(f"hide {path}"):
                _hide(path)
        if ns.private_tmp:
            for path in _TMP_DIRS:
                if os.path.isdir(path):
                    with stage(f"mount a private {path}"):
                        mount("tinit-private-tmp", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    if ns.network == "none":
        with stage("unshare the network namespace"):
            unshare(CLONE_NEWNET)
        with stage("bring up lo"):
            set_loopback_up()


def kinds_of(ns: Namespaces) -> tuple[tuple[str, int], ...]:
    """The namespaces a service with ``ns`` has of its own: (``/proc/PID/ns`` name, flag).

    Network before mount: once in the service's mount namespace, the
    ``/proc`` there may be another PID namespace's.
    """
    kinds: list[tuple[str, int]] = []
    if ns.network == "none":
        kinds.append(("net", CLONE_NEWNET))
    if ns.pid == "private":
        kinds.append(("pid", CLONE_NEWPID))
    if ns.private_tmp or ns.read_only_paths or ns.hidden_paths or ns.pid == "private":
        kinds.append(("mnt", CLONE_NEWNS))
    return tuple(kinds)


def open_of(pid: int, ns: Namespaces) -> dict[int, int]:
    """Open the namespaces of process ``pid`` that a service with ``ns`` has of its own.

    Returns flag -> fd (close-on-exec), for ``ChildSpec.enter_namespaces``;
    the caller closes them. The caller must know ``pid`` is still its
    unreaped child, so the number cannot name another process. Raises
    OSError (nothing left open) when one cannot be opened: the process is
    exiting, and a probe must not run outside its namespaces.
    """
    opened: dict[int, int] = {}
    try:
        for name, flag in kinds_of(ns):
            opened[flag] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        for fd in opened.values():
            os.close(fd)
        raise
    return opened


def enter_in_child(entries: Mapping[int, int]) -> None:  # pragma: no cover - forked children
    """Join the namespaces open at ``entries`` (flag -> fd), but the PID one (the fork's).

    Joining a mount namespace moves the process to that namespace's root; it
    is then taken back to the directory it was in, by path, as a service
    without a ``workdir`` starts in tinit's.
    """
    cwd = os.getcwd()
    for flag, fd in entries.items():
        if flag == CLONE_NEWPID:
            continue
        with stage(f"join the service's {_KIND_NAMES.get(flag, 'other')} namespace"):
            setns(fd, flag)
    if CLONE_NEWNS in entries:
        try:
            os.chdir(cwd)
        except OSError:
            os.chdir("/")


def _make_read_only(path: str) -> None:
    top = os.path.realpath(path)
    if top != "/":
        mount(top, top, None, MS_BIND | MS_REC)
    for point in _mounts_under(top):
        try:
            _remount_read_only(point)
        except OSError as exc:
            # A submount shadowed by a later mount is listed but unreachable:
            # its path leads elsewhere (EINVAL: not a mount root) or nowhere.
            if point == top or exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise


def _hide(path: str) -> None:
    if os.path.isdir(path):
        mount("tinit-hidden", path, "tmpfs", _EMPTY_DIR_FLAGS, "mode=0755")
    else:
        mount("/dev/null", path, None, MS_BIND)
        _remount_read_only(path)


def _remount_read_only(point: str) -> None:
    have = os.statvfs(point).f_flag
    kept = sum(ms for st, ms in _KEPT_FLAGS if have & st)
    mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)


def _inside(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top + "/")


def _mounts_under(top: str) -> list[str]:
    """Mount points at or below ``top`` (API trees strictly below it left out)."""
    return [
        point
        for point, _, _ in _mountinfo()
        if _inside(point, top)
        and not any(_inside(point, api) and not _inside(top, api) for api in _API_TREES)
    ]


_ESCAPE: Final = re.compile(r"\\([0-7]{3})")


def _mountinfo() -> list[tuple[str, str, bool]]:
    """(mount point, fs type, read-only) of each mount in this namespace, in order."""
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields, _, tail = line.partition(" - ")
            parts = fields.split()
            point = _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), parts[4])
            read_only = "ro" in parts[5].split(",")
            mounts.append((point, tail.split()[0], read_only))
    return mounts


def host_support(ns: Namespaces) -> str | None:
    """None if tinit can give a service ``ns`` here, else one sentence why not and what to do.

    Cheap and without side effects: it reads capabilities, the AppArmor
    label and the paths; it does not try to unshare.
    """
    mounts = bool(ns.private_tmp or ns.read_only_paths or ns.hidden_paths or ns.pid == "private")
    network = ns.network == "none"
    if not (mounts or network):
        return None
    caps = _effective_caps()
    if not caps >> CAP_SYS_ADMIN & 1:
        return (
            "per-service namespaces need CAP_SYS_ADMIN, which tinit does not have: run tinit "
            "as root, or start the container with --cap-add SYS_ADMIN "
            "--security-opt apparmor=unconfined"
        )
    if network and not caps >> CAP_NET_ADMIN & 1:
        return (
            "network: none needs CAP_NET_ADMIN to bring up the service's own loopback, which "
            "tinit does not have: start the container with --cap-add NET_ADMIN"
        )
    known = os.path.isdir("/proc/self/ns")  # without /proc, let the unshare tell
    for kind, label, wanted in (
        ("mnt", "mount", mounts),
        ("net", "network", network),
        ("pid", "PID", ns.pid == "private"),
    ):
        if wanted and known and not os.path.exists(f"/proc/self/ns/{kind}"):
            return f"this kernel has no {label} namespaces (/proc/self/ns/{kind} is missing)"
    profile = _mount_denying_profile(_apparmor_label())
    if mounts and profile is not None:
        return (
            f"the AppArmor profile {profile} forbids the mounts that private_tmp, "
            "read_only_paths, hidden_paths and pid: private need: start the container with "
            "--security-opt apparmor=unconfined"
        )
    for key, paths in (("read_only_paths", ns.read_only_paths), ("hidden_paths", ns.hidden_paths)):
        for path in paths:
            if not os.path.exists(path):
                return f"{key}: {path} does not exist: create it in the image or leave it out"
    return None


def _effective_caps() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    # No /proc (tinit may not have mounted it yet): ask capget(2).
    import prctl

    return sum(
        1 << cap
        for cap, name in ((CAP_SYS_ADMIN, "sys_admin"), (CAP_NET_ADMIN, "net_admin"))
        if getattr(prctl.cap_effective, name)
    )


def _apparmor_label() -> str:
    for path in ("/proc/self/attr/apparmor/current", "/proc/self/attr/current"):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read().strip("\x00\n ")
        except OSError:
            continue  # EINVAL when AppArmor is not the active LSM
    return ""


def _mount_denying_profile(label: str) -> str | None:
    """The profile in an AppArmor label like ``docker-default (enforce)`` if it denies mounts."""
    profile, _, mode = label.partition(" ")
    if mode != "(enforce)":
        return None
    if profile in _MOUNT_DENYING_PROFILES or profile.startswith(_MOUNT_DENYING_PREFIXES):
        return profile
    return None


def user_namespace_available(*, proc: str = "/proc") -> str | None:
    """None if an unprivileged user may create a user namespace here, else one sentence why not.

    Reads the sysctls that switch them off. None is no promise: a seccomp
    filter (Docker's default profile) or the nesting limit can still refuse.
    """

    def sysctl(name: str) -> str | None:
        try:
            with open(f"{proc}/sys/{name.replace('.', '/')}", encoding="ascii") as f:
                return f.read().strip()
        except OSError:
            return None

    if os.path.isdir(f"{proc}/self/ns") and not os.path.exists(f"{proc}/self/ns/user"):
        return "this kernel has no user namespaces (no CONFIG_USER_NS): run tinit as root"
    if sysctl("kernel.unprivileged_userns_clone") == "0":
        return (
            "unprivileged user namespaces are off on this host "
            "(kernel.unprivileged_userns_clone = 0): run tinit as root, or set it to 1 on the host"
        )
    if sysctl("user.max_user_namespaces") == "0":
        return (
            "user namespaces are off on this host (user.max_user_namespaces = 0): run tinit "
            "as root, or raise it on the host (e.g. sysctl user.max_user_namespaces=15000)"
        )
    if sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
        return (
            "AppArmor gives unprivileged user namespaces no capabilities on this host "
            "(kernel.apparmor_restrict_unprivileged_userns = 1): run tinit as root, or "
            "allow userns for it in an AppArmor profile"
        )
    return None
