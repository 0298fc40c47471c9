"""Load trio without the child process its import starts.

At import, trio looks up libpthread with ``ctypes.util.find_library``,
which on Linux runs ``/sbin/ldconfig -p`` through ``subprocess`` and waits
for it: a child process that is none of tinit's, and a second waiter on
children, in the process whose one reaper owns them all (reaper.py) -- plus
a fork and an exec on every start. glibc 2.34 and later have the pthread
functions in libc itself, so the lookup is answered here instead; any other
name goes to the real function.
"""

from __future__ import annotations

import sys


def load_trio() -> None:
    """Import trio (once), answering its libpthread lookup without running ldconfig."""
    if "trio" in sys.modules:
        return
    import ctypes.util

    real = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        if name == "pthread":
            return "libc.so.6"
        return real(name)

    ctypes.util.find_library = find_library
    try:
        import trio  # noqa: F401
    finally:
        ctypes.util.find_library = real
