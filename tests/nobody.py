"""A hostile service user for file-safety tests: nobody's own directory and a root-only file.

tests/conftest.py loads its fixtures for every test (``pytest_plugins``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

NOBODY = 65534
SECRET = b"root only\n"


@pytest.fixture
def own() -> Iterator[Path]:
    """A directory that belongs to nobody, below /tmp (pytest's own is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="tinit-nobody-", dir="/tmp"))
    os.chown(path, NOBODY, NOBODY)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file only root may read or write."""
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path
