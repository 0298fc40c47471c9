"""The wheel in dist/ installs as users install it: into a fresh venv, and with pipx.

``bash .ci/build`` makes the wheel. Without it (or without pipx) these
tests skip; with ``TINIT_STANDALONE_REQUIRED=1`` (as ``.ci/test`` sets it)
they fail instead.
The installs fetch tinit's dependencies from the package index (pip's cache
makes a second run quick).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinit import __version__

ROOT = Path(__file__).resolve().parent.parent
WHEEL = ROOT / "dist" / f"tinit-{__version__}-py3-none-any.whl"
INSTALL_TIMEOUT = 300

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 60)


def _need(what: object, reason: str) -> None:
    if what:
        return
    if os.environ.get("TINIT_STANDALONE_REQUIRED", "") not in ("", "0"):
        pytest.fail(f"{reason} (and TINIT_STANDALONE_REQUIRED is set)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def wheel() -> Path:
    _need(WHEEL.is_file(), f"no wheel at {WHEEL.relative_to(ROOT)} (run: bash .ci/build)")
    return WHEEL


def assert_works(tinit: Path) -> None:
    """The installed command knows its version, runs a command and passes its exit code on."""
    version = subprocess.run([tinit, "--version"], capture_output=True, text=True, timeout=30)
    assert (version.returncode, version.stdout) == (0, f"{__version__}\n"), version.stderr
    ran = subprocess.run(
        [tinit, "run", "--", "sh", "-c", "exit 3"], capture_output=True, text=True, timeout=30
    )
    assert ran.returncode == 3, ran.stderr


def test_the_wheel_installs_into_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, str(wheel)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert_works(venv / "bin/tinit")


def test_pipx_installs_the_wheel(wheel: Path, tmp_path: Path) -> None:
    pipx = shutil.which("pipx")
    _need(pipx, "no pipx here (apt-get install pipx; .ci/setup does)")
    assert pipx is not None
    env = {
        **os.environ,
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_DEFAULT_PYTHON": sys.executable,
    }
    done = subprocess.run(
        [pipx, "install", str(wheel)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert_works(tmp_path / "bin/tinit")
