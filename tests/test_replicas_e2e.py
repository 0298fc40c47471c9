"""replicas and disabled against a real tinit as PID 1: instances, their numbers, the control commands."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from tests.nsrun import ROOT, Tinit, tinit_argv, wait_for
from tests.svcrun import finish, start, write_config

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(120)

REPLICATED = """\
version: 1
services:
  worker:
    command: [PYTHON, -u, -c, "import os, sys, time; print('replica', os.environ['TINIT_REPLICA'], sys.argv[1], flush=True); time.sleep(600)", "arg${TINIT_REPLICA}"]
    replicas: 3
    stop_timeout: 2s
"""

HTTP_PORT = 18797
DISABLED = f"""\
version: 1
settings: {{health_listen: "127.0.0.1:{HTTP_PORT}"}}
services:
  admin:
    command: [PYTHON, -u, -c, "import time; print('admin up', flush=True); time.sleep(600)"]
    disabled: true
  web:
    command: [PYTHON, -u, -c, "import time; print('web up', flush=True); time.sleep(600)"]
    depends_on: {{admin: ready}}
"""


def cli(tinit: Tinit, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tinit_argv(*args), env=tinit.env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def status(tinit: Tinit, *names: str) -> dict[str, dict[str, Any]]:
    done = cli(tinit, "status", "--json", *names)
    assert done.returncode in (0, 1), done.stderr
    return {s["name"]: s for s in json.loads(done.stdout)}


def readyz() -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/readyz", timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def running(tinit: Tinit, *names: str) -> bool:
    try:
        services = status(tinit)
    except (json.JSONDecodeError, AssertionError):
        return False
    return all(services.get(n, {}).get("state") == "running" for n in names)


def test_replicas_run_numbered_and_answer_to_their_base_name(tmp_path: Path) -> None:
    tinit = start(write_config(tmp_path, REPLICATED))
    instances = ("worker-1", "worker-2", "worker-3")
    try:
        assert wait_for(lambda: running(tinit, *instances), timeout=30)
        assert wait_for(lambda: cli(tinit, "logs", "worker").stdout.count("replica") == 3)
        assert list(status(tinit, "worker")) == list(instances)
        before = {name: s["pid"] for name, s in status(tinit).items()}
        assert len(set(before.values())) == 3

        assert cli(tinit, "restart", "worker").returncode == 0
        assert wait_for(lambda: running(tinit, *instances), timeout=30)
        after = {name: s["pid"] for name, s in status(tinit).items()}
        assert all(after[name] != before[name] for name in instances)

        assert cli(tinit, "stop", "worker-2").returncode == 0
        states = {name: s["state"] for name, s in status(tinit).items()}
        assert states == {"worker-1": "running", "worker-2": "stopped", "worker-3": "running"}
        # Stopped by an operator: shown as held, not counted as a failure.
        assert status(tinit, "worker-2")["worker-2"]["held"] is True
        assert cli(tinit, "status", "worker-2").returncode == 0
    finally:
        tinit.signal(signal.SIGTERM)
        result = finish(tinit)
    assert result.code == 0
    for number in (1, 2, 3):
        lines = result.output(f"worker-{number}")
        assert lines[:2] == [f"replica {number} arg{number}"] * 2  # the first run, then restart


def test_disabled_waits_for_a_start_and_keeps_no_dependent_waiting(tmp_path: Path) -> None:
    tinit = start(write_config(tmp_path, DISABLED))
    try:
        assert wait_for(lambda: running(tinit, "web"), timeout=30)
        services = status(tinit)
        assert services["admin"]["state"] == "disabled"
        assert services["admin"]["pid"] is None
        assert cli(tinit, "status").returncode == 0  # disabled is not down
        assert readyz() == 200

        assert cli(tinit, "start", "admin").returncode == 0
        assert wait_for(lambda: running(tinit, "admin", "web"), timeout=30)
        assert cli(tinit, "stop", "admin").returncode == 0
        assert status(tinit)["admin"]["state"] == "stopped"
        # stopped by hand is down on purpose: not a failure either
        assert cli(tinit, "status").returncode == 0
        assert readyz() == 200
    finally:
        tinit.signal(signal.SIGTERM)
        result = finish(tinit)
    assert result.code == 0
    assert result.output("admin") == ["admin up"]
    assert result.output("web") == ["web up"]


def test_a_file_of_disabled_services_ends_at_once_with_0(tmp_path: Path) -> None:
    body = "version: 1\nservices:\n  admin: {command: sleep 600, disabled: true}\n"
    result = finish(start(write_config(tmp_path, body)))
    assert result.code == 0
    assert result.named("config_loaded")  # it ran
    assert result.named("service_starting") == []


def test_a_reload_that_changes_replicas_touches_only_the_instances_that_change(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, REPLICATED)
    tinit = start(config)
    try:
        assert wait_for(lambda: running(tinit, "worker-1", "worker-2", "worker-3"), timeout=30)
        before = {name: s["pid"] for name, s in status(tinit).items()}
        config.write_text(config.read_text().replace("replicas: 3", "replicas: 2"))
        done = cli(tinit, "reload")
        assert done.returncode == 0, done.stderr
        assert "removed: worker-3" in done.stdout
        after = {name: s["pid"] for name, s in status(tinit).items()}
        assert after == {"worker-1": before["worker-1"], "worker-2": before["worker-2"]}

        config.write_text(config.read_text().replace("replicas: 2", "replicas: 4"))
        done = cli(tinit, "reload")
        assert done.returncode == 0, done.stderr
        assert "added: worker-3, worker-4" in done.stdout
        assert wait_for(lambda: running(tinit, *(f"worker-{n}" for n in range(1, 5))), timeout=30)
        assert status(tinit, "worker-1")["worker-1"]["pid"] == before["worker-1"]
    finally:
        tinit.signal(signal.SIGTERM)
        result = finish(tinit)
    assert result.code == 0
    assert result.output("worker-4") == ["replica 4 arg4"]
