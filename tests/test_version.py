"""``tinit --version`` and ``tinit -V`` print what ``tinit version`` prints."""

from __future__ import annotations

import subprocess

import pytest

from tests.nsrun import tinit_argv
from tinit import __version__
from tinit.cli import run_cli


@pytest.mark.parametrize("flag", ["--version", "-V", "version"])
def test_version_flags_print_the_version(flag: str) -> None:
    done = subprocess.run(tinit_argv(flag), capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{__version__}\n", "")


def test_version_flag_after_a_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["status", "--version"]) == 2
    assert "unrecognized arguments: --version" in capsys.readouterr().err
