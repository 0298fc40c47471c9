"""Inherited fds by number and by socket-activation name (listenfds.py), without a fork."""

from __future__ import annotations

import pytest

from tinit.errors import SpawnError
from tinit.listenfds import Inherited, names_of


def test_names_are_read_only_when_listen_pid_is_ours() -> None:
    env = {"LISTEN_PID": "7", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "http:admin"}
    assert names_of([3, 4, 5, 9], env, 7) == {3: "http", 4: "admin", 5: "unknown"}
    assert names_of([3, 4], env, 8) == {}
    assert names_of([3], {**env, "LISTEN_FDS": "x"}, 7) == {}
    assert names_of([3], {**env, "LISTEN_FDS": "9" * 50}, 7) == {}


def test_select_keeps_the_order_given_and_a_name_takes_each_of_its_fds() -> None:
    inherited = Inherited((3, 4, 5, 9), {3: "web", 4: "admin", 5: "web"})
    chosen = inherited.select([9, "web"], "app")
    assert chosen == ((9, "unknown"), (3, "web"), (5, "web"))
    assert inherited.passed(chosen) == {3: 9, 4: 3, 5: 5}


@pytest.mark.parametrize(
    ("inherited", "wanted", "reason"),
    [
        (Inherited(), 3, "fd 3 was not passed to tinit (it was given none beyond 0 to 2)"),
        (
            Inherited((3,), {}),
            "http",
            "no fd named 'http' was passed to tinit (it was given 3; "
            "none has a LISTEN_FDNAMES name)",
        ),
        (Inherited((3,), {3: "a"}), 4, "fd 4 was not passed to tinit (it was given 3 (a))"),
    ],
)
def test_a_missing_fd_is_a_spawn_error_naming_what_tinit_has(
    inherited: Inherited, wanted: int | str, reason: str
) -> None:
    with pytest.raises(SpawnError) as info:
        inherited.select([wanted], "app")
    assert str(info.value) == f"app: cannot pass inherited fds: {reason}"
