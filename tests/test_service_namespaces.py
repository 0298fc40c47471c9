"""Per-service namespaces end to end: private_tmp, read-only and hidden paths, network: none, pid: private."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.nsrun import ROOT, tinit_argv, wait_for
from tests.svcrun import control_path, finish, run_config, start, write_config

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="per-service namespaces need root"),
]


def test_private_tmp_is_private_and_gone_after_the_service(tmp_path: Path) -> None:
    marker = f"tinit-private-{os.getpid()}"
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          writer:
            command: "sh -c 'echo secret > /tmp/{marker}; ls /tmp/{marker}; sleep 0.5'"
            namespaces: {{private_tmp: true}}
            restart: never
          reader:
            command: "sh -c 'sleep 0.2; ls /tmp/{marker} 2>&1 || echo not-visible'"
            namespaces: {{private_tmp: true}}
            restart: never
        """,
    )
    assert result.code == 0, result.stderr
    assert result.output("writer") == [f"/tmp/{marker}"]
    assert result.output("reader")[-1] == "not-visible"
    assert not Path(f"/tmp/{marker}").exists()  # not on the host, then or now


def test_read_only_and_hidden_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("k")
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          app:
            command: "sh -c 'touch {data}/x 2>/dev/null && echo writable || echo read-only; ls -A {secret} | wc -l'"
            namespaces: {{read_only_paths: ["{data}"], hidden_paths: ["{secret}"]}}
            restart: never
        """,
    )
    assert result.output("app") == ["read-only", "0"]
    assert (secret / "key").read_text() == "k"  # the host still sees it


def test_network_none_cannot_reach_another_services_loopback(tmp_path: Path) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          server:
            command: [PYTHON, -c, "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 18801)); s.listen(); time.sleep(3)"]
            restart: never
          isolated:
            command: [PYTHON, -c, "import socket, time; time.sleep(0.5);\\ntry:\\n    socket.create_connection(('127.0.0.1', 18801), timeout=2); print('reached')\\nexcept OSError as e:\\n    print('refused', sorted(n for _, n in socket.if_nameindex()))"]
            namespaces: {network: none}
            restart: never
          neighbour:
            command: [PYTHON, -c, "import socket, time; time.sleep(0.5); socket.create_connection(('127.0.0.1', 18801), timeout=2); print('reached')"]
            restart: never
        """,
    )
    assert result.output("isolated") == ["refused ['lo']"]
    assert result.output("neighbour") == ["reached"]


ORPHANS_IN_PRIVATE_PID = r"""
import os, time
print("pid", os.getpid(), "init", open("/proc/1/comm").read().strip(), flush=True)
for _ in range(20):
    if os.fork() == 0:
        if os.fork() == 0:
            time.sleep(0.05)
            os._exit(0)
        os._exit(0)
    os.wait()
time.sleep(0.5)
zombies = 0
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            if open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                zombies += 1
        except OSError:
            pass
print("zombies", zombies, "processes", sum(p.isdigit() for p in os.listdir("/proc")), flush=True)
"""


def test_pid_private_sees_its_own_namespace_and_its_orphans_are_reaped(tmp_path: Path) -> None:
    script = tmp_path / "orphans.py"
    script.write_text(ORPHANS_IN_PRIVATE_PID)
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          app:
            command: [PYTHON, "{script}"]
            namespaces: {{pid: private}}
            restart: never
        """,
    )
    assert result.code == 0, result.stderr
    first, second = result.output("app")
    # PID 1 of the service's namespace is tinit's init for it; the service is its child
    assert first.startswith("pid 2 init python")
    assert second == "zombies 0 processes 2"


def test_pid_private_service_stops_on_sigterm_and_reports_its_exit(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          app:
            command: [PYTHON, -c, "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(3)); open('{ready}', 'w').close(); time.sleep(60)"]
            namespaces: {{pid: private}}
          crash:
            command: "sh -c 'kill -SEGV $$$$'"
            namespaces: {{pid: private}}
            restart: never
        """,
    )
    tinit = start(config)
    assert wait_for(ready.exists)
    time.sleep(0.3)
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert result.code == 0
    exits = {e["service"]: e for e in result.named("service_exited")}
    assert exits["app"]["exit_code"] == 3  # the TERM reached the service, once
    assert exits["crash"]["exit_code"] == 139  # a signal death, as 128+N through its init


def test_network_none_with_a_tcp_probe_is_refused(tmp_path: Path) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          web:
            command: "sleep 60"
            namespaces: {network: none}
            ready: {tcp: "127.0.0.1:8000"}
        """,
    )
    assert result.code == 2
    assert "network: none" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_cap_sys_admin_namespaces_are_refused_with_one_line(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          app: {command: "true", namespaces: {private_tmp: true}}
        """,
    )
    done = subprocess.run(
        [
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-sys_admin",
            *tinit_argv("run", str(config)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TINIT_CONTROL_SOCKET": control_path()},
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"tinit: {config}: services.app.namespaces: ")
    assert "CAP_SYS_ADMIN" in done.stderr
