"""Services mode end to end: real processes, tinit as PID 1 of a new PID namespace."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.nsrun import ROOT, tinit_argv, wait_for
from tests.svcrun import finish, run_config, start, write_config

pytestmark = pytest.mark.timeout(120)


def test_all_services_succeed_exit_0(tmp_path: Path) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          a: {command: "true"}
          b: {command: "sh -c 'echo hello from b'"}
        """,
    )
    assert result.code == 0
    assert result.output("b") == ["hello from b"]


def test_first_failure_in_time_is_the_exit_code(tmp_path: Path) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          early: {command: "sh -c 'exit 4'", restart: never}
          late: {command: "sh -c 'sleep 0.5; exit 5'", restart: never}
        """,
    )
    assert result.code == 4


def test_restart_with_backoff_then_give_up(tmp_path: Path) -> None:
    """on-failure with max_restarts 2: three runs, growing delays, one gave-up event."""
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          crash:
            command: "sh -c 'exit 3'"
            max_restarts: 2
            backoff: {initial: 200ms, factor: 2}
        """,
    )
    assert result.code == 3
    assert len(result.named("service_starting", "crash")) == 3
    delays = [e["delay"] for e in result.named("service_restarting", "crash")]
    assert len(delays) == 2
    assert 0.16 <= delays[0] <= 0.24  # 200 ms +-20%
    assert 0.32 <= delays[1] <= 0.48  # 400 ms +-20%
    assert len(result.named("service_gave_up", "crash")) == 1


def test_success_exit_codes_and_restart_never(tmp_path: Path) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          ok3: {command: "sh -c 'exit 3'", success_exit_codes: [0, 3]}
          once: {command: "sh -c 'exit 0'", restart: never}
        """,
    )
    assert result.code == 0
    assert len(result.named("service_starting", "ok3")) == 1


def test_restart_always_restarts_after_success(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          loop:
            command: "sh -c 'echo x >> {counter}; test $(wc -l < {counter}) -ge 3 && exit 9; exit 0'"
            restart: always
            max_restarts: 0
            backoff: {{initial: 50ms}}
        """,
    )
    assert counter.read_text().count("x") == 3
    assert result.code == 9  # the third run failed, and max_restarts 0 gives up at once


def test_critical_service_end_shuts_tinit_down_with_its_status(tmp_path: Path) -> None:
    start_time = time.monotonic()
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          main: {command: "sh -c 'sleep 0.3; exit 6'", critical: true, restart: never}
          sidecar: {command: "sleep 60"}
        """,
    )
    assert result.code == 6
    assert time.monotonic() - start_time < 10
    assert result.named("service_stopped", "sidecar")


def test_exit_code_remap(tmp_path: Path) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        settings: {exit_code_remap: {6: 0}}
        services:
          main: {command: "sh -c 'exit 6'", critical: true, restart: never}
        """,
    )
    assert result.code == 0


def test_depends_on_ready_waits_for_the_tcp_port(tmp_path: Path) -> None:
    """web is not spawned before db's port accepts connections."""
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          db:
            command: [PYTHON, -c, "import socket, time; time.sleep(0.7); s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 18771)); s.listen(); time.sleep(60)"]
            ready: {tcp: "127.0.0.1:18771", interval: 50ms}
          web:
            command: [PYTHON, -c, "import socket; socket.create_connection(('127.0.0.1', 18771)).close(); print('connected')"]
            depends_on: {db: ready}
            critical: true
            restart: never
        """,
    )
    assert result.code == 0
    assert result.output("web") == ["connected"]
    events = [e["event"] + ":" + e.get("service", "") for e in result.events]
    assert events.index("service_ready:db") < events.index("service_starting:web")


def test_oneshot_completed_gates_its_dependents(tmp_path: Path) -> None:
    marker = tmp_path / "migrated"
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          migrate: {{command: "sh -c 'sleep 0.3; touch {marker}'", oneshot: true}}
          app:
            command: "sh -c 'test -e {marker} && echo saw-migration'"
            depends_on: {{migrate: completed}}
            restart: never
        """,
    )
    assert result.code == 0
    assert result.output("app") == ["saw-migration"]


