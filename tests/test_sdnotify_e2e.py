"""sd_notify readiness end to end: tinit as PID 1, real senders, a hostile one.

A service with ``ready: {sd_notify: true}`` is ready when it sends
``READY=1`` to its ``NOTIFY_SOCKET``: Debian's postgres (built with
libsystemd) and systemd's own ``systemd-notify`` are the real senders; a
Python sender stands in where a test needs a process to misbehave on cue.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.nsrun import ROOT, Tinit, tinit_argv, wait_for
from tests.svcrun import Result, finish, start, write_config

pytestmark = pytest.mark.timeout(120)

#: a service that sends what its argv says to NOTIFY_SOCKET, then sleeps
SENDER = """
import os, socket, sys, time
address = os.environ["NOTIFY_SOCKET"]
assert address.startswith("@"), address
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for text in sys.argv[1:]:
    if text.startswith("sleep="):
        time.sleep(float(text[6:]))
    else:
        s.sendto(text.replace("\\\\n", "\\n").encode(), "\\0" + address[1:])
time.sleep(600)
"""


def cli(tinit: Tinit, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tinit_argv(*args), env=tinit.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def status(tinit: Tinit) -> dict[str, dict[str, Any]]:
    """Every service's status, once tinit's control socket answers (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        done = cli(tinit, "status", "--json")
        if done.returncode in (0, 1) and done.stdout:
            return {s["name"]: s for s in json.loads(done.stdout)}
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.05)


def stop(tinit: Tinit) -> Result:
    tinit.signal(signal.SIGTERM)
    return finish(tinit, 60)


def sender_script(tmp_path: Path) -> Path:
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    return script


def test_ready_and_status_come_from_the_socket_and_strangers_are_refused(tmp_path: Path) -> None:
    script = sender_script(tmp_path)
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          app:
            command: [PYTHON, "{script}", "STATUS=warming up", "sleep=1.5",
                      "MAINPID=1", "READY=1\\\\nSTATUS=serving\\\\nX-UNKNOWN=1"]
            ready: {{sd_notify: true}}
          after:
            command: "sh -c 'echo app was ready; exec sleep 600'"
            depends_on: {{app: ready}}
        """,
    )
    tinit = start(config)
    try:
        assert wait_for(lambda: status(tinit)["app"].get("status_text") == "warming up", 10)
        early = status(tinit)
        assert early["app"]["ready"] is False
        assert early["after"]["state"] == "pending"
        assert wait_for(lambda: status(tinit)["after"]["state"] == "running", 10)
        app = status(tinit)["app"]
        assert app["ready"] is True
        assert app["status_text"] == "serving"
        assert "main_pid" not in app  # MAINPID=1 is tinit itself: refused
        table = cli(tinit, "status").stdout
        assert "STATUS" in table.splitlines()[0]
        assert "serving" in table
    finally:
        result = stop(tinit)
    refused = result.named("service_main_pid_refused", "app")
    assert refused and refused[0]["pid"] == 1
    ready_at = result.events.index(result.named("service_ready", "app")[0])
    notified_at = result.events.index(result.named("service_notify_ready", "app")[0])
    assert notified_at < ready_at


def test_a_restarted_run_waits_for_its_own_ready(tmp_path: Path) -> None:
    """The first run said READY=1 and failed: the second one is not ready until it says so."""
    script = sender_script(tmp_path)
    flag = tmp_path / "second"
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          app:
            command: ["sh", "-c", "if [ -e {flag} ]; then exec sleep 600; fi; touch {flag}; PYTHON {script} READY=1 sleep=0.3 & sleep 1; exit 3"]
            ready: {{sd_notify: true}}
            backoff: {{initial: 100ms}}
        """,
    )
    tinit = start(config)
    try:
        assert wait_for(lambda: status(tinit)["app"]["restarts"] >= 1, 15)
        time.sleep(1.0)
        app = status(tinit)["app"]
        assert app["state"] == "starting" and app["ready"] is False
    finally:
        stop(tinit)


@pytest.mark.skipif(not shutil.which("systemd-notify"), reason="needs systemd-notify (systemd)")
def test_systemd_notify_ready_and_status(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          app:
            command: "sh -c 'systemd-notify --status=\\"starting up\\"; sleep 0.5; systemd-notify --ready --pid=$$$$ --status=\\"serving requests\\"; exec sleep 600'"
            ready: {sd_notify: true, start_timeout: 30s}
        """,
    )
    tinit = start(config)
    try:
        assert wait_for(lambda: status(tinit)["app"]["ready"], 20)
        app = status(tinit)["app"]
        assert app["status_text"] == "serving requests"
        assert app["main_pid"] == app["pid"]  # --pid named the shell, the main process itself
    finally:
        result = stop(tinit)
    assert not result.named("service_notify_dropped", "app")


def test_watchdog_missed_restarts_the_service(tmp_path: Path) -> None:
    script = sender_script(tmp_path)
    argv = json.dumps(["PYTHON", str(script), "READY=1", *["WATCHDOG=1", "sleep=0.2"] * 5])
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          app:
            command: {argv}
            ready: {{sd_notify: true, watchdog: 1s}}
            backoff: {{initial: 100ms}}
          env:
            command: "sh -c 'echo usec=$$WATCHDOG_USEC socket=$$NOTIFY_SOCKET; exec sleep 600'"
            ready: {{sd_notify: true, watchdog: 1500ms, start_timeout: null}}
        """,
    )
    tinit = start(config)
    try:
        assert wait_for(lambda: status(tinit)["app"]["restarts"] >= 1, 20)
        assert wait_for(lambda: status(tinit)["app"]["ready"], 10)
    finally:
        result = stop(tinit)
    missed = result.named("service_watchdog_missed", "app")
    assert missed and missed[0]["since_ping"] >= 1.0
    # pinged for about a second after READY=1: the first miss comes after that, not before
    lines = result.output("env")
    assert lines and lines[0].startswith("usec=1500000 socket=@tinit-notify-env-")


