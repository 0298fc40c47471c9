"""Dropping privileges in the forked child, right before exec.

:func:`resolve` turns a service's ``user``/``group``/``capabilities``/
``no_new_privs`` into numbers in tinit (where a mistake can still be reported
properly); :func:`apply_in_child` applies them in the child, in an order the
kernel forces on us:

1. **Bounding set first.** ``PR_CAPBSET_DROP`` needs ``CAP_SETPCAP`` in the
   effective set, which the child only surely has before it switches user.
   Dropping from the bounding set never touches the permitted or effective
   set, so ``CAP_SETUID``/``CAP_SETGID`` are still there for step 3.
2. **Keep caps** (``PR_SET_KEEPCAPS``) when a non-root service gets ``add``:
   otherwise the switch away from uid 0 empties the permitted set, and a cap
   can never come back into it.
3. **setgroups, setgid, setuid**, in this order because each needs a
   capability the next one gives up. The switch to a non-root uid clears the
   effective and ambient sets whatever keep-caps says.
4. **Permitted/effective/inheritable.** Non-root: exactly ``add``. Root: the
   inheritable set becomes ``add`` -- not cosmetic: ``execve`` gives root
   ``P' = bounding | P(inheritable)``, so an inheritable set handed down by
   the runtime (Docker before 20.10 set it to everything) would bring back
   what step 1 dropped. Root's permitted and effective sets are recomputed by
   ``execve`` from the bounding set; we trim them anyway so the child does not
   run with more than its service will.
5. **Ambient set**, so a non-root service keeps ``add`` across ``execve``
   (``P' = ambient`` for a binary without file capabilities). A cap can only
   be raised there once it is in both the permitted and inheritable sets,
   hence after step 4; and the switch in step 3 would clear it, hence after
   that too.
6. **no_new_privs** last: it blocks nothing above, and ambient capabilities
   survive it (it only stops *gaining* privilege through setuid bits and file
   capabilities).

Why ctypes for the ambient set: python-prctl 1.8.1 predates ``PR_CAP_AMBIENT``
(Linux 4.3) and its ``prctl()`` rejects options it does not know, so that one
call goes to libc's ``prctl(2)`` directly (:func:`_ambient`).

Edge cases: a cap in both ``add`` and ``drop`` (or ``drop: [ALL]``) is kept,
like ``docker run --cap-drop ALL --cap-add X``. Caps already missing from the
bounding set are not dropped again (that would need ``CAP_SETPCAP`` for
nothing). ``add`` of a cap tinit does not hold itself fails before anything
changes. ``groups: None`` leaves the supplementary groups alone, except on a
switch from root to another user, where root's groups (often gid 0) would
otherwise follow the service; then they are cleared.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import prctl

from .config._units import CAPABILITY_NAMES, did_you_mean
from .errors import stage

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .config import Capabilities

NAMES: Final = CAPABILITY_NAMES
_NUMBERS: Final = {name: number for number, name in enumerate(NAMES)}

PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_RAISE: Final = 2
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4

# Resolved now, in tinit, so the child does no dlopen of its own.
_libc: Final = ctypes.CDLL(None, use_errno=True)
_SETS: Final = (prctl.CAP_PERMITTED, prctl.CAP_EFFECTIVE, prctl.CAP_INHERITABLE)


@dataclass(frozen=True, slots=True)
class Privileges:
    """What a child gives up before exec; ``None`` leaves that id unchanged.

    ``drop`` is removed from the bounding set and never contains a cap of
    ``add``; ``add`` is what the service keeps (as ambient capabilities when
    it runs as non-root).
    """

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None
    drop: frozenset[int] = frozenset()
    add: frozenset[int] = frozenset()
    no_new_privs: bool = False


def cap_number(name: str) -> int:
    """The number of a capability: ``"NET_BIND_SERVICE"``, ``"cap_chown"``.

    Case-insensitive, ``CAP_`` optional. Raises ValueError for an unknown
    name (``ALL`` included: it is not one capability), with a suggestion.
    """
    key = name.strip().upper().removeprefix("CAP_")
    try:
        return _NUMBERS[key]
    except KeyError:
        hint = did_you_mean(key, NAMES)
        raise ValueError(f"unknown capability {name!r}{hint}") from None


def cap_name(number: int) -> str:
    """``CAP_CHOWN`` for 0; ``CAP_42`` for a number newer than this table."""
    return f"CAP_{NAMES[number]}" if number < len(NAMES) else f"CAP_{number}"


def resolve(
    capabilities: Capabilities,
    *,
    uid: int | None = None,
    gid: int | None = None,
    groups: Iterable[int] | None = None,
    no_new_privs: bool = False,
) -> Privileges:
    """Turn a service's capability names and ids into :class:`Privileges`.

    ``ALL`` means every capability the running kernel knows. A cap named in
    ``add`` is never dropped. Raises ValueError naming an unknown capability.
    """
    add = _numbers(capabilities.add)
    drop = _numbers(capabilities.drop) - add
    return Privileges(
        uid=uid,
        gid=gid,
        groups=None if groups is None else tuple(groups),
        drop=drop,
        add=add,
        no_new_privs=no_new_privs,
    )


def _numbers(names: Iterable[str]) -> frozenset[int]:
    numbers: set[int] = set()
    for name in names:
        if name.strip().upper() in ("ALL", "CAP_ALL"):
            numbers.update(range(last_cap() + 1))
        else:
            numbers.add(cap_number(name))
    return frozenset(numbers)


@functools.cache
def last_cap() -> int:
    """The highest capability number of the running kernel."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        # No /proc yet (tinit may mount it itself): python-prctl's own idea.
        return int(prctl.CAP_LAST_CAP)


