"""The control socket, the CLI client and the health endpoint against a real tinit as PID 1."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.nsrun import ROOT, Tinit, tinit_argv, wait_for
from tests.svcrun import finish, start, write_config

pytestmark = pytest.mark.timeout(120)

HTTP_PORT = 18791


def cli(tinit: Tinit, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tinit_argv(*args),
        env=tinit.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def status(tinit: Tinit, *names: str) -> dict[str, dict[str, Any]]:
    done = cli(tinit, "status", "--json", *names)
    assert done.returncode in (0, 1), done.stderr
    return {s["name"]: s for s in json.loads(done.stdout)}


def up(tinit: Tinit, *names: str) -> bool:
    try:
        services = status(tinit)
    except (json.JSONDecodeError, AssertionError):
        return False
    return all(services.get(n, {}).get("ready") for n in names)


STACK = f"""
version: 1
settings: {{health_listen: "127.0.0.1:{HTTP_PORT}"}}
services:
  web:
    command: [PYTHON, -u, -c, "import signal, sys, time; signal.signal(signal.SIGUSR1, lambda *a: print('got usr1', flush=True)); print('web up', flush=True); time.sleep(600)"]
  worker:
    command: "sh -c 'echo worker up; exec sleep 600'"
    depends_on: [web]
  setup:
    command: "sh -c 'echo set up'"
    oneshot: true
