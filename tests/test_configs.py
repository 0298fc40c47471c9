"""Every config shipped under configs/ passes `tinit check` on this machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.nsrun import ROOT, tinit_argv

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_configs() -> None:
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "reference.yaml"} <= names
    assert len(names) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_passes_check(path: Path) -> None:
    result = subprocess.run(
        tinit_argv("check", str(path)), capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr
    # the normalized output is itself a valid config
    again = subprocess.run(
        [*tinit_argv("check", "/dev/stdin")],
        input=result.stdout,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert again.returncode == 0, again.stderr