def test_dependency_that_gave_up_never_starts_its_dependent(tmp_path: Path) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          db:
            command: "sh -c 'sleep 0.2; exit 2'"
            ready: {tcp: "127.0.0.1:18774", interval: 50ms}
            max_restarts: 0
          web:
            command: "sh -c 'echo must-not-run'"
            depends_on: {db: ready}
        """,
    )
    assert "must-not-run" not in result.stdout
    assert not result.named("service_starting", "web")
    assert len(result.named("dependency_failed", "web")) == 1
    assert result.code == 2  # db's failure; web never started and changes nothing


def test_critical_service_that_can_never_start_exits_1(tmp_path: Path) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          db: {command: "sh -c 'exit 0'", oneshot: true, restart: never, success_exit_codes: [7]}
          app: {command: "sleep 60", depends_on: {db: completed}, critical: true}
        """,
    )
    assert result.code == 1


def test_sigterm_stops_in_reverse_dependency_order(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          db: {command: "sleep 60"}
          api: {command: "sleep 60", depends_on: [db]}
          web: {command: "sleep 60", depends_on: [api]}
          other: {command: "sleep 60"}
        """,
    )
    tinit = start(config)
    time.sleep(1.0)
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert result.code == 0
    stopped = result.order("service_stopped")
    assert stopped.index("web") < stopped.index("api") < stopped.index("db")


POSTGRES = """
import os, signal, sys, time
def on_term(*_):
    # what a database sees when told to stop: is its client already gone?
    seen = "app-gone" if os.path.exists(sys.argv[1] + "/app.exited") else "app-still-running"
    with open(sys.argv[1] + "/postgres.term", "w") as f:
        f.write(f"{time.time()} {seen}")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
while True:
    time.sleep(60)
"""

APP = """
import signal, sys, time
def on_term(*_):
    time.sleep(1.0)  # draining: still needs the database
    with open(sys.argv[1] + "/app.exited", "w") as f:
        f.write(str(time.time()))
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(sys.argv[1] + "/app.up", "w").close()
while True:
    time.sleep(60)
"""


def test_shutdown_waits_for_dependents_through_a_finished_oneshot(tmp_path: Path) -> None:
    (tmp_path / "postgres.py").write_text(POSTGRES)
    (tmp_path / "app.py").write_text(APP)
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          postgres: {{command: [PYTHON, "{tmp_path}/postgres.py", "{tmp_path}"]}}
          migrate:
            command: "sh -c 'echo migrated'"
            oneshot: true
            depends_on: {{postgres: ready}}
          app:
            command: [PYTHON, "{tmp_path}/app.py", "{tmp_path}"]
            depends_on: {{migrate: completed}}
        """,
    )
    tinit = start(config)
    assert wait_for(lambda: (tmp_path / "app.up").exists(), timeout=30)
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert result.code == 0, result.stderr[-2000:]
    term_at, seen = (tmp_path / "postgres.term").read_text().split()
    assert seen == "app-gone"
    assert float(term_at) >= float((tmp_path / "app.exited").read_text())
    # tinit's own events agree: app was gone before postgres was told to stop
    events = [f"{e.get('event')}:{e.get('service')}" for e in result.events]
    assert events.index("service_stopped:app") < events.index("service_stopping:postgres")


