"""Starting children: posix_spawn, or fork, set the child up, exec. Never waits (see reaper.py).

A child whose whole set-up ``posix_spawn`` can do (see ``_spawnable``) is
spawned: no copy of tinit is made, which halves what a start costs tinit.
Every other child -- one that joins a cgroup before its exec, switches user,
enters namespaces -- is forked, as follows.

Why ``os.fork`` from the trio thread instead of ``subprocess`` or
``trio.lowlevel.open_process``:

- ``trio.lowlevel.open_process`` spawns from a worker thread and waits for the
  child itself; both break the single-reaper rule (docs/architecture.md).
- Set-up that must happen *in the child, before exec* -- joining the service's
  cgroup so no early fork escapes it, ``tcsetpgrp`` for the foreground job,
  switching user, the parent-death signal after the switch -- needs code
  between fork and exec. ``Popen(preexec_fn=...)`` is that hook, and it is
  only unsafe when other threads exist. tinit never starts a thread, so a
  plain fork is safe, and it is cheaper than an exec trampoline (a second
  interpreter start per spawn).
- The fork and the registration with the reaper happen in one synchronous
  step on the trio thread, so no exit status can arrive for an unregistered
  pid.

The child reports a failure before exec over a close-on-exec pipe: EOF means
exec succeeded; otherwise it sends ``STAGE:ERRNO`` and exits 126 or 127.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import signal
import stat
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NamedTuple

from . import signals
from .errors import SpawnError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .config import Namespaces
    from .privileges import Privileges
    from .reaper import Child, Reaper

# Every signal that has a disposition to reset in the child.
_ALL_SIGNALS = set(signal.valid_signals())
_FD_LIMIT = os.sysconf("SC_OPEN_MAX")


#: no fds to pass, no namespaces to enter
_NONE: Final[Mapping[int, int]] = MappingProxyType({})


class ChildSpec(NamedTuple):
    """Everything that decides how one child starts.

    A NamedTuple where tinit's other values are frozen dataclasses: it is on
    the path of one-command mode, and importing ``dataclasses`` (with
    ``inspect``) would be a tenth of that mode's whole start-up.
    """

    argv: Sequence[str]
    env: Mapping[str, str]
    #: fds for the child's 0, 1 and 2; None inherits tinit's own.
    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None
    #: extra fds to pass: child fd number -> fd in tinit (a notify_fd probe,
    #: the fds one-command mode was given).
    pass_fds: Mapping[int, int] = _NONE
    #: True: a new session (services). False: a new process group in tinit's
    #: session (one-command mode, so the terminal can be handed over).
    new_session: bool = True
    #: a terminal fd whose foreground process group the child takes.
    foreground_tty: int | None = None
    cwd: str | None = None
    umask: int | None = None
    #: user, groups and capabilities to switch to (privileges.py)
    privileges: Privileges | None = None
    #: signal the child gets when tinit dies (only when tinit is not PID 1).
    pdeathsig: int | None = None
    #: an open ``cgroup.procs`` fd the child writes itself into before exec.
    cgroup_procs: int | None = None
    #: the service's own namespaces (namespaces.py); ``pid: private`` forks
    #: the child into a new PID namespace where it is the init (see start)
    namespaces: Namespaces | None = None
    #: namespaces to join instead (an exec probe enters its service's):
    #: ``CLONE_NEW*`` flag -> an open ``/proc/PID/ns/*`` fd. The PID one is
    #: entered by the fork (see start), the others in the child.
    enter_namespaces: Mapping[int, int] = _NONE
    #: set ``LISTEN_PID`` to the child's own pid before exec: socket
    #: activation named tinit, and the fds go on to the child
    listen_pid_self: bool = False


def resolve(command: str, env: Mapping[str, str]) -> str:
    """Find ``command`` the way ``execvp`` would, with the child's PATH.

    Returns the path to exec. Raises SpawnError (127 not found, 126 not
    executable) without forking when the answer is already certain.
    """
    if "/" in command:
        return command
    path = env.get("PATH", os.defpath)
    denied: str | None = None
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or ".", command)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if os.access(candidate, os.X_OK):
            return candidate
        denied = denied or candidate
    if denied is not None:
        raise SpawnError(command, errno.EACCES, os.strerror(errno.EACCES))
    raise SpawnError(command, errno.ENOENT, os.strerror(errno.ENOENT))


def start(spec: ChildSpec, reaper: Reaper) -> tuple[Child, int | None]:
    """Start the child and register it; return it with the read end of its error pipe.

    Synchronous on purpose: the pid is registered with the reaper before the
    caller can reach a checkpoint. Pass the fd to :func:`wait_exec`; None
    means the child has already exec'd (see :func:`_posix_spawn`).
    """
    path = resolve(spec.argv[0], spec.env)
    argv = list(spec.argv)
    env = dict(spec.env)
    if _spawnable(spec):
        pid = _posix_spawn(spec, path, argv, env)
        return reaper.watch(pid, pid), None
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = _fork(
            private_pid=spec.namespaces is not None and spec.namespaces.pid == "private",
            enter_pid=_pid_namespace_to_enter(spec),
        )
    except BaseException:
        os.close(err_r)
        os.close(err_w)
        raise
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        _child_main(spec, path, argv, env, err_w)
    os.close(err_w)
    if not spec.new_session:
        # Also from the parent, so killpg(pid) works even before the child
        # has run its own setpgid (the classic job-control race).
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the child already did it, or already exec'd, or died
    return reaper.watch(pid, pid), err_r


def _spawnable(spec: ChildSpec) -> bool:
    """Whether ``posix_spawn`` can do all of this child's set-up.

    It resets signals, empties the mask, starts a session and places fds;
    tinit's own fds are close-on-exec from birth, so nothing else reaches
    the child. It cannot join a cgroup before the exec (that would make
    placement racy), switch users, enter namespaces, take a terminal, set a
    parent-death signal or learn its own pid: such a child is forked
    instead.

    glibc leaves the two signals it reserves for itself (32 and 33, below
    SIGRTMIN) ignored in the child, and an ignored signal stays ignored
    across exec. No program can use them through glibc, and glibc and musl
    programs set them up themselves, so services accept that. The command
    of one-command mode is forked, so it keeps tini's promise to the letter:
    not one signal blocked or ignored (one child: the saving would be small).
    """
    return (
        spec.new_session
        and spec.cgroup_procs is None
        and spec.privileges is None
        and spec.namespaces is None
        and not spec.enter_namespaces
        and spec.pdeathsig is None
        and spec.foreground_tty is None
        and not spec.listen_pid_self
        and (spec.cwd is None or os.path.isabs(spec.cwd))
    )


def _posix_spawn(spec: ChildSpec, path: str, argv: list[str], env: dict[str, str]) -> int:
    """Start the child with ``posix_spawn``: no copy of tinit, no Python in the child.

    A fork copies tinit's page tables, faults in the pages either side then
    writes, and the exec throws the copy away: most of what a start costs
    tinit. glibc's ``posix_spawn`` runs the child on tinit's memory until
    the exec (vfork semantics) and reports a failed exec as an error here,
    after waiting for that child itself (a process that never ran the
    service, waited for before tinit's reaper could see it).

    The working directory and umask the child starts with are tinit's own,
    set for the spawn and put back before anything else runs: tinit has one
    thread, so nothing can observe them in between.
    """
    staged: dict[int, int] = {}
    actions: list[tuple[int, int, int]] = []
    here = umask = -1
    try:
        # Every source is copied above every target first (close-on-exec),
        # so one dup2 can never clobber another's source, and a source that
        # is its own target still arrives without close-on-exec.
        floor = max([*spec.pass_fds, 2]) + 1
        wanted = {0: spec.stdin, 1: spec.stdout, 2: spec.stderr, **spec.pass_fds}
        for target, source in wanted.items():
            if source is not None:
                staged[target] = fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, floor)
                actions.append((os.POSIX_SPAWN_DUP2, staged[target], target))
        if spec.cwd is not None:
            here = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.chdir(spec.cwd)
            except OSError as exc:
                raise _failed(argv[0], exc, "chdir") from None
        if spec.umask is not None:
            umask = os.umask(spec.umask)
        try:
            return os.posix_spawn(
                path,
                argv,
                env,
                file_actions=actions,
                setsid=True,
                setsigmask=(),
                setsigdef=signals.RESETTABLE,
            )
        except OSError as exc:
            raise _failed(argv[0], exc, "exec") from None
    finally:
        if umask >= 0:
            os.umask(umask)
        if here >= 0:
            os.fchdir(here)
            os.close(here)
        for fd in staged.values():
            os.close(fd)


def _failed(command: str, exc: OSError, stage: str) -> SpawnError:
    code = exc.errno or errno.EINVAL
    return SpawnError(command, code, exc.strerror or os.strerror(code), stage)


def _pid_namespace_to_enter(spec: ChildSpec) -> int | None:
    if not spec.enter_namespaces:
        return None
    from .namespaces import CLONE_NEWPID

    return spec.enter_namespaces.get(CLONE_NEWPID)


def _fork(*, private_pid: bool, enter_pid: int | None = None) -> int:
    """os.fork, into a new PID namespace (the child is its PID 1) or an existing one.

    unshare(CLONE_NEWPID), or setns to ``enter_pid``, changes the PID
    namespace of this process's next children; setns back to its own right
    after the fork restores it, in the same synchronous step, so no other
    child is ever born in there.
    """
    if not private_pid and enter_pid is None:
        return os.fork()
    from . import namespaces as ns

    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if enter_pid is None:
            ns.unshare(ns.CLONE_NEWPID)
        else:
            ns.setns(enter_pid, ns.CLONE_NEWPID)
        try:
            pid = os.fork()
        except BaseException:
            ns.setns(own, ns.CLONE_NEWPID)
            raise
        if pid != 0:
            ns.setns(own, ns.CLONE_NEWPID)
        return pid
    finally:
        os.close(own)


#: what a child's set-up failure report may hold (stage, errno, reason)
_REPORT_LIMIT: Final = 4096


async def wait_exec(child: Child, err_r: int | None, command: str) -> None:
    """Wait until the child has exec'd; raise SpawnError if set-up or exec failed."""
    import trio

    if err_r is None:
        return
    os.set_blocking(err_r, False)
    try:
        data = b""
        while len(data) < _REPORT_LIMIT:
            await trio.lowlevel.wait_readable(err_r)
            chunk = os.read(err_r, 256)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(err_r)
    _raise_if_failed(data, command)


def wait_exec_blocking(err_r: int | None, command: str) -> None:
    """:func:`wait_exec` for a process with no event loop (one-command mode).

    The read blocks until the child execs or reports; a signal meanwhile
    runs its handler and the read goes on (PEP 475).
    """
    if err_r is None:
        return
    try:
        data = b""
        while len(data) < _REPORT_LIMIT:
            chunk = os.read(err_r, 256)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(err_r)
    _raise_if_failed(data, command)


def _raise_if_failed(data: bytes, command: str) -> None:
    if data:
        stage, number, reason = ([*data.decode("utf-8", "replace").split("\x00"), "", ""])[:3]
        code = int(number) if number.isdigit() else errno.EINVAL
        raise SpawnError(command, code, reason or os.strerror(code), stage)


async def spawn(spec: ChildSpec, reaper: Reaper) -> Child:
    """Start a child and return once it has exec'd (see :func:`start`)."""
    child, err_r = start(spec, reaper)
    await wait_exec(child, err_r, spec.argv[0])
    return child


def _child_main(  # pragma: no cover - runs in the forked child
    spec: ChildSpec, path: str, argv: list[str], env: dict[str, str], err_w: int
) -> None:
    stage = "exec"
    gc.disable()  # a collection here would touch, and so copy, every page of tinit's heap
    try:
        # Block everything first, so no inherited Python handler can run (it
        # would write to trio's wakeup fd, which the parent shares). The mask
        # is emptied again just before exec: children start with no signal
        # blocked, whatever tinit blocks.
        signal.pthread_sigmask(signal.SIG_SETMASK, _ALL_SIGNALS)
        stage = "reset signals"
        signal.set_wakeup_fd(-1)
        for signum in signals.RESETTABLE:
            signal.signal(signum, signal.SIG_DFL)
        stage = "setsid"
        if spec.new_session:
            os.setsid()
        else:
            os.setpgid(0, 0)
        if spec.foreground_tty is not None:
            stage = "take the terminal"
            # SIGTTOU is blocked here, so a background group may take the tty.
            os.tcsetpgrp(spec.foreground_tty, os.getpgrp())
        if spec.cgroup_procs is not None:
            stage = "join its cgroup"
            os.write(spec.cgroup_procs, b"0")
        if spec.enter_namespaces:
            # Before the fds are arranged, which closes the namespace fds.
            stage = "enter the service's namespaces"
            from .namespaces import enter_in_child

            enter_in_child(spec.enter_namespaces)
        stage = "set up fds"
        _arrange_fds(spec, err_w)
        if spec.namespaces is not None:
            # As root still (mounts need CAP_SYS_ADMIN), and before chdir: a
            # directory entered earlier would keep pointing into the host's view.
            stage = "set up namespaces"
            from .namespaces import apply_in_child as enter_namespaces

            enter_namespaces(spec.namespaces)
            if spec.namespaces.pid == "private":
                stage = "start the service under its own init"
                _init_of_private_pid_namespace(spec, err_w)
        if spec.umask is not None:
            os.umask(spec.umask)
        if spec.privileges is not None:
            # Before chdir: the directory is entered with the service's rights.
            stage = "drop privileges"
            from .privileges import apply_in_child

            apply_in_child(spec.privileges)
        if spec.cwd is not None:
            stage = "chdir"
            os.chdir(spec.cwd)
        if spec.pdeathsig is not None:
            stage = "set parent-death signal"
            _set_pdeathsig(spec.pdeathsig)
        if spec.listen_pid_self:
            env["LISTEN_PID"] = str(os.getpid())
        stage = "exec"
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.execve(path, argv, env)
    except OSError as exc:
        code = exc.errno or errno.EINVAL
        _report(err_w, f"{stage}\0{code}\0{exc.strerror or ''}")
        os._exit(127 if code in (errno.ENOENT, errno.ENOTDIR) and stage == "exec" else 126)
    except BaseException as exc:
        _report(err_w, f"{stage}\0{errno.EINVAL}\0{type(exc).__name__}: {exc}")
        os._exit(126)


def _init_of_private_pid_namespace(spec: ChildSpec, err_w: int) -> None:  # pragma: no cover
    """``pid: private``: this process is PID 1 of the service's PID namespace.

    It mounts the namespace's own /proc, forks the service (which returns
    from here and goes on to exec), and stays as the namespace's init:
    signals it gets go to the service's process group, every process of the
    namespace is reaped here (orphans are reparented to a namespace's PID 1,
    never to a subreaper outside it), and when the service exits this init
    exits with its status -- 128+N for a death by signal N, since a PID 1
    cannot die of a signal it sends itself. The kernel then ends whatever
    else is left in the namespace.
    """
    from . import namespaces as ns

    ns.unshare(ns.CLONE_NEWNS)
    ns.make_mounts_private()
    ns.mount_proc("/proc")
    service = os.fork()
    if service == 0:
        # The service's own group: a stop signal sent to the init's group
        # reaches the init alone, which passes it on -- never twice.
        os.setpgid(0, 0)
        _set_pdeathsig(signal.SIGKILL)  # die with this init
        return
    os.close(err_w)  # the service holds it until its exec: EOF then means "started"
    # A stand-in for the service: it passes on every signal it can catch.
    code = signals.relay_until_exit(
        service, signals.RESETTABLE, lambda signum: os.killpg(service, signum)
    )
    os._exit(code)


def _report(err_w: int, message: str) -> None:  # pragma: no cover - child only
    try:
        os.write(err_w, message.encode("utf-8", "replace"))
    except OSError:
        pass


def _arrange_fds(spec: ChildSpec, err_w: int) -> None:  # pragma: no cover - child only
    """Give the child its fds 0-2 and passed fds, and nothing else."""
    wanted: dict[int, int] = {}
    for target, source in ((0, spec.stdin), (1, spec.stdout), (2, spec.stderr)):
        if source is not None:
            wanted[target] = source
    wanted.update(spec.pass_fds)
    # Move every source above every target first, so one dup2 cannot
    # clobber a source that another target still needs.
    floor = max([*wanted, err_w, 2]) + 1
    staged = {target: _dup_above(source, floor) for target, source in wanted.items()}
    for target, source in staged.items():
        os.dup2(source, target, inheritable=True)
    keep = sorted({0, 1, 2, err_w, *wanted})
    lower = 3
    for fd in keep:
        if fd >= lower:
            os.closerange(lower, fd)
            lower = fd + 1
    os.closerange(lower, _FD_LIMIT)


def _dup_above(fd: int, floor: int) -> int:  # pragma: no cover - child only
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)


def _set_pdeathsig(signum: int) -> None:  # pragma: no cover - child only
    import prctl

    parent = os.getppid()
    prctl.set_pdeathsig(signum)
    # tinit may have died between fork and the prctl: then nobody will ever
    # send the signal, so act on it now.
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)


def inherited_fds() -> list[int]:
    """The fds >= 3 that an exec would pass on: those tinit's caller handed it.

    tinit's own fds are close-on-exec from birth (PEP 446), so the
    inheritable ones are exactly what the caller passed: a socket from
    socket activation, a pipe.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    found = []
    for name in names:
        fd = int(name)
        if fd < 3:
            continue
        try:
            if os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            pass  # closed meanwhile (the listdir fd itself)
    return sorted(found)


def mark_inherited_fds_cloexec() -> None:
    """Make fds >= 3 that tinit inherited close-on-exec, so no child gets them.

    A container runtime (conmon, a shell's redirections) may leave fds open;
    tinit's own fds are already close-on-exec (PEP 446).
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        fd = int(name)
        if fd < 3:
            continue
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass  # closed meanwhile (the listdir fd itself)