def apply_in_child(p: Privileges) -> None:  # pragma: no cover - runs in forked children
    """Drop privileges as ``p`` says; call in the forked child, right before exec.

    Do not chdir or open files between this and exec that the service itself
    could not. Raises ``OSError(errno, "stage: message")`` on the first
    failure; the child is then half-changed and must not exec.
    """
    target_uid = os.getuid() if p.uid is None else p.uid
    to_user = target_uid != 0
    leaves_root = to_user and os.getuid() == 0
    # Only touch the capability sets when asked, or when leaving root: then
    # to clear the inheritable set, which setuid leaves alone and which an
    # executable's inheritable file caps would otherwise pick up.
    set_caps = bool(p.drop or p.add) or leaves_root

    if p.add:
        with stage("keep capabilities"):
            _check_held(p.add)

    for cap in sorted(p.drop):
        if not _in_bounding_set(cap):
            continue
        with stage(f"drop {cap_name(cap)} from the bounding set"):
            prctl.capbset_drop(cap)

    if p.add and leaves_root:
        with stage("keep capabilities across setuid"):
            # Cleared by execve, so it needs no resetting.
            prctl.set_keepcaps(True)

    groups = p.groups
    if groups is None and leaves_root:
        groups = ()
    if groups is not None:
        with stage(f"set groups {list(groups)}"):
            os.setgroups(list(groups))
    if p.gid is not None:
        with stage(f"set group {p.gid}"):
            os.setgid(p.gid)
    if p.uid is not None:
        with stage(f"set user {p.uid}"):
            os.setuid(p.uid)

    if set_caps:
        with stage("set capabilities"):
            _set_capabilities(p, to_user)
        with stage("clear ambient capabilities"):
            try:
                _ambient(PR_CAP_AMBIENT_CLEAR_ALL)
            except OSError as exc:
                # EINVAL: a kernel older than 4.3 has no ambient set to clear.
                if exc.errno != errno.EINVAL or (p.add and to_user):
                    raise
        if to_user:
            for cap in sorted(p.add):
                with stage(f"raise {cap_name(cap)} into the ambient set"):
                    _ambient(PR_CAP_AMBIENT_RAISE, cap)

    if p.no_new_privs:
        with stage("set no_new_privs"):
            prctl.set_no_new_privs(True)


def _set_capabilities(p: Privileges, to_user: bool) -> None:  # pragma: no cover - child
    known = set(prctl.ALL_CAPS)
    if to_user:
        keep = set(p.add)
    else:
        held = prctl.get_caps((list(known), prctl.CAP_PERMITTED))[prctl.CAP_PERMITTED]
        keep = {cap for cap, on in held.items() if on} - p.drop
    inheritable = set(p.add)
    prctl.set_caps(
        (sorted(keep), [prctl.CAP_PERMITTED, prctl.CAP_EFFECTIVE], True),
        (sorted(known - keep), [prctl.CAP_PERMITTED, prctl.CAP_EFFECTIVE], False),
        (sorted(inheritable), prctl.CAP_INHERITABLE, True),
        (sorted(known - inheritable), prctl.CAP_INHERITABLE, False),
    )


def _check_held(add: frozenset[int]) -> None:  # pragma: no cover - child
    # A cap tinit lacks cannot be handed on: capset would fail half-way with a
    # bare EPERM. Say which one, before anything has changed.
    permitted = prctl.get_caps((sorted(add), prctl.CAP_PERMITTED))[prctl.CAP_PERMITTED]
    for cap in sorted(add):
        if not (permitted.get(cap) and _in_bounding_set(cap)):
            raise OSError(
                errno.EPERM,
                f"tinit itself does not hold {cap_name(cap)}, so it cannot pass it on; "
                "grant it to the container",
            )


def _in_bounding_set(cap: int) -> bool:  # pragma: no cover - child
    try:
        return bool(prctl.capbset_read(cap))
    except ValueError:
        # Newer than python-prctl's table: let the drop fail loudly.
        return True


def _ambient(op: int, cap: int = 0) -> None:  # pragma: no cover - child
    """``prctl(PR_CAP_AMBIENT, op, cap, 0, 0)``, the one call python-prctl lacks.

    Every argument is passed as an unsigned long: prctl(2) is variadic, and
    the kernel rejects the call (EINVAL) unless the unused ones are exactly 0.
    """
    args = (PR_CAP_AMBIENT, op, cap, 0, 0)
    if _libc.prctl(*(ctypes.c_ulong(arg) for arg in args)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