"""


@pytest.fixture
def stack(tmp_path: Path) -> Tinit:
    tinit = start(write_config(tmp_path, STACK))
    assert wait_for(lambda: up(tinit, "web", "worker", "setup"), timeout=30)
    return tinit


def test_every_command_round_trip(stack: Tinit, tmp_path: Path) -> None:
    services = status(stack)
    assert set(services) == {"web", "worker", "setup"}
    web_pid = services["web"]["pid"]
    assert services["web"]["state"] == "running"
    assert services["setup"]["completed"]
    assert 0 < services["web"]["log_bytes"] <= 256 * 1024  # it printed "web up"
    table = cli(stack, "status")
    assert table.returncode == 0  # all running and ready (the oneshot completed)
    assert "web" in table.stdout
    assert "running" in table.stdout

    assert cli(stack, "signal", "SIGUSR1", "web").returncode == 0
    assert wait_for(lambda: "got usr1" in cli(stack, "logs", "web").stdout)

    assert cli(stack, "stop", "worker").returncode == 0
    assert status(stack)["worker"]["state"] == "stopped"
    assert cli(stack, "status").returncode == 0  # stopped on purpose: not a failure
    assert cli(stack, "status", "web").returncode == 0
    assert cli(stack, "start", "worker").returncode == 0
    assert wait_for(lambda: up(stack, "worker"))

    assert cli(stack, "restart", "web").returncode == 0
    assert wait_for(lambda: up(stack, "web"))
    assert status(stack)["web"]["pid"] != web_pid
    assert status(stack)["web"]["restarts"] == 0  # an operator's restart is not a failure

    logs = cli(stack, "logs", "-n", "1", "web")
    assert logs.returncode == 0
    assert logs.stdout.strip().endswith("web up")
    assert len(logs.stdout.strip().splitlines()) == 1

    unknown = cli(stack, "stop", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "tinit: unknown service 'nope'"

    stack.signal(signal.SIGTERM)
    assert finish(stack).code == 0


def test_logs_follow_sees_new_lines(tmp_path: Path) -> None:
    tinit = start(
        write_config(
            tmp_path,
            """
            version: 1
            services:
              ticker: {command: "sh -c 'i=0; while true; do i=$$((i+1)); echo tick $$i; sleep 0.1; done'"}
            """,
        )
    )
    assert wait_for(lambda: "tick 3" in cli(tinit, "logs", "ticker").stdout)
    follower = subprocess.Popen(
        tinit_argv("logs", "-f", "-n", "0", "ticker"),
        env=tinit.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()
        second = follower.stdout.readline()
        assert "tick" in first
        assert "tick" in second
        n1, n2 = int(first.split()[-1]), int(second.split()[-1])
        assert n2 == n1 + 1  # new lines, in order, none lost
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=10)
    tinit.signal(signal.SIGTERM)
    finish(tinit)


def test_reload_through_the_cli(tmp_path: Path) -> None:
    config = write_config(tmp_path, "version: 1\nservices:\n  a: {command: 'sleep 600'}\n")
    tinit = start(config)
    assert wait_for(lambda: up(tinit, "a"))
    pid = status(tinit)["a"]["pid"]
    config.write_text(
        "version: 1\nservices:\n  a: {command: 'sleep 600'}\n  b: {command: 'sleep 600'}\n"
    )
    done = cli(tinit, "reload")
    assert done.returncode == 0, done.stderr
    assert wait_for(lambda: up(tinit, "a", "b"))
    assert status(tinit)["a"]["pid"] == pid
    config.write_text("version: 1\nservices:\n  a: {command: 'sleep 600', restart: nope}\n")
    bad = cli(tinit, "reload")
    assert bad.returncode == 1
    assert f"{config}:3:38: services.a.restart: unknown value 'nope'" in bad.stderr
    assert set(status(tinit)) == {"a", "b"}  # nothing changed
    tinit.signal(signal.SIGTERM)
    assert finish(tinit).code == 0


def test_socket_is_0600_and_other_users_are_refused(stack: Tinit) -> None:
    path = stack.env["TINIT_CONTROL_SOCKET"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(os.path.dirname(path), 0o755)  # let the other user reach the socket file
    os.chmod(path, 0o666)  # ...and connect: SO_PEERCRED must still refuse it
    other = subprocess.run(
        [
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "/usr/bin/python3", "-c",
            "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
            " s.sendall(b'{\"v\": 1, \"cmd\": \"stop\", \"names\": [\"web\"]}\\n');"
            " print(s.recv(4096).decode())",
            path,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert "permission denied" in other.stdout, other
    assert status(stack)["web"]["state"] == "running"
    stack.signal(signal.SIGTERM)
    finish(stack)


def test_junk_and_crowds_leave_tinit_responsive_and_services_untouched(stack: Tinit) -> None:
    path = stack.env["TINIT_CONTROL_SOCKET"]
    before = {n: s["pid"] for n, s in status(stack).items()}
    junk = [b"not json\n", b"{}\n", b'{"v": 2, "cmd": "stop"}\n', b'{"v": 1, "cmd": "explode"}\n',
            b'{"v": 1, "cmd": "stop", "names": "web"}\n', b"\xff\xfe\n", b"x" * 70000 + b"\n"]  # fmt: skip

    def send_junk(i: int) -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            try:
                s.sendall(junk[i % len(junk)])
                s.recv(4096)
            except OSError:
                pass  # an oversized request may just be cut off

    def ask_status(_: int) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(path)
            s.sendall(b'{"v": 1, "cmd": "status"}\n')
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
            return bool(json.loads(reply)["ok"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(send_junk, range(1000)))
    with ThreadPoolExecutor(max_workers=200) as pool:
        answers = list(pool.map(ask_status, range(200)))
    assert all(answers)
    after = {n: s["pid"] for n, s in status(stack).items()}
    assert after == before
    stack.signal(signal.SIGTERM)
    assert finish(stack).code == 0


def _get(path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_endpoints_follow_service_state(stack: Tinit) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    assert _get("/healthz")[0] == 200
    assert _get("/readyz")[0] == 200
    code, body = _get("/metrics")
    assert code == 200
    families = {f.name: f for f in text_string_to_metric_families(body)}
    up_samples = {s.labels["service"]: s.value for s in families["tinit_service_up"].samples}
    assert up_samples == {"web": 1.0, "worker": 1.0, "setup": 0.0}
    assert "tinit_orphans_reaped" in families
    assert "tinit_uptime_seconds" in families
    exits = [s for s in families["tinit_service_exits"].samples if s.name.endswith("_total")]
    assert {(s.labels["service"], s.labels["code"]) for s in exits} == {("setup", "0")}

    assert cli(stack, "stop", "worker").returncode == 0
    assert _get("/readyz")[0] == 200  # stopped by an operator: down on purpose
    assert _get("/healthz")[0] == 200  # alive: nothing critical failed
    stack.signal(signal.SIGTERM)
    finish(stack)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_operators_stop_is_not_a_failure_but_a_crash_is(tmp_path: Path) -> None:
    port = _free_port()
    crash = tmp_path / "crash"
    config = write_config(
        tmp_path,
        f"""
        version: 1
        settings: {{health_listen: "127.0.0.1:{port}"}}
        services:
          web:
            command: "sh -c 'test -e {crash} && exit 3; exec sleep 600'"
            max_restarts: 0
          keeper: {{command: "sleep 600"}}
        """,
    )
    tinit = start(config)

    def readyz() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        assert wait_for(lambda: up(tinit, "web", "keeper"), timeout=30)
        assert cli(tinit, "status").returncode == 0
        assert readyz() == 200

        assert cli(tinit, "stop", "web").returncode == 0
        done = cli(tinit, "status", "--json")
        assert done.returncode == 0, done.stdout
        web = {s["name"]: s for s in json.loads(done.stdout)}["web"]
        assert (web["state"], web["ready"], web["held"]) == ("stopped", False, True)
        table = cli(tinit, "status")
        assert table.returncode == 0
        assert [
            line.split()[1] for line in table.stdout.splitlines() if line.startswith("web")
        ] == ["stopped"]
        assert readyz() == 200

        # started again, web counts again: it crashes, gives up, and that is a failure
        crash.touch()
        assert cli(tinit, "start", "web").returncode == 0
        assert wait_for(lambda: status(tinit, "web")["web"]["state"] == "failed", timeout=30)
        failed = cli(tinit, "status")
        assert failed.returncode == 1, failed.stdout
        assert readyz() == 503
    finally:
        tinit.signal(signal.SIGTERM)
        result = finish(tinit)
    assert result.code == 0, result.stderr[-2000:]


def test_no_tinit_listening_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = subprocess.run(
        tinit_argv("status", "--control-socket", str(tmp_path / "none.sock")),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"tinit: no tinit is listening on {tmp_path / 'none.sock'}")


def test_status_round_trip_is_quick_enough_to_poll(stack: Tinit) -> None:
    """Not a benchmark: shows the client never waits on anything slow (e.g. a timeout)."""
    began = time.monotonic()
    assert cli(stack, "status").returncode == 0
    assert time.monotonic() - began < 5
    stack.signal(signal.SIGTERM)
    finish(stack)


def test_tinit_has_one_thread_with_control_socket_and_health_endpoint(stack: Tinit) -> None:
    """Regression: trio bound the control socket in a worker thread that lived on
    for ~10 s, and tinit forks services on the assumption it has no other thread."""
    assert os.listdir(f"/proc/{stack.pid}/task") == [str(stack.pid)]
    assert cli(stack, "restart", "worker").returncode == 0  # forks while serving
    assert os.listdir(f"/proc/{stack.pid}/task") == [str(stack.pid)]
    stack.signal(signal.SIGTERM)
    finish(stack)


SLOW_TO_STOP = (
    "version: 1\n"
    "services:\n"
    "  a: {command: 'sleep 600'}\n"
    "  slow:\n"
    '    command: "sh -c \'trap \\"sleep 1; exit 0\\" TERM; while :; do sleep 0.1; done\'"\n'
    "    stop_timeout: 10s\n"
)


def test_two_sighup_reloads_at_once_apply_once_and_tinit_lives(tmp_path: Path) -> None:
    config = write_config(tmp_path, SLOW_TO_STOP)
    tinit = start(config)
    assert wait_for(lambda: up(tinit, "a", "slow"), timeout=30)
    config.write_text("version: 1\nservices:\n  a: {command: 'sleep 600'}\n")
    tinit.signal(signal.SIGHUP)
    time.sleep(0.3)  # the first reload is still waiting for slow to stop
    tinit.signal(signal.SIGHUP)
    assert wait_for(lambda: set(status(tinit)) == {"a"}, timeout=30)
    time.sleep(0.5)
    assert cli(tinit, "status").returncode == 0  # still alive after both reloads
    tinit.signal(signal.SIGTERM)
    done = finish(tinit)
    assert done.code == 0, done.stderr[-2000:]
    reloads = done.named("config_reloaded")
    assert [r["removed"] for r in reloads] == [["slow"], []]
    assert len(done.named("service_starting", "slow")) == 1


def test_a_start_during_a_reload_that_removes_the_service_starts_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, SLOW_TO_STOP + "  quick: {command: 'sleep 600'}\n")
    tinit = start(config)
    assert wait_for(lambda: up(tinit, "a", "slow", "quick"), timeout=30)
    config.write_text("version: 1\nservices:\n  a: {command: 'sleep 600'}\n")

    def quick_stopped() -> bool:
        return any(
            '"service_stopped"' in line and '"quick"' in line
            for line in tinit.stderr_so_far().splitlines()
        )

    with ThreadPoolExecutor(1) as pool:
        reload = pool.submit(cli, tinit, "reload")
        # quick is gone, and the reload still waits 1 s for slow's trap
        assert wait_for(quick_stopped, timeout=10)
        assert cli(tinit, "start", "quick").returncode == 0
        assert reload.result(timeout=30).returncode == 0
    time.sleep(0.5)
    assert set(status(tinit)) == {"a"}
    tinit.signal(signal.SIGTERM)
    done = finish(tinit)
    assert done.code == 0, done.stderr[-2000:]
    assert len(done.named("service_starting", "quick")) == 1


def test_status_into_a_closed_pipe_is_quiet_not_an_internal_error(tmp_path: Path) -> None:
    """Regression: `tinit status --json | head -c1` ended in "internal error: BrokenPipeError"
    and exit 70. A reader that goes away now ends the client quietly with 141 (SIGPIPE)."""
    services = "".join(f"  s{i}: {{command: sleep 60}}\n" for i in range(40))
    config = tmp_path / "services.yaml"
    config.write_text(f"version: 1\nservices:\n{services}")
    tinit = start(config)
    try:
        sock = tinit.env["TINIT_CONTROL_SOCKET"]
        assert wait_for(lambda: os.path.exists(sock), timeout=20)
        r, w = os.pipe()
        os.close(r)  # the reader is gone before the first byte
        proc = subprocess.run(
            [*tinit_argv("status", "--json", "--control-socket", sock)],
            stdout=w, stderr=subprocess.PIPE, text=True, timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        os.close(w)
        assert proc.returncode == 141, proc.stderr
        assert proc.stderr == ""
    finally:
        tinit.signal(signal.SIGTERM)
        finish(tinit, timeout=30)