def test_service_ignoring_sigterm_is_killed_at_its_stop_timeout(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          stubborn:
            command: [PYTHON, -c, "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('{ready}', 'w').close(); time.sleep(60)"]
            stop_timeout: 700ms
        """,
    )
    tinit = start(config)
    assert wait_for(ready.exists)
    began = time.monotonic()
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    elapsed = time.monotonic() - began
    assert result.code == 137  # a service had to be SIGKILLed
    assert 0.6 <= elapsed < 5
    assert result.named("service_killed", "stubborn")


def test_twenty_slow_stoppers_stop_in_parallel(tmp_path: Path) -> None:
    """20 independent services that each take 1 s to stop: about 1 s, not 20."""
    slow = (
        '[PYTHON, -c, "import signal, sys, time; '
        "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(1), sys.exit(0))); "
        'time.sleep(60)"]'
    )
    services = "\n".join(f"  s{i}: {{command: {slow}}}" for i in range(20))
    config = write_config(tmp_path, f"version: 1\nservices:\n{services}\n")
    tinit = start(config)
    time.sleep(2.0)
    began = time.monotonic()
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    elapsed = time.monotonic() - began
    assert result.code == 0
    assert 1.0 <= elapsed < 4.0, elapsed
    assert len(result.named("service_stopped")) == 20


def test_second_sigterm_kills_at_once(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          slow:
            command: [PYTHON, -c, "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]
            stop_timeout: 30s
        settings: {shutdown_timeout: 40s}
        """,
    )
    tinit = start(config)
    time.sleep(1.0)
    tinit.signal(signal.SIGTERM)
    time.sleep(0.3)
    began = time.monotonic()
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert time.monotonic() - began < 3
    assert result.code == 137


def test_shutdown_timeout_bounds_the_whole_shutdown(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
        version: 1
        settings: {shutdown_timeout: 1s}
        services:
          slow:
            command: [PYTHON, -c, "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]
            stop_timeout: 30s
        """,
    )
    tinit = start(config)
    time.sleep(1.0)
    began = time.monotonic()
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert 0.9 <= time.monotonic() - began < 4
    assert result.code == 137


def test_sighup_kills_nothing(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          a: {command: "sleep 60"}
        """,
    )
    tinit = start(config)
    time.sleep(1.0)
    tinit.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert tinit.proc.poll() is None
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert result.code == 0
    assert len(result.named("service_starting", "a")) == 1


def test_forward_signals_reach_every_service(tmp_path: Path) -> None:
    record = tmp_path / "usr1"
    handler = (
        '[PYTHON, -c, "import os, signal, sys, time; '
        "signal.signal(signal.SIGUSR1, lambda *a: open(sys.argv[1], 'a').write(sys.argv[2] + chr(10))); "
        'time.sleep(60)", "%s", "%s"]'
    )
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          one: {{command: {handler % (record, "one")}}}
          two: {{command: {handler % (record, "two")}}}
        """,
    )
    tinit = start(config)
    time.sleep(1.5)
    tinit.signal(signal.SIGUSR1)
    assert wait_for(
        lambda: record.exists() and sorted(record.read_text().split()) == ["one", "two"]
    )
    tinit.signal(signal.SIGTERM)
    assert finish(tinit).code == 0


def test_leftover_children_of_a_service_are_stopped_before_restart(tmp_path: Path) -> None:
    """What a service leaves in its process group gets the stop signal before it restarts."""
    pids = tmp_path / "pids"
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          parent:
            command: "sh -c 'sleep 60 & echo $! >> {pids}; exit 1'"
            max_restarts: 1
            backoff: {{initial: 50ms}}
        """,
    )
    assert result.code == 1
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    # all gone: the namespace is gone, but the events show the group emptied each time
    assert len(result.named("service_exited", "parent")) == 2


# Each starts a process, waits until that process is set up (out of the group, or
# deaf to SIGTERM), then exits 0: the oneshot's leftovers are known for sure.
DAEMONIZE = """
setsid sh -c 'touch "$0/daemon.up"; exec sleep 300' "$1" &
i=0; while [ ! -e "$1/daemon.up" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
"""
STUBBORN = """
sh -c 'trap "" TERM; touch "$0/stubborn.up"; exec sleep 300' "$1" &
i=0; while [ ! -e "$1/stubborn.up" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
"""


