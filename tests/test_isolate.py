"""`tinit run --isolate`: tinit makes the namespace set itself and is PID 1 inside."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.nsrun import ROOT, Tinit, alive, tinit_argv, wait_for
from tests.svcrun import control_path, write_config

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="--isolate tests run as root"),
]


def _mounts() -> set[str]:
    return {line.split(" - ")[0].split(" ", 4)[4] for line in open("/proc/self/mountinfo")}


def test_isolated_command_sees_its_own_namespaces(tmp_path: Path) -> None:
    queue = subprocess.run(["ipcmk", "-Q"], capture_output=True, text=True, check=True)
    queue_id = queue.stdout.split()[-1]
    host_queues = subprocess.run(["ipcs", "-q"], capture_output=True, text=True, check=True)
    assert host_queues.stdout.count("\n0x") >= 1
    before = _mounts()
    try:
        tinit = Tinit(
            "run",
            "--isolate",
            "--hostname",
            "box1",
            "--",
            "sh",
            "-c",
            "cat /proc/1/comm; echo $$; hostname; ls /proc | grep -c '^[0-9]'; ipcs -q | grep -c '^0x' || true",
            namespace=False,
        )
        rc, out, err = tinit.wait()
    finally:
        subprocess.run(["ipcrm", "-q", queue_id], check=False)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("python")  # tinit is PID 1 inside
    assert lines[1] == "2"  # and the command its first child
    assert lines[2] == "box1"
    assert int(lines[3]) <= 5  # tinit, sh and the pipeline: nothing of the host
    assert lines[4] == "0"  # the host's message queue is not visible
    assert _mounts() == before  # the fresh /proc stayed inside


def test_exit_code_passes_through_and_default_hostname_is_the_command() -> None:
    tinit = Tinit("run", "--isolate", "--", "sh", "-c", "hostname; exit 7", namespace=False)
    rc, out, _ = tinit.wait()
    assert (rc, out.strip()) == (7, "sh")


def test_signals_to_the_outer_process_reach_the_services(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    config = write_config(
        tmp_path,
        f"""
        version: 1
        settings: {{isolate: true, control_socket: null}}
        services:
          app:
            command: [PYTHON, -c, "import os, signal, sys, time; open('{pidfile}', 'w').write(open('/proc/self/stat').read().split()[0] + ' ' + os.uname().nodename); signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(60)"]
        """,
        name="box2.yaml",
    )
    tinit = Tinit("run", str(config), namespace=False)
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().count(" ") == 1)
    inner_pid, hostname = pidfile.read_text().split()
    assert hostname == "box2"  # the config file's name
    assert int(inner_pid) == 2
    # the inner PID 1 is the outer process's only child
    inner = int(Path(f"/proc/{tinit.pid}/task/{tinit.pid}/children").read_text().split()[0])
    app = int(Path(f"/proc/{inner}/task/{inner}/children").read_text().split()[0])
    time.sleep(0.3)
    tinit.signal(signal.SIGTERM)
    rc, _, err = tinit.wait()
    assert rc == 0, err
    assert not alive(inner)
    assert not alive(app)


def test_isolate_net_has_only_loopback() -> None:
    tinit = Tinit(
        "run",
        "--isolate=net",
        "--",
        "python3",
        "-c",
        "import socket; print(sorted(n for _, n in socket.if_nameindex()))",
        namespace=False,
    )
    rc, out, _ = tinit.wait()
    assert (rc, out.strip()) == (0, "['lo']")


def test_without_cap_sys_admin_isolate_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-sys_admin",
            *tinit_argv("run", "--isolate", "--", "true"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TINIT_CONTROL_SOCKET": control_path()},
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("tinit: --isolate: cannot ")
    assert "Traceback" not in done.stderr


def test_isolate_before_the_config_path_does_not_swallow_it(tmp_path: Path) -> None:
    """Regression: --isolate took an optional value, so `tinit run --isolate FILE`
    read FILE as that value and refused it."""
    config = write_config(
        tmp_path,
        """
        version: 1
        settings: {control_socket: null}
        services:
          app: {command: "hostname", restart: never}
        """,
        name="box3.yaml",
    )
    rc, out, err = Tinit("run", "--isolate", str(config), namespace=False).wait()
    assert rc == 0, err
    assert out.strip().endswith("box3")
