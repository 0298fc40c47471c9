"""Which keys a reload applies to a running service, and which restart it (config/reloadable.py)."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from tinit.config import Service, parse_config, reloadable
from tinit.config.reloadable import ON_RELOAD, OnReload, changed_keys, needs_restart

BASE = """
    command: sleep 60
    output: "null"
    stop_timeout: 5s
    ready: {tcp: "127.0.0.1:8080"}
"""


def service(body: str = BASE, extra: str = "") -> Service:
    text = "version: 1\nservices:\n  svc:\n" + textwrap.indent(
        textwrap.dedent(body) + textwrap.dedent(extra), "    "
    )
    config = parse_config(text, filename="/nonexistent/services.yaml", environ={}, offline=True)
    return config.services["svc"]


def test_every_field_of_a_service_is_classified() -> None:
    """A new key must say what a reload does with it, and the table names no stale key."""
    assert set(ON_RELOAD) == {f.name for f in dataclasses.fields(Service)}
    assert all(isinstance(kind, OnReload) for kind in ON_RELOAD.values())


@pytest.mark.parametrize(
    "extra",
    [
        "stop_signal: SIGINT\n",
        "restart: never\n",
        "backoff: {initial: 1s}\n",
        "max_restarts: 3\n",
        "success_exit_codes: [0, 3]\n",
        "critical: true\n",
        "health: {http: 'http://127.0.0.1:8080/'}\n",
        "limits: {memory: 64M, pids: 10}\n",
        "oom_group: true\n",
    ],
)
def test_policy_changes_are_taken_in_place(extra: str) -> None:
    old, new = service(), service(extra=extra)
    assert changed_keys(old, new)
    assert not needs_restart(old, new)


def test_a_new_stop_timeout_and_ready_probe_are_taken_in_place() -> None:
    old = service()
    new = service(BASE.replace("5s", "1s").replace('tcp: "127.0.0.1:8080"', "tcp: ':9090'"))
    assert changed_keys(old, new) == {"stop_timeout", "ready"}
    assert not needs_restart(old, new)


@pytest.mark.parametrize(
    "extra",
    [
        "env: {A: b}\n",
        "workdir: /tmp\n",
        "user: nobody\n",
        "umask: '077'\n",
        "stdin: /dev/zero\n",
        "no_new_privs: true\n",
        "capabilities: {drop: [NET_RAW]}\n",
        "namespaces: {private_tmp: true}\n",
        "clear_env: true\n",
    ],
)
def test_what_the_process_was_started_with_restarts_it(extra: str) -> None:
    assert needs_restart(service(), service(extra=extra))


def test_a_new_command_or_output_restarts() -> None:
    assert needs_restart(service(), service(BASE.replace("sleep 60", "sleep 61")))
    assert needs_restart(service(), service(BASE.replace('"null"', "prefix")))


def test_a_notify_fd_probe_is_part_of_the_process() -> None:
    """Its pipe is passed at the start: to, from or between notify_fd probes is a restart."""
    notify = service(BASE.replace('tcp: "127.0.0.1:8080"', "notify_fd: 3"))
    other_fd = service(BASE.replace('tcp: "127.0.0.1:8080"', "notify_fd: 4"))
    assert needs_restart(service(), notify)
    assert needs_restart(notify, service())
    assert needs_restart(notify, other_fd)
    assert not needs_restart(notify, notify)


def test_an_sd_notify_probe_is_part_of_the_process() -> None:
    """NOTIFY_SOCKET and WATCHDOG_USEC are given at the start: a change of either restarts."""
    notify = service(BASE.replace('tcp: "127.0.0.1:8080"', "sd_notify: true"))
    watched = service(BASE.replace('tcp: "127.0.0.1:8080"', "sd_notify: true, watchdog: 5s"))
    longer = service(BASE.replace('tcp: "127.0.0.1:8080"', "sd_notify: true, watchdog: 9s"))
    assert needs_restart(service(), notify)
    assert needs_restart(notify, service())
    assert needs_restart(notify, watched)
    assert needs_restart(watched, longer)
    assert not needs_restart(watched, watched)


def test_an_unclassified_difference_is_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """The safe side, should a key ever miss the table."""
    partial = {k: v for k, v in ON_RELOAD.items() if k != "stop_timeout"}
    monkeypatch.setattr(reloadable, "ON_RELOAD", partial)
    assert needs_restart(service(), service(BASE.replace("5s", "1s")))