def test_a_oneshot_that_leaves_a_daemon_behind_is_warned_about(tmp_path: Path) -> None:
    """Leftovers of a oneshot are stopped, and that is said: how many, how, and what to do."""
    (tmp_path / "daemonize.sh").write_text(DAEMONIZE)
    (tmp_path / "stubborn.sh").write_text(STUBBORN)
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          daemonize:
            command: [sh, "{tmp_path}/daemonize.sh", "{tmp_path}"]
            oneshot: true
          stubborn:
            command: [sh, "{tmp_path}/stubborn.sh", "{tmp_path}"]
            oneshot: true
            stop_timeout: 500ms
        """,
    )
    assert result.code == 0, result.stderr[-2000:]
    # in its process group: found with or without cgroups; SIGTERM is ignored, so SIGKILL
    [stubborn] = result.named("oneshot_left_processes", "stubborn")
    assert (stubborn["level"], stubborn["processes"]) == ("warning", 1)
    assert (stubborn["signal"], stubborn["killed"]) == ("SIGTERM", True)
    assert "foreground" in stubborn["hint"]
    if result.named("cgroups_unavailable"):
        pytest.skip("a daemon that left its process group is found only through its cgroup")
    [daemon] = result.named("oneshot_left_processes", "daemonize")
    assert (daemon["level"], daemon["processes"]) == ("warning", 1)
    assert (daemon["signal"], daemon["killed"]) == ("SIGTERM", False)
    assert "foreground" in daemon["hint"]
    # stopped as the oneshot's leftovers, not by tinit's final sweep of the namespace
    assert not result.named("stopping_leftovers")


def test_ready_http_exec_and_notify_fd_probes(tmp_path: Path) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          http:
            command: [PYTHON, -m, http.server, "18772", --bind, 127.0.0.1]
            ready: {http: "http://127.0.0.1:18772/", interval: 100ms}
          byexec:
            command: "sleep 60"
            ready: {exec: "sh -c 'exit 0'", interval: 100ms}
          notify:
            command: [PYTHON, -c, "import os, time; time.sleep(0.2); os.write(5, b'ready' + bytes([10])); time.sleep(60)"]
            ready: {notify_fd: 5}
          done:
            command: "true"
            depends_on: {http: ready, byexec: ready, notify: ready}
            critical: true
        """,
    )
    assert result.code == 0
    for name in ("http", "byexec", "notify"):
        assert result.named("service_ready", name), name


def test_ready_start_timeout_counts_as_a_failed_start(tmp_path: Path) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          never:
            command: "sleep 60"
            ready: {tcp: "127.0.0.1:18773", interval: 50ms, start_timeout: 300ms}
            max_restarts: 1
            backoff: {initial: 50ms}
        """,
    )
    assert len(result.named("service_not_ready", "never")) == 2
    assert len(result.named("service_gave_up", "never")) == 1
    assert result.code != 0


def test_failing_health_probe_restarts_the_service(tmp_path: Path) -> None:
    flag = tmp_path / "healthy"
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          svc:
            command: "sh -c 'touch {flag}; sleep 0.5; rm -f {flag}; sleep 60'"
            health: {{exec: "test -e {flag}", interval: 200ms, failures: 2}}
            max_restarts: 1
            backoff: {{initial: 50ms}}
        """,
    )
    assert len(result.named("service_unhealthy", "svc")) == 2
    assert len(result.named("service_starting", "svc")) == 2
    assert result.named("service_gave_up", "svc")