HOSTILE = """
import array, os, socket, sys, time
while not os.path.exists(sys.argv[4]):
    time.sleep(0.05)
address = "\\0" + open(sys.argv[1]).read().strip()[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.settimeout(2)
def send(data, fds=()):
    try:
        if fds:
            s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))], 0, address)
        else:
            s.sendto(data, address)
    except OSError:
        pass
send(b"READY=1")                      # not of the service: must not count
send(b"READY=1" + b"x" * 70000)       # oversized
r, w = os.pipe()
for _ in range(50):
    send(b"FDSTORE=1", [r, w, r])     # fds to keep open in tinit, if it were careless
send(b"FDSTORE=1", [r] * 60)          # more than tinit's room: the kernel cuts them
end = time.monotonic() + float(sys.argv[2])
sent = 0
while time.monotonic() < end:
    send(b"READY=1\\nSTATUS=flood")
    sent += 1
open(sys.argv[3], "w").write(str(sent))
time.sleep(600)
"""

VICTIM = """
import os, socket, sys, time
open(sys.argv[1] + ".tmp", "w").write(os.environ["NOTIFY_SOCKET"])
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\\nSTATUS=really ready", "\\0" + os.environ["NOTIFY_SOCKET"][1:])
time.sleep(600)
"""


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("cgroups", ["auto", "off"])
def test_a_hostile_sender_is_dropped_counted_and_leaks_nothing(
    tmp_path: Path, cgroups: str
) -> None:
    address, go, done = tmp_path / "address", tmp_path / "go", tmp_path / "done"
    attack = tmp_path / "attack"
    (tmp_path / "hostile.py").write_text(HOSTILE)
    (tmp_path / "victim.py").write_text(VICTIM)
    config = write_config(
        tmp_path,
        f"""
        version: 1
        settings: {{cgroups: {cgroups}}}
        services:
          victim:
            command: [PYTHON, "{tmp_path / "victim.py"}", "{address}", "{go}"]
            ready: {{sd_notify: true, start_timeout: null}}
          hostile:
            command: [PYTHON, "{tmp_path / "hostile.py"}", "{address}", "3", "{done}", "{attack}"]
            depends_on: {{victim: started}}
        """,
    )
    tinit = start(config)
    try:
        assert wait_for(address.exists, 10)
        assert wait_for(lambda: status(tinit)["hostile"]["state"] == "running", 10)
        time.sleep(0.2)
        before = _fds(tinit.pid)
        attack.touch()
        slowest = 0.0
        while not done.exists():
            began = time.monotonic()
            assert status(tinit)["victim"]["ready"] is False
            slowest = max(slowest, time.monotonic() - began)
            time.sleep(0.1)
        assert slowest < 2.0, f"status took {slowest:.2f}s during the flood"
        assert int(done.read_text()) > 0
        time.sleep(0.5)  # what was queued is drained
        assert _fds(tinit.pid) <= before
        victim = status(tinit)["victim"]
        assert victim["ready"] is False and "status_text" not in victim
        go.touch()  # the service itself still gets through once the flood is over
        assert wait_for(lambda: status(tinit)["victim"]["ready"], 10)
        assert status(tinit)["victim"]["status_text"] == "really ready"
        socket_name = address.read_text().strip()[1:]
        assert socket_name in Path("/proc/net/unix").read_text()
        assert cli(tinit, "stop", "victim").returncode == 0
        assert socket_name not in Path("/proc/net/unix").read_text()  # gone with its service
    finally:
        result = stop(tinit)
    reasons = {e["reason"] for e in result.named("service_notify_dropped", "victim")}
    assert {"stranger", "oversized", "truncated", "rate"} <= reasons


POSTGRES = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))


