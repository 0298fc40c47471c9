"""Shared fixtures: every test leaves no process behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import nsrun

#: fixtures shared by tests of hostile service users: ``own`` and ``secret``
pytest_plugins = ("tests.nobody",)


@pytest.fixture(autouse=True)
def _no_leftover_tinit() -> Iterator[None]:
    yield
    nsrun.reap_leftovers()
