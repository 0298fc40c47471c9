"""The fds tinit was handed at start, for the services that name them (``inherit_fds``).

In services mode a service gets fds 0 to 2 and nothing else, unless its
``inherit_fds`` names some of the fds tinit's caller passed: by number, or by
the name socket activation gave it. tinit keeps those open, close-on-exec,
for its whole life, so every run of the service gets them again: a
listening socket outlives the restarts of the service that accepts on it,
which is the point of socket activation. No other service ever sees them.

Names follow the socket-activation protocol: when ``LISTEN_PID`` is tinit's
pid, ``LISTEN_FDS`` says how many fds from 3 up were passed and
``LISTEN_FDNAMES`` names them in order, ``:``-separated. A service gets the
same three variables for the fds it is given, renumbered from 3 in the
order it lists them; ``LISTEN_PID`` is set in the child to its own pid.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from . import spawn
from .errors import SpawnError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: the first fd after stdin, stdout and stderr
FIRST: Final = 3
#: the name an fd without one gets (as socket activation names it)
UNNAMED: Final = "unknown"
#: more than any real socket activation passes; bounds the parse of LISTEN_FDS
_MAX_LISTEN_FDS: Final = 4096


@dataclass(frozen=True, slots=True)
class Inherited:
    """The fds >= 3 tinit was handed, and the names socket activation gave them."""

    fds: tuple[int, ...] = ()
    #: fd -> its LISTEN_FDNAMES name
    names: Mapping[int, str] = field(default_factory=dict)

    def select(self, wanted: Sequence[int | str], command: str) -> tuple[tuple[int, str], ...]:
        """(fd in tinit, name) for each of ``wanted`` in order; a name takes each fd it names.

        Raises SpawnError when one is not there: the config checker cannot
        know which fds tinit will be given, so this is where it shows.
        """
        chosen: list[tuple[int, str]] = []
        for item in wanted:
            if isinstance(item, int):
                found = [item] if item in self.fds else []
            else:
                found = [fd for fd in self.fds if self.names.get(fd) == item]
            if not found:
                raise SpawnError(command, errno.EBADF, self._missing(item), "pass inherited fds")
            chosen.extend((fd, self.names.get(fd, UNNAMED)) for fd in found)
        return tuple(chosen)

    def _missing(self, item: int | str) -> str:
        what = f"fd {item} was not" if isinstance(item, int) else f"no fd named {item!r} was"
        had = ", ".join(
            f"{fd} ({self.names[fd]})" if fd in self.names else str(fd) for fd in self.fds
        )
        given = f"it was given {had}" if had else "it was given none beyond 0 to 2"
        named = "" if isinstance(item, int) or self.names else "; none has a LISTEN_FDNAMES name"
        return f"{what} passed to tinit ({given}{named})"

    def passed(self, chosen: Sequence[tuple[int, str]]) -> dict[int, int]:
        """Child fd -> fd in tinit for ``chosen``: renumbered from 3 in their order."""
        return {FIRST + index: fd for index, (fd, _) in enumerate(chosen)}


def take(environ: Mapping[str, str] | None = None) -> Inherited:
    """The fds tinit was handed, made close-on-exec so that no child gets one unasked.

    Call once, at the start of services mode, before any child is started.
    """
    environ = os.environ if environ is None else environ
    fds = tuple(spawn.inherited_fds())
    spawn.mark_inherited_fds_cloexec()
    return Inherited(fds, names_of(fds, environ, os.getpid()))


def names_of(fds: Sequence[int], environ: Mapping[str, str], pid: int) -> dict[int, str]:
    """fd -> name from LISTEN_FDNAMES, when the variables are meant for ``pid``.

    An fd past the names gets ``unknown``; variables meant for another
    process (a LISTEN_PID not ours, a malformed count) name nothing.
    """
    if environ.get("LISTEN_PID") != str(pid):
        return {}
    count_text = environ.get("LISTEN_FDS", "")
    if not count_text.isdigit() or len(count_text) > len(str(_MAX_LISTEN_FDS)):
        return {}
    count = min(int(count_text), _MAX_LISTEN_FDS)
    names = environ.get("LISTEN_FDNAMES", "").split(":")
    return {
        fd: names[fd - FIRST] if fd - FIRST < len(names) and names[fd - FIRST] else UNNAMED
        for fd in fds
        if FIRST <= fd < FIRST + count
    }