def test_process_set_up_user_workdir_env_umask(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("export FROM_FILE='file value'\nOVERRIDDEN=file\n")
    os.chmod(tmp_path, 0o755)
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          who:
            command: "sh -c 'id -u; id -g; pwd; umask; echo $FROM_FILE; echo $OVERRIDDEN; echo $HOME; echo $${{TINIT_TEST_INHERITED:-unset}}'"
            user: nobody
            workdir: /tmp
            umask: "027"
            env_file: [{env_file}]
            env: {{OVERRIDDEN: env}}
            restart: never
          clean:
            command: "sh -c 'echo $${{TINIT_TEST_INHERITED:-unset}}'"
            clear_env: true
            env: {{PATH: /usr/bin:/bin}}
            restart: never
        """,
        env={"TINIT_TEST_INHERITED": "inherited"},
    )
    assert result.code == 0, result.stderr
    assert result.output("who") == [
        "65534",
        "65534",
        "/tmp",
        "0027",
        "file value",
        "env",
        "/nonexistent",
        "inherited",
    ]
    assert result.output("clean") == ["unset"]


def test_invalid_config_at_run_is_exit_2_without_traceback(tmp_path: Path) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          web: {command: "true", restart: on_failure}
        """,
    )
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert "services.web.restart: unknown value 'on_failure' (did you mean 'on-failure'?)" in (
        result.stderr
    )


def test_output_of_four_services_is_never_torn(tmp_path: Path) -> None:
    """100,000 lines from 4 services arrive whole and in order per service."""
    writer = (
        '[PYTHON, -c, "import sys; w = sys.stdout.write; '
        "[w(sys.argv[1] + ' ' + str(i) + ' ' + 'x' * (i % 50) + chr(10)) for i in range(25000)]\", \"NAME\"]"
    )
    services = "\n".join(
        f"  w{i}: {{command: {writer.replace('NAME', f'w{i}')}, restart: never}}" for i in range(4)
    )
    result = run_config(tmp_path, f"version: 1\nservices:\n{services}\n", timeout=60)
    assert result.code == 0
    seen: dict[str, int] = {f"w{i}": 0 for i in range(4)}
    for line in result.stdout.splitlines():
        name, _, body = line.partition(" | ")
        word, number, pad = body.split(" ") if body.count(" ") == 2 else (*body.split(" "), "")
        assert word == name.strip(), line
        assert int(number) == seen[word], line
        assert pad == "x" * (int(number) % 50), line
        seen[word] += 1
    assert seen == {f"w{i}": 25000 for i in range(4)}


def test_unset_variable_in_a_command_is_an_error_at_run(tmp_path: Path) -> None:
    """tinit check only warns (the variable may be set where it runs); tinit run
    is where it runs, so there it is an error."""
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          app: {command: "echo ${TINIT_TEST_SURELY_UNSET}"}
        """,
    )
    assert result.code == 2
    assert "TINIT_TEST_SURELY_UNSET" in result.stderr
    assert not result.named("service_starting")


def test_stalled_stderr_does_not_freeze_tinit(tmp_path: Path) -> None:
    """Regression: tinit's own events used to be blocking writes to stderr, so a
    stderr nobody read froze the whole supervisor (no reaping, no signals)."""
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          crashy:
            command: "sh -c 'exit 1'"
            max_restarts: null
            backoff: {initial: 1ms, max: 1ms}
        """,
    )
    tinit = start(config, stderr=subprocess.PIPE)  # a pipe nobody reads until the end
    time.sleep(3)  # thousands of events: far more than a pipe holds
    tinit.signal(signal.SIGTERM)
    # no reader yet: tinit must get through its shutdown on its own
    assert tinit.proc.wait(timeout=10) == 0
    result = finish(tinit, timeout=30)
    assert result.code == 0


def test_slow_reader_loses_no_output_of_a_finished_run(tmp_path: Path) -> None:
    """Regression: a run's output pump was cancelled one second after its processes
    were gone, so with a slow reader the last lines of a run were lost (or torn)."""
    config = write_config(
        tmp_path,
        """
        version: 1
        settings: {control_socket: null}
        services:
          chatty:
            command: [PYTHON, -c, "import sys; [sys.stdout.write(f'line {i:06d} ' + 'x' * 90 + chr(10)) for i in range(12000)]"]
            restart: never
        """,
    )
    tinit = start(config, stdout=subprocess.PIPE)
    assert tinit.proc.stdout is not None
    received = b""
    while chunk := os.read(tinit.proc.stdout.fileno(), 32768):  # ~200 KB/s: 6 s in all
        received += chunk
        time.sleep(0.15)
    result = finish(tinit, timeout=60)
    assert result.code == 0
    lines = [line.split(" | ", 1)[1] for line in received.decode().splitlines()]
    assert len(lines) == 12000
    assert all(line.startswith(f"line {i:06d} ") for i, line in enumerate(lines))


