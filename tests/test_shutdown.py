"""What a shutdown promises, end to end: its budget bounds tinit's exit, nothing starts
once it began, every request gets its reply, and every SIGKILL it needs makes it 137."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING

import pytest

from tests.nsrun import ROOT, Tinit, tinit_argv, wait_for
from tests.svcrun import finish, start, write_config

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(120)


def cli(tinit: Tinit, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tinit_argv(*args), env=tinit.env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def logged(tinit: Tinit, text: str, count: int = 1) -> bool:
    return tinit.stderr_so_far().count(text) >= count


def test_a_slow_stdout_reader_cannot_stretch_the_shutdown_budget(tmp_path: Path) -> None:
    """Regression: with tinit's stdout read a byte every 100 ms, a 3 s shutdown took
    16 s and exited 137, although every service had ended on its SIGTERM."""
    script = tmp_path / "chatty.py"
    script.write_text(
        "import time\nprint('\\n'.join(['x' * 99] * 3000), flush=True)\ntime.sleep(60)\n"
    )
    chatty = f"command: [PYTHON, {script}]"
    config = write_config(
        tmp_path,
        f"""
        version: 1
        settings: {{shutdown_timeout: 3s}}
        services:
          a: {{{chatty}}}
          b: {{{chatty}}}
          c: {{{chatty}}}
        """,
    )
    tinit = start(config, stdout=subprocess.PIPE)
    assert tinit.proc.stdout is not None
    fd = tinit.proc.stdout.fileno()
    done = threading.Event()
    received = bytearray()

    def read_slowly() -> None:
        while not done.is_set():
            chunk = os.read(fd, 1)
            if not chunk:
                return
            received.extend(chunk)
            time.sleep(0.1)

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: logged(tinit, '"service_ready"', 3), timeout=20)
        time.sleep(0.5)  # the services' output piles up in front of the reader
        began = time.monotonic()
        tinit.signal(signal.SIGTERM)
        code = tinit.proc.wait(timeout=30)
        took = time.monotonic() - began
    finally:
        done.set()
        reader.join(timeout=5)
    result = finish(tinit)
    assert code == 0, result.stderr[-2000:]
    assert took < 3 + 1.5, took
    assert received  # what the budget allowed did go out
    assert {e["service"] for e in result.named("service_exited")} == {"a", "b", "c"}
    assert not result.named("service_killed")
    [dropped] = result.named("output_dropped")
    assert dropped["sink"] == "fd 1"
    assert dropped["bytes"] > 100_000
    assert dropped["lines"] > 1_000


def test_stopping_the_last_service_gets_its_reply_before_tinit_exits(tmp_path: Path) -> None:
    """Regression: `tinit stop` of the last running service ended tinit before its
    reply went out; the client said "closed the connection without a reply", exit 1."""
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          only: {command: "sleep 600"}
        """,
    )
    tinit = start(config)
    assert wait_for(lambda: logged(tinit, '"service_ready"'), timeout=20)
    stopped = cli(tinit, "stop", "only")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stderr == ""
    result = finish(tinit)
    assert result.code == 0  # every service ended by itself or on request, none failed
    assert result.named("service_stopped", "only")


def test_nothing_starts_once_a_shutdown_began(tmp_path: Path) -> None:
    """Regression: with SIGTERM right after 100 services were launched, services
    still started after `shutdown_began`: those just launched, those whose
    dependency had just started, and those coming out of a backoff."""
    lines = []
    for i in range(100):
        if i % 10 == 0:
            lines.append(f"  s{i}: {{command: 'sh -c \"exit 1\"', backoff: {{initial: 1ms}}}}")
        elif i % 10 < 5:
            lines.append(f"  s{i}: {{command: 'sleep 60', depends_on: [s{i - 1}]}}")
        else:
            lines.append(f"  s{i}: {{command: 'sleep 60'}}")
    config = write_config(tmp_path, "version: 1\nservices:\n" + "\n".join(lines) + "\n")
    tinit = start(config)
    assert wait_for(lambda: logged(tinit, '"service_starting"'), timeout=20, interval=0.001)
    tinit.signal(signal.SIGTERM)
    result = finish(tinit, timeout=60)
    assert result.code == 0
    events = [e["event"] for e in result.events]
    began = events.index("shutdown_began")
    assert "service_starting" in events[:began]
    assert "service_starting" not in events[began:]
    assert "service_restarting" not in events[began:]


def test_start_and_restart_during_a_shutdown_are_refused_with_a_reason(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    config = write_config(
        tmp_path,
        f"""
        version: 1
        settings: {{shutdown_timeout: 10s}}
        services:
          stubborn:
            command: [PYTHON, -c, "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('{ready}', 'w').close(); time.sleep(60)"]
            stop_timeout: 3s
          done: {{command: "true", oneshot: true}}
        """,
    )
    tinit = start(config)
    assert wait_for(ready.exists, timeout=20)
    assert wait_for(lambda: logged(tinit, '"service_exited"'), timeout=20)  # done: completed
    tinit.signal(signal.SIGTERM)
    assert wait_for(lambda: logged(tinit, '"shutdown_began"'), timeout=10)
    for command in ("start", "restart"):
        refused = cli(tinit, command, "done")
        assert refused.returncode == 1
        assert "tinit is shutting down: done is not started again" in refused.stderr
    result = finish(tinit)
    assert len(result.named("service_starting", "done")) == 1
    assert result.code == 137  # stubborn needed its SIGKILL


def test_a_sigkill_to_a_service_a_reload_removes_counts_in_the_shutdown(tmp_path: Path) -> None:
    """Regression: a service that ignores SIGTERM, removed by a reload and SIGKILLed
    during the shutdown that followed, left tinit's exit code at 0, not 137."""
    ready = tmp_path / "ready"
    stubborn = f"""
          stubborn:
            command: [PYTHON, -c, "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('{ready}', 'w').close(); time.sleep(60)"]
            stop_timeout: 1s
    """
    body = """
        version: 1
        services:
          web: {command: "sleep 60"}
    """
    config = write_config(tmp_path, body + stubborn)
    tinit = start(config)
    assert wait_for(ready.exists, timeout=20)
    write_config(tmp_path, body)
    tinit.signal(signal.SIGHUP)
    assert wait_for(lambda: logged(tinit, '"service_stopping"'), timeout=10)
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert [e["service"] for e in result.named("service_killed")] == ["stubborn"]
    assert result.code == 137


def test_leftovers_killed_at_the_end_of_a_shutdown_count(tmp_path: Path) -> None:
    """Regression: a leftover (a daemon outside every service's process group) that
    needed SIGKILL at the end of the shutdown left tinit's exit code at 0."""
    ready = tmp_path / "ready"
    daemon = tmp_path / "daemon.py"
    daemon.write_text(
        "import os, signal, sys, time\n"
        "os.setsid()  # out of the service's process group\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open(sys.argv[1], 'w').close()\n"
        "time.sleep(60)\n"
    )
    config = write_config(
        tmp_path,
        f"""
        version: 1
        settings: {{shutdown_timeout: 1s}}
        services:
          parent:
            command: "sh -c 'PYTHON {daemon} {ready} >/dev/null 2>&1 & exec sleep 60'"
        """,
    )
    tinit = start(config, "--no-cgroups")
    assert wait_for(ready.exists, timeout=20)
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert result.named("killing_leftovers")
    assert result.code == 137
