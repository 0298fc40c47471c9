"""tinit against the people it must not trust: network peers, other local users, closed fds.

Each test is a regression test for an attack or an accident that once
worked (docs/security.md lists them): tinit runs for real, as PID 1 of a
fresh PID namespace where that matters, and every test is bounded in time.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from tests.nsrun import PYTHON, Tinit
from tests.svcrun import finish, start, write_config

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(120)


# -- closed standard fds ----------------------------------------------------------------------


def _close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def test_services_mode_with_stdout_closed_gives_a_raw_service_dev_null(tmp_path: Path) -> None:
    """Before: a traceback and exit 1, and the raw service wrote into tinit's epoll fd."""
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          look:
            command: [PYTHON, -c, "import os, sys; print('fd1=' + os.readlink('/proc/self/fd/1'), file=sys.stderr)"]
            oneshot: true
            output: raw
        """,
    )
    tinit = start(config, preexec_fn=lambda: _close_fds(1))
    result = finish(tinit)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "fd1=/dev/null" in result.stderr.splitlines()


def test_one_command_mode_with_stdout_and_stderr_closed_keeps_the_exit_code() -> None:
    """Before: exit 1 instead of the command's 5."""
    tinit = Tinit("run", "--", "sh", "-c", "exit 5", preexec_fn=lambda: _close_fds(1, 2))
    code, _, _ = tinit.wait()
    assert code == 5


def test_the_command_inherits_dev_null_for_a_closed_stdin() -> None:
    """fd 0 closed: the command gets /dev/null there, not a closed fd (nor one of tinit's)."""
    probe = "import os; print(os.readlink('/proc/self/fd/0'))"
    tinit = Tinit("run", "--", PYTHON, "-c", probe, preexec_fn=lambda: _close_fds(0))
    code, out, err = tinit.wait()
    assert (code, out) == (0, "/dev/null\n"), err