@pytest.mark.skipif(not POSTGRES, reason="needs Debian's postgresql (bash .ci/setup installs it)")
def test_postgres_is_ready_when_it_says_so(tmp_path: Path) -> None:
    """Debian's postgres, built with libsystemd, sends READY=1 once it takes connections."""
    assert (
        "libsystemd"
        in subprocess.run(
            ["ldd", str(POSTGRES[-1])], capture_output=True, text=True, check=True
        ).stdout
    )
    bindir = POSTGRES[-1].parent
    base = Path(tempfile.mkdtemp(prefix="tinit-pg-", dir="/tmp"))
    try:
        shutil.chown(base, "postgres", "postgres")
        data, sockets = base / "data", base / "run"
        config = write_config(
            tmp_path,
            f"""
            version: 1
            services:
              initdb:
                command: [{bindir}/initdb, -D, "{data}", --auth=trust, -U, postgres]
                user: postgres
                oneshot: true
                env: {{LC_ALL: C}}
              db:
                command: [{bindir}/postgres, -D, "{data}", -k, "{sockets}", -c, "listen_addresses="]
                user: postgres
                depends_on: {{initdb: completed}}
                ready: {{sd_notify: true, start_timeout: 60s}}
                stop_signal: SIGINT
              client:
                command: [sh, -c, 'pg_isready -h "{sockets}" && psql -h "{sockets}" -U postgres -tAc "select 40 + 2"']
                user: postgres
                oneshot: true
                restart: never
                depends_on: {{db: ready}}
            """,
        )
        os.mkdir(sockets)
        shutil.chown(sockets, "postgres", "postgres")
        tinit = start(config)
        try:
            assert wait_for(lambda: status(tinit)["client"].get("completed") is True, 60)
            db = status(tinit)["db"]
            assert db["ready"] is True
        finally:
            result = stop(tinit)
        assert "42" in result.output("client")
        assert any("accepting connections" in line for line in result.output("client"))
        notified = result.named("service_notify_ready", "db")
        assert notified, "postgres never sent READY=1"
        assert not result.named("service_notify_dropped", "db")
        # postgres says STOPPING=1 as it shuts down: noted, nothing more
        assert [e["state"] for e in result.named("service_notify_state", "db")] == ["stopping"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


#: a Python that user nobody may run (the tests' own may live under /root)
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="per-service namespaces need root")
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason="needs /usr/bin/python3")
@pytest.mark.parametrize("cgroups", ["auto", "off"])
def test_a_service_in_namespaces_of_its_own_reaches_its_socket(
    tmp_path: Path, cgroups: str
) -> None:
    """Its own mount and PID namespaces, another user, / read-only: READY=1 still gets through.

    The sender's pid reaches tinit in tinit's own PID namespace, so the run
    still recognises it, with its cgroup or (cgroups off) its process group.
    """
    send = (
        "import os, socket, time; a = os.environ['NOTIFY_SOCKET'];"
        " s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);"
        " s.sendto(b'STATUS=inside uid %d' % os.getuid() + bytes([10]) + b'READY=1', chr(0) + a[1:]);"
        " time.sleep(600)"
    )
    config = write_config(
        tmp_path,
        f"""
        version: 1
        settings: {{cgroups: {cgroups}}}
        services:
          app:
            command: [{SYSTEM_PYTHON}, -c, "{send}"]
            user: nobody
            ready: {{sd_notify: true, start_timeout: 20s}}
            namespaces:
              private_tmp: true
              read_only_paths: [/]
              pid: private
        """,
    )
    tinit = start(config)
    try:
        assert wait_for(lambda: status(tinit)["app"]["ready"], 20)
        assert status(tinit)["app"]["status_text"] == f"inside uid {NOBODY}"
    finally:
        result = stop(tinit)
    assert not result.named("service_notify_dropped", "app")


MAIN_ELSEWHERE = """
import os, signal, socket, sys, time
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.setsid()  # out of the main process's group: only its cgroup still holds it
    signal.signal(signal.SIGUSR1, lambda *a: open(sys.argv[1], "w").write("usr1"))
    os.write(w, b"x")
    while True:
        time.sleep(1)
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
os.read(r, 1)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(f"MAINPID={child}\\nREADY=1".encode(), "\\0" + os.environ["NOTIFY_SOCKET"][1:])
time.sleep(600)
"""


def test_mainpid_of_the_run_is_shown_and_signalled(tmp_path: Path) -> None:
    script, got = tmp_path / "main.py", tmp_path / "got"
    script.write_text(MAIN_ELSEWHERE)
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          app:
            command: [PYTHON, "{script}", "{got}"]
            ready: {{sd_notify: true}}
        """,
    )
    tinit = start(config)
    try:
        assert wait_for(lambda: status(tinit)["app"]["ready"], 10)
        app = status(tinit)["app"]
        if '"cgroups_ready"' not in tinit.stderr_so_far():
            pytest.skip("no cgroups here: a process outside the main session is not of the run")
        assert app["main_pid"] != app["pid"]
        assert cli(tinit, "signal", "SIGUSR1", "app").returncode == 0
        assert wait_for(got.exists, 5)
    finally:
        result = stop(tinit)
    taken = result.named("service_main_pid", "app")
    assert taken and taken[0]["pid"] == app["main_pid"]
