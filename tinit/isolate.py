"""``tinit run --isolate``: make the namespace set of a container, then be its PID 1.

The process that was started (the outer one) creates a PID namespace for
its next child and forks it; that child is PID 1 there. The child takes new
mount, UTS and IPC namespaces (and a network namespace with ``net``), mounts
a fresh /proc, sets the hostname, and carries on as an ordinary ``tinit
run`` -- as the init of what is now a container in all but the image. The
outer process only relays: every signal it gets goes to the inner PID 1,
and it exits with the inner one's status. The namespaces end with the inner
PID 1, so nothing is left on the host: no process (the kernel kills the rest
of the PID namespace), no mount (the mount namespace dies with its last
process).

Without root, a user namespace maps the caller to root inside, where the
kernel allows unprivileged user namespaces; otherwise the refusal names what
is missing.
"""

from __future__ import annotations

import os
import signal
import socket

from . import namespaces as ns
from . import signals
from .errors import UsageError


def enter(*, net: bool, hostname: str) -> int | None:
    """Make the namespaces; return None in the inner PID 1, the exit code in the outer process.

    Call with every signal blocked (signals.block), before trio is loaded:
    both processes go on from here single-threaded.
    """
    user = os.geteuid() != 0
    if user:
        problem = ns.user_namespace_available()
        if problem is not None:
            raise UsageError(
                f"--isolate needs root (CAP_SYS_ADMIN) or unprivileged user namespaces: {problem}"
            )
    uid, gid = os.geteuid(), os.getegid()
    try:
        ns.unshare(ns.CLONE_NEWPID | (ns.CLONE_NEWUSER if user else 0))
        if user:
            _map_to_root(uid, gid)
    except OSError as exc:
        raise UsageError(f"--isolate: cannot create a PID namespace: {exc.strerror}") from None
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        _inner(net=net, hostname=hostname, report=ready_w)
        return None
    os.close(ready_w)
    return _relay(pid, ready_r)


def _map_to_root(uid: int, gid: int) -> None:
    """Map the calling user to root in the new user namespace (user_namespaces(7))."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def _inner(*, net: bool, hostname: str, report: int) -> None:
    """In the new PID namespace, as its PID 1: the rest of the container's namespaces."""
    stage = "create the namespaces"
    try:
        import prctl

        prctl.set_pdeathsig(signal.SIGKILL)  # the outer process is our only tie to the host
        flags = ns.CLONE_NEWNS | ns.CLONE_NEWUTS | ns.CLONE_NEWIPC
        if net:
            flags |= ns.CLONE_NEWNET
        ns.unshare(flags)
        stage = "make mounts private"
        ns.make_mounts_private()
        stage = "mount /proc"
        ns.mount_proc("/proc")
        stage = "set the hostname"
        socket.sethostname(hostname)
        if net:
            stage = "bring up loopback"
            ns.set_loopback_up()
    except OSError as exc:
        os.write(report, f"{stage}: {exc.strerror or exc}".encode())
        os._exit(2)
    os.close(report)


def _relay(pid: int, ready_r: int) -> int:
    """The outer process: pass signals in, wait for the inner PID 1, return its status."""
    failure = b""
    while chunk := os.read(ready_r, 4096):
        failure += chunk
    os.close(ready_r)
    if failure:
        os.waitpid(pid, 0)
        raise UsageError(f"--isolate: cannot {failure.decode(errors='replace')}")
    # The inner tinit takes the same signals a one-command tinit forwards.
    return signals.relay_until_exit(pid, signals.FORWARDABLE, lambda signum: os.kill(pid, signum))


def default_hostname(config: str | None, command: list[str] | None) -> str:
    """The config file's name without extension, or the command's name."""
    if config is not None:
        base = os.path.splitext(os.path.basename(config))[0]
    elif command:
        base = os.path.basename(command[0])
    else:
        base = "tinit"
    name = "".join(c if c.isalnum() or c in "-." else "-" for c in base).strip("-.")
    return (name or "tinit")[:63]
