"""How a service's main process is to start, as a value: a function of its config.

The service runner opens the run's descriptors (pipes, stdin, the cgroup's
``cgroup.procs``), the files the config names with the service's own rights
(:func:`owner`, safeopen.py). Everything else about the child -- its
environment, user, groups, capabilities, namespaces, parent-death signal --
follows from the service's config and the few facts about tinit passed in
here, and is built into a :class:`~tinit.spawn.ChildSpec` without trio, a
fork or any state, so it can be checked on its own. Only user and group names are looked up on this
machine (the account databases), as the config checker does.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from . import accounts
from .config import Namespaces, SdNotifyProbe
from .errors import SpawnError
from .privileges import resolve as resolve_privileges
from .safeopen import Access, Owner, open_for_service
from .spawn import ChildSpec

if TYPE_CHECKING:
    import pwd
    from collections.abc import Mapping, Sequence

    from .config import Service
    from .privileges import Privileges

#: Environment variables a runtime may hand to tinit that only ever mean
#: something to tinit itself: a service gets them only when its ``env:`` sets them.
RUNTIME_ONLY: Final = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
#: a service with these shares tinit's namespaces: nothing to set up
_HOST_NAMESPACES: Final = Namespaces()


@dataclass(frozen=True, slots=True)
class RunFds:
    """The descriptors tinit opened for one run, as the child is to get them."""

    stdin: int
    stdout: int
    stderr: int
    #: extra fds: child fd number -> fd in tinit (the notify_fd probe's pipe)
    passed: Mapping[int, int] = field(default_factory=dict)
    #: the run's ``cgroup.procs``, which the child writes itself into; None without cgroups
    cgroup_procs: int | None = None
    #: names of the inherited fds passed from 3 on (``inherit_fds``), in order
    listen_names: tuple[str, ...] = ()
    #: the run's sd_notify socket (``@name``), for ``NOTIFY_SOCKET``; None without one
    notify_socket: str | None = None


def open_stdin(path: str | None, owner: Owner | None) -> int:
    """The service's stdin: its ``stdin:`` file, opened as ``owner`` would, or /dev/null.

    Raises FileRefused (an OSError) naming the file and why.
    """
    if path is None:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return open_for_service(path, Access.READ, owner)


def owner(service: Service) -> Owner | None:
    """Whose rights tinit uses to open the service's files: None for a root service.

    The ids are the ones the child switches to (:func:`build`), supplementary
    groups included. Raises SpawnError for an unknown user or group.
    """
    uid, gid, groups = _ids(service, {})
    if uid is None or uid == 0:
        return None  # root may open anything; so may a service that runs as tinit
    return Owner(uid, gid if gid is not None else uid, tuple(groups or ()))


def environment(service: Service, inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """The service's environment, without what only tinit's runtime meant for tinit.

    ``inherited`` is tinit's own environment (``os.environ`` by default): a
    runtime-only variable is dropped when it is the one tinit inherited, and
    kept when the service's ``env:`` or an env file set it to its own value.
    """
    inherited = os.environ if inherited is None else inherited
    env = dict(service.environment)
    for key in RUNTIME_ONLY:
        if key not in service.env and env.get(key) == inherited.get(key):
            env.pop(key, None)
    return env


def build(
    service: Service,
    fds: RunFds,
    *,
    pid1: bool,
    inherited: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    enter: Mapping[int, int] | None = None,
) -> ChildSpec:
    """The spec of one run of ``service``; raises SpawnError for an unknown user or group.

    ``pid1`` says whether tinit is PID 1: otherwise the child is to die with
    tinit (parent-death signal), as nothing would be left to stop it.

    An exec probe is the same spec with its own ``argv``, started inside the
    running service: ``enter`` holds the namespaces of the service's main
    process (namespaces.open_of), joined instead of set up anew, since a
    fresh private /tmp or loopback would not be the one the service uses.
    """
    env = environment(service, inherited)
    own_namespaces = None if service.namespaces == _HOST_NAMESPACES else service.namespaces
    privileges = _privileges(service, env)  # may set HOME, USER and LOGNAME in env
    if fds.listen_names:
        # Socket activation for the fds it is given; LISTEN_PID is set in the child.
        env["LISTEN_FDS"] = str(len(fds.listen_names))
        env["LISTEN_FDNAMES"] = ":".join(fds.listen_names)
        env.pop("LISTEN_PID", None)
    if fds.notify_socket is not None:
        _notify_environment(service, fds.notify_socket, env)
    return ChildSpec(
        argv=service.command if argv is None else argv,
        env=env,
        stdin=fds.stdin,
        stdout=fds.stdout,
        stderr=fds.stderr,
        pass_fds=dict(fds.passed),
        new_session=True,
        cwd=service.workdir,
        umask=service.umask,
        privileges=privileges,
        cgroup_procs=fds.cgroup_procs,
        namespaces=None if enter is not None else own_namespaces,
        enter_namespaces=dict(enter or {}),
        pdeathsig=None if pid1 else signal.SIGKILL,
        listen_pid_self=bool(fds.listen_names),
    )


def _notify_environment(service: Service, address: str, env: dict[str, str]) -> None:
    """``NOTIFY_SOCKET``, and ``WATCHDOG_USEC`` with a watchdog, as systemd sets them.

    tinit's own socket wins over one the config names: it is the one tinit reads.
    """
    env["NOTIFY_SOCKET"] = address
    env.pop("WATCHDOG_USEC", None)
    env.pop("WATCHDOG_PID", None)  # the main process is the one to ping: sd_watchdog_enabled
    if isinstance(service.ready, SdNotifyProbe) and service.ready.watchdog is not None:
        env["WATCHDOG_USEC"] = str(round(service.ready.watchdog * 1_000_000))


def _privileges(service: Service, env: dict[str, str]) -> Privileges | None:
    """User, groups and capabilities to switch to, None when nothing changes (see _ids)."""
    uid, gid, groups = _ids(service, env)
    caps = service.capabilities
    if uid is None and gid is None and not caps.add and not caps.drop and not service.no_new_privs:
        return None
    return resolve_privileges(
        caps, uid=uid, gid=gid, groups=groups, no_new_privs=service.no_new_privs
    )


def _ids(service: Service, env: dict[str, str]) -> tuple[int | None, int | None, list[int] | None]:
    """The uid, gid and supplementary groups the service runs with; None: tinit's own.

    With a ``user:``, ``HOME``, ``USER`` and ``LOGNAME`` in ``env`` become
    that user's, unless the service's ``env:`` sets them.
    """
    try:
        ids = accounts.ids(service.user, service.group)
    except accounts.UnknownAccount as exc:
        stage = "switch user" if exc.kind == "user" else "switch group"
        raise SpawnError(exc.name, 0, f"unknown {exc.kind} {exc.name!r}", stage) from None
    if ids.entry is not None:
        for key, value in (
            ("HOME", ids.entry.pw_dir),
            ("USER", ids.entry.pw_name),
            ("LOGNAME", ids.entry.pw_name),
        ):
            if key not in service.env and value:
                env[key] = value
    return ids.uid, ids.gid, ids.groups


def user_entry(name: str) -> pwd.struct_passwd:
    """The account of a user name or number; a number without an account stands for itself."""
    try:
        return accounts.user_entry(name)
    except accounts.UnknownAccount:
        raise SpawnError(name, 0, f"unknown user {name!r}", "switch user") from None


def group_id(name: str) -> int:
    """The gid of a group name or number."""
    try:
        return accounts.group_id(name)
    except accounts.UnknownAccount:
        raise SpawnError(name, 0, f"unknown group {name!r}", "switch group") from None
