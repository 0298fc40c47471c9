"""The accounts a service runs as: user and group names or numbers, to ids.

One lookup for the two places that need it: the child's spec
(childspec.py), which switches to these ids, and the config loader, which
reads a service's env files with them (safeopen.py). No import of either, so
the loader stays cheap.
"""

from __future__ import annotations

import grp
import os
import pwd
from typing import NamedTuple


class UnknownAccount(KeyError):
    """A user or group name this machine has no account for."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(name)
        self.kind = kind
        self.name = name


def user_entry(name: str) -> pwd.struct_passwd:
    """The account of a user name or number; a number without an account stands for itself."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if name.isdigit():
            try:
                return pwd.getpwuid(int(name))
            except KeyError:
                return pwd.struct_passwd((name, "x", int(name), int(name), "", "/", "/bin/sh"))
        raise UnknownAccount("user", name) from None


def group_id(name: str) -> int:
    """The gid of a group name or number."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name.isdigit():
            return int(name)
        raise UnknownAccount("group", name) from None


class Ids(NamedTuple):
    """What a service runs as; None where it keeps tinit's own."""

    #: the user's account, for its home and name
    entry: pwd.struct_passwd | None
    uid: int | None
    gid: int | None
    groups: list[int] | None


def ids(user: str | None, group: str | None) -> Ids:
    """The ids for ``user:`` and ``group:``. Raises UnknownAccount for a name without one."""
    entry = None if user is None else user_entry(user)
    uid = gid = None
    groups: list[int] | None = None
    if entry is not None:
        uid, gid = entry.pw_uid, entry.pw_gid
        groups = os.getgrouplist(entry.pw_name, gid) if entry.pw_name else [gid]
    if group is not None:
        gid = group_id(group)
        groups = groups if groups is not None else [gid]
    return Ids(entry, uid, gid, groups)
