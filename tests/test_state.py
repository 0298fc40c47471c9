"""The restart rule and exit statuses as pure functions (README: restarts and exit codes)."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tinit.state import Decision, ExitStatus, decide, final_exit_code, signal_name

OK = ExitStatus(code=0)
FAIL = ExitStatus(code=3)
SEGV = ExitStatus(signal=signal.SIGSEGV)


def rule(**overrides: Any) -> Decision:
    args: dict[str, Any] = {
        "status": FAIL,
        "policy": "on-failure",
        "success_codes": frozenset({0}),
        "failures": 0,
        "uptime": 1.0,
        "reset_after": 30.0,
        "max_restarts": 10,
        "initial": 0.1,
        "factor": 2.0,
        "max_delay": 30.0,
        "jitter": 0.0,
    }
    args.update(overrides)
    return decide(**args)


def test_exit_status_shell_codes() -> None:
    assert OK.shell_code == 0
    assert FAIL.shell_code == 3
    assert SEGV.shell_code == 139
    assert ExitStatus(signal=signal.SIGKILL).shell_code == 137
    assert ExitStatus.from_wait_status(0x0300) == ExitStatus(code=3)
    assert ExitStatus.from_wait_status(signal.SIGTERM) == ExitStatus(signal=signal.SIGTERM)


def test_signal_names() -> None:
    assert signal_name(15) == "SIGTERM"
    assert signal_name(signal.SIGRTMIN + 3) == "SIGRTMIN+3"
    assert SEGV.log_fields() == {"exit_code": None, "signal": "SIGSEGV"}
    assert FAIL.log_fields() == {"exit_code": 3, "signal": None}


@pytest.mark.parametrize(
    ("policy", "status", "restart"),
    [
        ("always", OK, True),
        ("always", FAIL, True),
        ("on-failure", OK, False),
        ("on-failure", FAIL, True),
        ("on-failure", SEGV, True),
        ("on-failure", None, True),  # a failed start
        ("never", FAIL, False),
        ("never", OK, False),
    ],
)
def test_policy(policy: str, status: ExitStatus | None, restart: bool) -> None:
    assert rule(policy=policy, status=status).restart is restart


def test_signal_death_is_a_failure_even_if_its_number_is_a_success_code() -> None:
    decision = rule(status=ExitStatus(signal=3), success_codes=frozenset({0, 3}))
    assert decision.failed


def test_success_exit_codes() -> None:
    assert not rule(status=FAIL, success_codes=frozenset({0, 3})).restart


def test_backoff_grows_by_factor_up_to_max() -> None:
    delays = []
    failures = 0
    for _ in range(8):
        d = rule(failures=failures, initial=1.0, factor=3.0, max_delay=20.0, max_restarts=None)
        delays.append(d.delay)
        failures = d.failures
    assert delays == [1.0, 3.0, 9.0, 20.0, 20.0, 20.0, 20.0, 20.0]


@pytest.mark.parametrize("jitter", [-1.0, -0.5, 0.0, 0.5, 1.0, 7.0])
def test_jitter_is_at_most_20_percent(jitter: float) -> None:
    delay = rule(initial=10.0, jitter=jitter).delay
    assert 8.0 <= delay <= 12.0


def test_max_restarts_n_allows_n_restarts_then_gives_up() -> None:
    failures = 0
    restarts = 0
    while True:
        d = rule(failures=failures, max_restarts=3)
        failures = d.failures
        if not d.restart:
            break
        restarts += 1
    assert restarts == 3
    assert d.gave_up


def test_max_restarts_zero_gives_up_on_the_first_failure() -> None:
    d = rule(max_restarts=0)
    assert (d.restart, d.gave_up) == (False, True)


def test_staying_up_reset_after_clears_the_count_and_delay() -> None:
    d = rule(failures=9, max_restarts=3, uptime=31.0, reset_after=30.0, initial=0.5)
    assert (d.restart, d.failures, d.delay) == (True, 1, 0.5)


def test_success_with_always_resets_the_failure_count() -> None:
    d = rule(policy="always", status=OK, failures=5)
    assert (d.restart, d.failed, d.failures, d.delay) == (True, False, 0, 0.1)


def test_restart_never_reports_failure_without_giving_up() -> None:
    d = rule(policy="never", status=FAIL)
    assert (d.restart, d.failed, d.gave_up) == (False, True, False)


def code(**overrides: Any) -> int:
    args: dict[str, Any] = {
        "critical": None,
        "shutdown_requested": False,
        "killed": False,
        "first_failure": None,
        "remap": {},
    }
    args.update(overrides)
    return final_exit_code(**args)


def test_exit_code_all_succeeded_is_0() -> None:
    assert code() == 0


def test_exit_code_first_failure_by_signal_is_128_plus_n() -> None:
    assert code(first_failure=SEGV) == 139


def test_exit_code_requested_shutdown_ignores_service_codes() -> None:
    assert code(shutdown_requested=True, first_failure=FAIL) == 0
    assert code(shutdown_requested=True, killed=True) == 137


def test_exit_code_critical_wins_over_everything() -> None:
    assert code(critical=FAIL, shutdown_requested=True, killed=True, first_failure=SEGV) == 3


def test_exit_code_remap_applies_last() -> None:
    assert code(shutdown_requested=True, killed=True, remap={137: 0}) == 0
    assert code(critical=ExitStatus(signal=signal.SIGTERM), remap={143: 0}) == 0
    assert code(first_failure=FAIL, remap={4: 0}) == 3


def test_backoff_after_thousands_of_failures_stays_at_its_cap() -> None:
    """Regression: initial * factor**n overflowed a float after about 1,024 failures in a row
    (or at once with a huge factor), and the OverflowError crashed a running tinit."""
    for failures, factor in ((5000, 2.0), (2, 1e300)):
        decision = decide(
            status=ExitStatus(1, None), policy="always", success_codes=frozenset({0}),
            failures=failures, uptime=0.0, reset_after=30.0, max_restarts=None,
            initial=0.1, factor=factor, max_delay=30.0, jitter=0.0,
        )  # fmt: skip
        assert decision.restart
        assert decision.delay == 30.0
