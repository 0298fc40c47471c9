"""One-command mode (`tinit run -- CMD`), run for real as PID 1 of a new PID namespace."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.nsrun import (
    PYTHON,
    ROOT,
    Tinit,
    alive,
    imported_modules,
    py,
    run,
    tinit_argv,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_code_is_the_commands(code: int) -> None:
    """tinit exits with the command's own exit code."""
    rc, _, err = run("run", "--", "sh", "-c", f"exit {code}")
    assert rc == code
    assert err == ""  # quiet by default


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV, signal.SIGUSR1])
def test_death_by_signal_is_128_plus_n(signum: int) -> None:
    """A command killed by signal N makes tinit exit 128+N, as tini and shells do."""
    rc, _, _ = run("run", "--", "sh", "-c", f"kill -{signum} $$")
    assert rc == 128 + signum


def test_command_not_found_is_127(tmp_path: Path) -> None:
    rc, _, err = run("run", "--", "no-such-command-anywhere")
    assert rc == 127
    assert err == "tinit: no-such-command-anywhere: command not found\n"
    rc, _, err = run("run", "--", str(tmp_path / "missing"))
    assert (rc, err) == (127, f"tinit: {tmp_path / 'missing'}: command not found\n")


def test_command_not_executable_is_126(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    rc, _, err = run("run", "--", str(script))
    assert rc == 126
    assert err.count("\n") == 1 and err.startswith(f"tinit: {script}: ")
    rc, _, err = run("run", "--", str(tmp_path))  # a directory
    assert rc == 126
    assert err.startswith(f"tinit: {tmp_path}: ")


SIGNAL_RECORDER = r"""
import os, signal, sys, time
out, names = sys.argv[1], sys.argv[2].split(",")
r, w = os.pipe()
grandchild = os.fork()
who = "grandchild" if grandchild == 0 else "child"

def record(signum, frame):
    with open(out, "a") as f:
        f.write(f"{who} {signal.Signals(signum).name}\n")
    if signum == signal.SIGTERM:
        if who == "child":
            os.waitpid(grandchild, 0)
            os._exit(7)
        os._exit(0)

for name in names:
    signal.signal(getattr(signal, name), record)
if who == "grandchild":
    os.write(w, b"x")
else:
    os.read(r, 1)
    with open(out, "a") as f:
        f.write("ready\n")
while True:
    time.sleep(1)
"""


def test_signals_reach_the_command_and_its_process_group(tmp_path: Path) -> None:
    """TERM, INT, HUP, QUIT, USR1, USR2, WINCH sent to tinit reach the child and a
    grandchild in its group, once each; a child that handles TERM and exits 7
    makes tinit exit 7."""
    out = tmp_path / "signals.log"
    names = ["SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGTERM"]
    tinit = Tinit("run", "--", *py(SIGNAL_RECORDER), str(out), ",".join(names))
    assert wait_for(lambda: out.exists() and "ready" in out.read_text())
    for name in names:
        tinit.signal(getattr(signal, name))
        expected = {f"child {name}", f"grandchild {name}"}
        assert wait_for(lambda e=expected: e <= set(out.read_text().splitlines())), name
    rc, _, _ = tinit.wait()
    assert rc == 7
    lines = out.read_text().splitlines()
    for name in names:
        assert lines.count(f"child {name}") == 1, f"{name} delivered twice"
        assert lines.count(f"grandchild {name}") == 1


ZOMBIE_COUNT = r"""
import json
import os
def zombies():
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        count += 1
            except OSError:
                pass
    return count
"""

ORPHANS = (
    ZOMBIE_COUNT
    + r"""
import sys, time
for _ in range(200):
    if os.fork() == 0:
        if os.fork() == 0:
            time.sleep(0.05)
            os._exit(0)
        os._exit(0)
    os.wait()
deadline = time.monotonic() + 10
while zombies() and time.monotonic() < deadline:
    time.sleep(0.02)
time.sleep(0.1)
print("zombies", zombies())
"""
)


def test_double_forked_orphans_are_all_reaped() -> None:
    """200 double-forked orphans: none is left a zombie in the namespace."""
    rc, out, _ = run("run", "--", *py(ORPHANS))
    assert rc == 0
    assert out.strip() == "zombies 0"


ZOMBIE_DUMP = (
    ZOMBIE_COUNT
    + r"""
import sys, time
n = int(sys.argv[1])
maker = os.fork()
if maker == 0:
    for _ in range(n):
        if os.fork() == 0:
            os._exit(0)
    time.sleep(0.5)                  # every child is a zombie of the maker now
    print("made", zombies(), flush=True)
    os._exit(0)                      # ...and all of them pass to PID 1 at once
os.waitpid(maker, 0)
deadline = time.monotonic() + 20
while zombies() and time.monotonic() < deadline:
    time.sleep(0.02)
print("left", zombies())
"""
)


def test_zombie_dump_of_5000_is_drained() -> None:
    """5,000 zombies handed to PID 1 at once are all reaped."""
    rc, out, _ = run("run", "--", *py(ZOMBIE_DUMP), "5000", timeout=60)
    assert rc == 0
    made, left = out.split("\n")[:2]
    assert int(made.split()[1]) >= 4900  # the kernel may reap none itself: all are ours
    assert left == "left 0"


def test_signal_state_of_the_child_is_clean() -> None:
    """The command starts with no blocked or ignored signal, and no handler."""
    rc, status, _ = run("run", "--", "cat", "/proc/self/status")
    assert rc == 0
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    for mask in ("SigBlk", "SigIgn", "SigCgt"):
        assert int(fields[mask], 16) == 0, mask


def test_inherited_fds_reach_the_command_and_tinits_own_do_not(tmp_path: Path) -> None:
    """As with tini, the command gets every fd tinit was given (a pipe, a socket), and
    none of tinit's own; tinit keeps no copy, so a pipe's reader sees EOF when the
    command closes its end."""
    r, w = os.pipe()
    os.set_inheritable(w, True)
    script = (
        "import os, sys, time\n"
        f"os.write({w}, b'through-the-pipe\\n'); os.close({w})\n"
        "time.sleep(5)\n"
        "print(' '.join(os.listdir('/proc/self/fd')))\n"
    )
    try:
        # Not under unshare, which would hold a copy of the pipe itself.
        tinit = Tinit("run", "--", PYTHON, "-c", script, pass_fds=(w,), namespace=False)
        os.close(w)
        w = -1
        started = time.monotonic()
        with os.fdopen(r, "rb") as reader:
            r = -1
            got = reader.read()  # EOF: neither tinit nor the command still holds the pipe
        assert time.monotonic() - started < 4, "tinit kept a copy of the write end"
        rc, fds, _ = tinit.wait(20)
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    assert rc == 0
    assert got == b"through-the-pipe\n"
    # 0-2 and the listdir's own fd: nothing tinit opened for itself, nor the closed pipe
    assert len(set(fds.split()) - {"0", "1", "2"}) == 1, fds


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None, reason="needs systemd-socket-activate"
)
def test_socket_activation_passes_the_socket_and_names_the_command(tmp_path: Path) -> None:
    """Under systemd-socket-activate, the listening socket reaches the command as fd 3
    and LISTEN_PID names the command, not tinit, so sd_listen_fds() accepts it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = tmp_path / "served"
    command = (
        "import os, socket, sys\n"
        "assert os.environ['LISTEN_PID'] == str(os.getpid()), os.environ['LISTEN_PID']\n"
        "assert os.environ['LISTEN_FDS'] == '1'\n"
        "s = socket.socket(fileno=3)\n"
        "c, _ = s.accept(); c.sendall(b'hello from fd 3'); c.close()\n"
        f"open({str(served)!r}, 'w').write(os.environ['LISTEN_PID'])\n"
    )
    # systemd-socket-activate sets LISTEN_PID to its own pid, then execs tinit in place.
    argv = ["systemd-socket-activate", "-l", f"127.0.0.1:{port}",
            *tinit_argv("run", "--", PYTHON, "-c", command)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        reply = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not reply:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    reply = conn.recv(100)
            except OSError:
                time.sleep(0.05)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert reply == b"hello from fd 3"
    assert proc.returncode == 0, err
    # The command saw its own pid, which is not tinit's (the activator's, after exec).
    assert served.read_text() != str(proc.pid)


def test_tinit_is_pid_1_and_the_command_its_child() -> None:
    rc, out, _ = run("run", "--", "sh", "-c", "echo $$ $PPID; cat /proc/1/comm")
    assert rc == 0
    pid, ppid, comm = out.split()
    assert (pid, ppid) == ("2", "1")
    assert comm.startswith("python")


def test_leftovers_get_sigterm_when_the_command_exits(tmp_path: Path) -> None:
    """When the command exits, what it left behind gets SIGTERM; tinit waits for it."""
    marker = tmp_path / "got-term"
    leftover = (
        "import os, signal, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').close(),"
        " time.sleep(0.3), os._exit(0)))\n"
        "    time.sleep(60)\n"
        "    os._exit(1)\n"
        "time.sleep(0.2)\n"
    )
    start = time.monotonic()
    rc, _, _ = run("run", "--", *py(leftover))
    assert rc == 0
    assert marker.exists()
    assert time.monotonic() - start < 5  # well before the 5 s kill


def test_leftovers_that_ignore_sigterm_are_killed_after_the_stop_timeout() -> None:
    stubborn = (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    time.sleep(60)\n"
    )
    start = time.monotonic()
    rc, _, _ = run("run", "--stop-timeout", "500ms", "--", *py(stubborn))
    elapsed = time.monotonic() - start
    assert rc == 0
    assert 0.5 <= elapsed < 10


def test_a_command_that_leaves_nothing_never_loads_the_event_loop() -> None:
    """No leftovers, nothing to wait for with a deadline: trio is never imported.

    That is what keeps a one-command tinit as small and quick as the
    interpreter; the command is not Python, so only tinit's imports show.
    """
    rc, _, err = run(
        "run", "--", "sh", "-c", "sleep 0.2; exit 3", env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert rc == 3
    imported = imported_modules(err)
    assert "tinit.command" in imported  # the listing is real
    assert "trio" not in imported


def test_leftovers_load_the_event_loop_and_are_stopped_with_it() -> None:
    rc, _, err = run(
        "run",
        "--stop-timeout",
        "300ms",
        "--",
        "sh",
        "-c",
        "(trap '' TERM; exec sleep 30) & exit 4",
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert rc == 4
    assert "trio" in imported_modules(err)


def test_signals_and_orphans_are_handled_while_no_event_loop_runs(tmp_path: Path) -> None:
    """Orphans exiting and a forwarded signal, all before the command ends."""
    marker = tmp_path / "got-usr1"
    script = (
        "import os, signal, sys, time\n"
        "for _ in range(50):\n"
        "    if os.fork() == 0:\n"
        "        if os.fork() == 0: os._exit(0)\n"  # an orphan for PID 1
        "        os._exit(0)\n"
        f"signal.signal(signal.SIGUSR1, lambda *a: (open({str(marker)!r}, 'w').close(), sys.exit(7)))\n"
        "time.sleep(30)\n"
    )
    tinit = Tinit("run", "--log-level", "debug", "--", *py(script))
    try:
        assert wait_for(lambda: tinit.stderr_so_far().count("orphan_reaped") >= 50, timeout=15)
        tinit.signal(signal.SIGUSR1)
        rc, _, _ = tinit.wait(15)
    finally:
        tinit.kill()
    assert rc == 7
    assert marker.exists()


def test_bad_command_line_is_one_line_and_exit_2() -> None:
    for args in (
        ("bogus",),
        ("run", "--log-level", "loud", "--", "true"),
        ("run", "--"),
        ("run", "a.yaml", "--", "true"),
        ("run", "--stop-timeout", "soon", "--", "true"),
    ):
        rc, out, err = run(*args)
        assert rc == 2, args
        assert err.count("\n") == 1 and err.startswith("tinit: "), (args, err)
        assert "Traceback" not in err and out == ""


def test_bad_environment_twin_is_a_usage_error() -> None:
    rc, _, err = run("run", "--", "true", env={"TINIT_LOG_LEVEL": "chatty"})
    assert rc == 2
    assert err == (
        "tinit: TINIT_LOG_LEVEL: unknown value 'chatty' "
        "(expected one of: debug, info, warning, error)\n"
    )


def test_debug_logging_reports_the_exit() -> None:
    rc, _, err = run("run", "--log-level", "debug", "--log-format", "json", "--", "true")
    assert rc == 0
    assert '"event": "command_exited"' in err
    assert '"exit_code": 0' in err


def test_not_pid1_reaps_orphans_as_subreaper(tmp_path: Path) -> None:
    """Not PID 1: orphans come to tinit (child subreaper), and it outlives them."""
    record = tmp_path / "orphan"
    orphan = (
        "import os, signal, sys, time\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(0.2)\n"
        f"        open({str(record)!r}, 'w').write(str(os.getppid()))\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "time.sleep(0.5)\n"
    )
    tinit = Tinit("run", "--", *py(orphan), namespace=False)
    rc, _, _ = tinit.wait()
    assert rc == 0
    assert int(record.read_text()) == tinit.pid  # reparented to tinit, not to init


def test_not_pid1_sigkill_of_tinit_leaves_no_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    tinit = Tinit(
        "run",
        "--",
        "sh",
        "-c",
        f"echo $$ > {pidfile}; exec sleep 60",
        namespace=False,
    )
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    child = int(pidfile.read_text())
    assert alive(child)
    tinit.signal(signal.SIGKILL)
    tinit.wait()
    assert wait_for(lambda: not alive(child), timeout=5)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_job_control_signals_never_stop_tinit(tmp_path: Path) -> None:
    """TSTP, TTIN and TTOU sent to tinit (not PID 1, where they would stop it by
    default) leave tinit running; TSTP and CONT are passed to the command."""
    pidfile = tmp_path / "pid"
    tinit = Tinit("run", "--", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 60", namespace=False)
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    child = int(pidfile.read_text())
    for signum in (signal.SIGTTIN, signal.SIGTTOU, signal.SIGTSTP):
        tinit.signal(signum)
    assert wait_for(lambda: _state(child) == "T")  # the command was stopped...
    time.sleep(0.2)
    assert _state(tinit.pid) in ("S", "R")  # ...tinit was not
    tinit.signal(signal.SIGCONT)
    assert wait_for(lambda: _state(child) in ("S", "R"))
    tinit.signal(signal.SIGTERM)
    rc, _, _ = tinit.wait()
    assert rc == 128 + signal.SIGTERM


def _sigterm_held_or_caught(pid: int) -> bool:
    """True once tinit itself (not unshare's child before its exec) holds or handles TERM."""
    try:
        if not Path(f"/proc/{pid}/comm").read_text().startswith("python"):
            return False  # still unshare, between its fork and its exec
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    bit = 1 << (signal.SIGTERM - 1)
    return bool((int(fields["SigBlk"], 16) | int(fields["SigCgt"], 16)) & bit)


@pytest.mark.parametrize("attempt", range(10))
def test_sigterm_right_at_start_is_held_not_lost(attempt: int) -> None:
    """Regression: signals were blocked only after the command line and config
    were read, and as PID 1 a SIGTERM in that window was dropped by the kernel,
    so `docker stop` right after `docker run` waited for SIGKILL. Once tinit's
    code runs, TERM is held (or handled) and reaches the command."""
    tinit = Tinit("run", "--", "sleep", "60")
    assert wait_for(lambda: _sigterm_held_or_caught(tinit.pid), interval=0.0005)
    tinit.signal(signal.SIGTERM)
    rc, _, _ = tinit.wait(timeout=20)
    assert rc == 128 + signal.SIGTERM


def test_run_without_a_config_names_both_ways_to_run() -> None:
    """`tinit run` alone, with no /etc/tinit/services.yaml, says how to run either mode."""
    if os.path.lexists("/etc/tinit/services.yaml"):
        pytest.skip("this machine has an /etc/tinit/services.yaml")
    env = {k: v for k, v in os.environ.items() if k != "TINIT_CONFIG"}
    proc = subprocess.run(
        tinit_argv("run"), env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("tinit: /etc/tinit/services.yaml: can't read it")
    assert "tinit run FILE" in lines[1] and "tinit run -- CMD" in lines[1]
    assert len(lines) == 2


def test_config_warnings_are_logged_at_warning_level(tmp_path: Path) -> None:
    """A config warning still shows with --log-level warning."""
    config = tmp_path / "services.yaml"
    # forward_signals listing a signal twice is a warning, not an error
    config.write_text(
        "version: 1\nsettings: {forward_signals: [USR1, USR1]}\n"
        "services:\n  job: {command: 'true', oneshot: true}\n"
    )
    rc, _, err = run("run", "--log-level", "warning", "--log-format", "json", str(config))
    assert rc == 0
    (line,) = [json.loads(x) for x in err.splitlines() if "config_warning" in x]
    assert line["level"] == "warning"
    assert "listed twice" in line["problem"]
