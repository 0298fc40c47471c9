"""The standalone tinit's entry point (frozen by PyInstaller in .ci/build).

PyInstaller's launcher re-executes itself (same pid, no child) with
LD_LIBRARY_PATH pointing at the bundled libraries and a few ``_PYI_*``
variables of its own. The dynamic loader has read LD_LIBRARY_PATH by the time
this runs, so tinit itself no longer needs it; left in the environment it
would reach every service, and a Node, Java or Go program would load the
bundled libssl or libz instead of its image's own, and a frozen service would
take the ``_PYI_*`` variables for its own launcher's. So the environment is
put back as the user gave it, before tinit reads it.
"""

from __future__ import annotations

import os


def _restore_environment() -> None:
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is None:
        os.environ.pop("LD_LIBRARY_PATH", None)
    else:
        os.environ["LD_LIBRARY_PATH"] = original
    for key in [key for key in os.environ if key.startswith("_PYI_")]:
        del os.environ[key]


_restore_environment()

from tinit.cli import main  # noqa: E402 - only once the environment is the user's

main()
