"""Live reload on SIGHUP: added services start, removed stop, changed restart, the rest keep their pid."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.nsrun import wait_for
from tests.svcrun import finish, start, write_config

pytestmark = pytest.mark.timeout(60)


def _service(name: str, pidfile: Path, extra: str = "") -> str:
    return f"""  {name}:
    command: "sh -c 'echo $$$$ > {pidfile}; exec sleep 60{extra}'"
"""


def _pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text else None


def test_sighup_applies_the_difference(tmp_path: Path) -> None:
    pids = {name: tmp_path / f"{name}.pid" for name in ("keep", "change", "drop", "add")}
    before = "version: 1\nservices:\n" + "".join(
        _service(name, pids[name]) for name in ("keep", "change", "drop")
    )
    config = write_config(tmp_path, before)
    tinit = start(config)
    assert wait_for(lambda: all(_pid(pids[n]) for n in ("keep", "change", "drop")))
    first = {n: _pid(pids[n]) for n in ("keep", "change", "drop")}

    after = "version: 1\nservices:\n" + (
        _service("keep", pids["keep"])
        + _service("change", pids["change"], extra=" 60")  # a different command
        + _service("add", pids["add"])
    )
    config.write_text(after)
    pids["change"].unlink()
    tinit.signal(signal.SIGHUP)
    assert wait_for(lambda: _pid(pids["add"]) is not None and _pid(pids["change"]) is not None)
    time.sleep(0.3)
    assert _pid(pids["keep"]) == first["keep"]  # untouched: same pid
    assert _pid(pids["change"]) != first["change"]  # restarted
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert result.code == 0
    reloaded = result.named("config_reloaded")
    assert len(reloaded) == 1
    assert reloaded[0]["added"] == ["add"]
    assert reloaded[0]["removed"] == ["drop"]
    assert reloaded[0]["changed"] == ["change"]
    assert reloaded[0]["unchanged"] == ["keep"]
    assert reloaded[0]["updated"] == []
    assert len(result.named("service_starting", "keep")) == 1
    assert len(result.named("service_starting", "change")) == 2
    assert result.named("service_stopped", "drop")


def test_invalid_reload_changes_nothing_and_names_the_line(tmp_path: Path) -> None:
    pidfile = tmp_path / "a.pid"
    config = write_config(tmp_path, "version: 1\nservices:\n" + _service("a", pidfile))
    tinit = start(config)
    assert wait_for(lambda: _pid(pidfile) is not None)
    first = _pid(pidfile)
    config.write_text('version: 1\nservices:\n  a:\n    command: "true"\n    restart: sometimes\n')
    tinit.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert tinit.proc.poll() is None
    assert _pid(pidfile) == first
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert result.code == 0
    problems = [e["problem"] for e in result.named("reload_failed")]
    assert len(problems) == 1
    assert problems[0].startswith(f"{config}:5:14: services.a.restart: unknown value 'sometimes'")


HOSTILE = {
    "nesting": "version: 1\nservices:\n  a: {command: sleep 1}\nx-deep: "
    + "{a: " * 3000
    + "1"
    + "}" * 3000
    + "\n",
    "laughs": "version: 1\nx-big: &big\n"
    + "".join(f"  K{i}: v{i}\n" for i in range(1000))
    + "services:\n"
    + "".join(f"  s{i}:\n    command: sleep 1\n    env: *big\n" for i in range(500)),
    "dev-zero": "version: 1\nservices:\n  a: {command: sleep 1, env_file: /dev/zero}\n",
    "nul": 'version: 1\nservices:\n  a: {command: sleep 1, output: "file:/tmp/a\\0b"}\n',
}
EXPECTED = {
    "nesting": "4:258: nested more than 64 levels deep, the limit",
    "laughs": "more than 50,000 values, counting each alias as what it repeats",
    "dev-zero": "services.a.env_file: can't read env file '/dev/zero': it is a device",
    "nul": "services.a.output: contains a NUL character",
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_reload_is_reported_and_the_running_config_stays(
    tmp_path: Path, kind: str
) -> None:
    """A reload of a file past a limit is one reload_failed; tinit and its services go on."""
    pidfile = tmp_path / "a.pid"
    config = write_config(tmp_path, "version: 1\nservices:\n" + _service("a", pidfile))
    tinit = start(config)
    assert wait_for(lambda: _pid(pidfile) is not None)
    first = _pid(pidfile)
    config.write_text(HOSTILE[kind])
    tinit.signal(signal.SIGHUP)
    time.sleep(1.5)
    assert tinit.proc.poll() is None  # no crash of PID 1
    assert _pid(pidfile) == first  # the running config is still in force
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert result.code == 0
    problems = [e["problem"] for e in result.named("reload_failed")]
    assert len(problems) == 1, problems
    assert EXPECTED[kind] in problems[0]
    assert not result.named("config_reloaded")


def test_a_policy_change_is_taken_in_place_and_a_command_change_restarts(tmp_path: Path) -> None:
    """stop_timeout and limits change the running service, same pid; a new command restarts."""
    pids = {name: tmp_path / f"{name}.pid" for name in ("policy", "command")}
    before = "version: 1\nservices:\n" + "".join(_service(n, pids[n]) for n in pids)
    config = write_config(tmp_path, before)
    tinit = start(config)
    assert wait_for(lambda: all(_pid(p) for p in pids.values()))
    first = {n: _pid(p) for n, p in pids.items()}

    policy = "    stop_timeout: 3s\n    limits: {memory: 256M, pids: 100}\n"
    after = "version: 1\nservices:\n" + (
        _service("policy", pids["policy"]) + policy + _service("command", pids["command"], " 60")
    )
    config.write_text(after)
    pids["command"].unlink()
    tinit.signal(signal.SIGHUP)
    assert wait_for(lambda: _pid(pids["command"]) is not None)
    time.sleep(0.3)
    assert _pid(pids["policy"]) == first["policy"]
    assert _pid(pids["command"]) != first["command"]
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert result.code == 0
    (reloaded,) = result.named("config_reloaded")
    assert reloaded["updated"] == ["policy"]
    assert reloaded["changed"] == ["command"]
    assert reloaded["unchanged"] == []
    assert len(result.named("service_starting", "policy")) == 1
    assert len(result.named("service_starting", "command")) == 2