def test_operator_restart_does_not_start_anything_once_shutdown_began(tmp_path: Path) -> None:
    """Regression: a `tinit restart` still stopping the old run when a shutdown began
    started the new run anyway, in the middle of the shutdown."""
    ready = tmp_path / "ready"
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          stubborn:
            command: [PYTHON, -c, "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('{ready}', 'w').close(); time.sleep(60)"]
            stop_timeout: 1500ms
        """,
    )
    tinit = start(config)
    assert wait_for(ready.exists)
    restart = subprocess.Popen([*tinit_argv("restart", "stubborn")], env=tinit.env, cwd=ROOT)
    time.sleep(0.5)  # the old run is still ignoring its SIGTERM
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    restart.wait(timeout=30)
    assert len(result.named("service_starting", "stubborn")) == 1


def test_a_raw_service_cannot_cut_into_prefixed_lines_on_a_full_pipe(tmp_path: Path) -> None:
    """tinit's writes to a full stdout pipe are cut at line ends; a raw line lands between."""
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          p:
            command: [PYTHON, -c, "for i in range(4000): print(f'p{i:05d}' + 'x' * 700)"]
            oneshot: true
          r:
            # one write(2) per line, as line-buffered programs do
            command: [PYTHON, -u, -c, "import sys; [sys.stdout.write(f'r{i:05d}' + 'y' * 150 + chr(10)) for i in range(20000)]"]
            oneshot: true
            output: raw
        """,
    )
    tinit = start(config, stdout=subprocess.PIPE)
    assert tinit.proc.stdout is not None
    received = bytearray()
    deadline = time.monotonic() + 60
    while chunk := os.read(tinit.proc.stdout.fileno(), 8192):
        received += chunk
        time.sleep(0.0005)  # a slow reader keeps the pipe full
        assert time.monotonic() < deadline
    assert finish(tinit).code == 0
    prefixed, raw, torn = [], [], []
    for line in received.decode().splitlines():
        if m := re.fullmatch(r"p \| p(\d{5})x{700}", line):
            prefixed.append(int(m[1]))
        elif m := re.fullmatch(r"r(\d{5})y{150}", line):
            raw.append(int(m[1]))
        else:
            torn.append(line[:80])
    assert torn == []
    assert prefixed == list(range(4000))
    assert raw == list(range(20000))


def test_reset_after_counts_from_start_to_exit_and_each_exit_logs_its_uptime(
    tmp_path: Path,
) -> None:
    """A run up for reset_after clears the failure count; a shorter one does not."""
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          steady:
            command: "sh -c 'sleep 0.6; exit 1'"
            max_restarts: 1
            backoff: {initial: 50ms, factor: 4, max: 10s, reset_after: 500ms}
          brittle:
            command: "sh -c 'sleep 0.1; exit 1'"
            max_restarts: 1
            backoff: {initial: 50ms, factor: 4, max: 10s, reset_after: 500ms}
        """,
    )
    tinit = start(config)
    time.sleep(3.0)
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    steady = [e for e in result.named("service_exited", "steady") if e["exit_code"] == 1]
    assert len(steady) >= 3  # never gave up: each run reset the count
    assert all(0.6 <= e["uptime"] < 5 for e in steady)
    assert not result.named("service_gave_up", "steady")
    assert all(
        e["delay"] <= 0.05 * 1.2 + 0.001 for e in result.named("service_restarting", "steady")
    )
    brittle = result.named("service_exited", "brittle")
    assert len(brittle) == 2 and all(0.1 <= e["uptime"] < 0.5 for e in brittle)
    assert len(result.named("service_gave_up", "brittle")) == 1
