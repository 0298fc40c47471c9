"""What is left when a service or the command is gone: find it, signal it.

As PID 1 of a namespace, "everything left" is every other process in it, and
``kill(-1, sig)`` reaches exactly those. Otherwise tinit is a child
subreaper, everything it must clean up is a descendant, and descendants are
found through ``/proc/PID/task/TID/children``. ``kill(-1)`` is never used when
tinit is not PID 1: it would signal every process the user owns
(tini documents the same trap for its ``-g``).

Whether anything is left is not read from /proc at all: a PID 1 or a
subreaper inherits every orphan, so "no child left" (waitpid's ECHILD, seen by
the reaper) means "no descendant left".
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .logs import Log
    from .reaper import Reaper


def is_pid1() -> bool:
    return os.getpid() == 1


def become_subreaper() -> None:
    """Make orphaned descendants come to this process instead of the real PID 1."""
    import prctl

    prctl.set_child_subreaper(True)


def descendants(root: int | None = None) -> list[int]:
    """Pids of every living descendant of ``root`` (this process by default)."""
    found: list[int] = []
    todo = [os.getpid() if root is None else root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def group_members(pgid: int) -> list[int]:
    """Pids of tinit's descendants in process group ``pgid`` (zombies included)."""
    found = []
    for pid in descendants():
        try:
            if os.getpgid(pid) == pgid:
                found.append(pid)
        except OSError:
            continue  # gone meanwhile
    return found


def signal_everything(signum: int) -> int:
    """Send ``signum`` to every process tinit is responsible for; return a count (-1 for all)."""
    if is_pid1():
        try:
            os.kill(-1, signum)
        except ProcessLookupError:
            return 0
        return -1
    count = 0
    for pid in descendants():
        try:
            os.kill(pid, signum)
            count += 1
        except OSError:
            pass
    return count


def signal_group(pgid: int, signum: int) -> bool:
    """Signal a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_exists(pgid: int) -> bool:
    """True while any process (a zombie included) is in the process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def stop_leftovers(
    reaper: Reaper, *, deadline: float, reason: str, log: Log, **fields: Any
) -> bool:
    """Stop what outlives the command or the services: SIGTERM, then SIGKILL at ``deadline``.

    ``deadline`` is in trio's clock; ``reason`` names the timeout that ran
    out in the ``killing_leftovers`` event. Returns once the reaper has
    reaped everything: a PID 1 or a subreaper inherits every orphan, so no
    child left means no descendant left. True when it had to send SIGKILL
    (in services mode, that makes a shutdown's exit code 137).
    """
    import trio

    reaper.reap()
    if not reaper.has_children:
        return False
    count = signal_everything(signal.SIGTERM)
    log.info("stopping_leftovers", processes=count, **fields)
    with trio.move_on_at(deadline):
        await reaper.wait_all_gone()
        return False
    log.warning("killing_leftovers", reason=reason, **fields)
    signal_everything(signal.SIGKILL)
    await reaper.wait_all_gone()
    return True
