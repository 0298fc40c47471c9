"""tinit against the people it must not trust: network peers, other local users, closed fds.

Each test is a regression test for an attack or an accident that once
worked (docs/security.md lists them): tinit runs for real, as PID 1 of a
fresh PID namespace where that matters, and every test is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.nsrun import PYTHON, ROOT, Tinit, tinit_argv, wait_for
from tests.svcrun import finish, start, write_config
from tinit.control import MAX_CONNECTIONS, check_directory
from tinit.errors import ControlError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(120)


# -- closed standard fds ----------------------------------------------------------------------


def _close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def test_services_mode_with_stdout_closed_gives_a_raw_service_dev_null(tmp_path: Path) -> None:
    """Before: a traceback and exit 1, and the raw service wrote into tinit's epoll fd."""
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          look:
            command: [PYTHON, -c, "import os, sys; print('fd1=' + os.readlink('/proc/self/fd/1'), file=sys.stderr)"]
            oneshot: true
            output: raw
        """,
    )
    tinit = start(config, preexec_fn=lambda: _close_fds(1))
    result = finish(tinit)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "fd1=/dev/null" in result.stderr.splitlines()


def test_one_command_mode_with_stdout_and_stderr_closed_keeps_the_exit_code() -> None:
    """Before: exit 1 instead of the command's 5."""
    tinit = Tinit("run", "--", "sh", "-c", "exit 5", preexec_fn=lambda: _close_fds(1, 2))
    code, _, _ = tinit.wait()
    assert code == 5


def test_the_command_inherits_dev_null_for_a_closed_stdin() -> None:
    """fd 0 closed: the command gets /dev/null there, not a closed fd (nor one of tinit's)."""
    probe = "import os; print(os.readlink('/proc/self/fd/0'))"
    tinit = Tinit("run", "--", PYTHON, "-c", probe, preexec_fn=lambda: _close_fds(0))
    code, out, err = tinit.wait()
    assert (code, out) == (0, "/dev/null\n"), err


# -- the control socket's directory and the server's credentials -------------------------------

NOBODY = 65534
requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


@pytest.fixture
def sockdir() -> Iterator[str]:
    """A fresh directory of root's, 0700, under /tmp (AF_UNIX paths must stay short)."""
    path = tempfile.mkdtemp(prefix="tinit-trust-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@requires_root
@pytest.mark.parametrize(
    ("owner", "mode", "final"),
    [
        (NOBODY, 0o700, True),  # someone else's directory
        (0, 0o777, True),  # root's, but anyone can swap the socket
        (0, 0o1777, True),  # sticky is not enough for the socket's own directory...
        (0, 0o770, True),  # ...nor is a group
        (0, 0o757, False),  # and above it, writable without the sticky bit
        (NOBODY, 0o1777, False),  # a sticky directory of someone else's
    ],
)
def test_a_directory_others_control_is_refused(
    sockdir: str, owner: int, mode: int, final: bool
) -> None:
    path = os.path.join(sockdir, "d")
    os.mkdir(path)
    os.chown(path, owner, owner)
    os.chmod(path, mode)
    with pytest.raises(ControlError, match=f"refusing the control socket's directory: {path} "):
        check_directory(path if final else os.path.join(path, "sub"), final=final)


@requires_root
def test_trusted_directories_and_links_to_them_are_accepted(sockdir: str) -> None:
    check_directory(sockdir)  # /tmp above it is sticky
    for mode in (0o700, 0o755, 0o1755):
        os.chmod(sockdir, mode)
        check_directory(sockdir)
    link = os.path.join(sockdir, "link")
    os.symlink(sockdir, link)
    check_directory(link)
    os.lchown(link, NOBODY, NOBODY)  # its owner could point it elsewhere at any time
    with pytest.raises(ControlError, match="belongs to uid 65534"):
        check_directory(link)
    os.unlink(link)
    elsewhere = os.path.join(sockdir, "open")
    os.mkdir(elsewhere, 0o777)
    os.chmod(elsewhere, 0o777)
    os.symlink(elsewhere, link)  # a trusted link, but to a directory anyone can write to
    with pytest.raises(ControlError, match="is writable by others"):
        check_directory(link)


@requires_root
def test_tinit_refuses_a_socket_in_someone_elses_directory(tmp_path: Path, sockdir: str) -> None:
    """Before: tinit said only that another tinit was listening, and the fake was believed."""
    theirs = os.path.join(sockdir, "theirs")
    os.mkdir(theirs)
    os.chown(theirs, NOBODY, NOBODY)
    os.chmod(sockdir, 0o755)
    path = os.path.join(theirs, "control.sock")
    config = write_config(tmp_path, "version: 1\nservices:\n  a: {command: 'sleep 600'}\n")
    tinit = start(config, env={"TINIT_CONTROL_SOCKET": path})
    assert wait_for(lambda: "control_socket_unavailable" in tinit.stderr_so_far(), timeout=20)
    assert wait_for(lambda: "service_ready" in tinit.stderr_so_far(), timeout=20)  # carries on
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    [event] = result.named("control_socket_unavailable")
    assert event["error"].startswith(f"refusing the control socket's directory: {theirs} belongs")
    assert not os.path.lexists(path)
    assert result.code == 0


#: a control server of the wrong kind: answers every connection with argv[2] (hex),
#: or in the manner argv[2] names, until killed
FAKE_SERVER = """
import os, socket, sys, time
path, how = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(16)
while True:
    conn, _ = s.accept()
    try:
        conn.recv(65536)
        if how == "endless":
            conn.sendall(b'{"v": 1, "ok": true, "result": "')
            while True:
                conn.sendall(b"a" * 65536)
        elif how == "drip":
            conn.sendall(b'{"v": 1, "ok": true, "result": "')
            while True:
                conn.sendall(b"a" * 64)  # never a pause long enough to time out a read
                time.sleep(0.0005)
        else:
            conn.sendall(bytes.fromhex(how))
            time.sleep(0.2)
    except OSError:
        pass
    conn.close()
"""


@contextlib.contextmanager
def fake_server(directory: str, how: str, *, uid: int = 0) -> Iterator[str]:
    """Run FAKE_SERVER at ``directory``/control.sock as ``uid``; yields the socket's path."""
    path = os.path.join(directory, "control.sock")
    argv = [PYTHON, "-c", FAKE_SERVER, path, how]
    if uid:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: os.path.exists(path), timeout=10)
        yield path
    finally:
        proc.kill()
        proc.wait(timeout=10)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def client(*args: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a tinit client command; return it and its peak memory in MiB."""
    measure = (
        "import resource, subprocess, sys;"
        "done = subprocess.run(sys.argv[1:]);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
        "sys.exit(done.returncode)"
    )
    done = subprocess.run(
        [PYTHON, "-c", measure, *tinit_argv(*args)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    *lines, peak = done.stderr.splitlines()
    done.stderr = "".join(line + "\n" for line in lines)
    return done, int(peak) / 1024


@requires_root
def test_the_client_believes_no_server_of_another_user(sockdir: str) -> None:
    """Before: a fake server made ``tinit status`` print "running" and exit 0."""
    os.chown(sockdir, NOBODY, NOBODY)
    reply = b'{"v": 1, "ok": true, "result": []}\n'
    with fake_server(sockdir, reply.hex(), uid=NOBODY) as path:
        done, _ = client("status", "--control-socket", path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"tinit: the process answering on {path} (pid ")
    assert "runs as uid 65534, neither root nor you" in done.stderr


# -- the client against a broken server ----------------------------------------------------------


def test_an_endless_reply_is_cut_off_early_and_small(sockdir: str) -> None:
    """Before: 90 s and 540 MB with --timeout 5."""
    with fake_server(sockdir, "endless") as path:
        began = time.monotonic()
        done, peak = client("status", "--control-socket", path, "--timeout", "5")
    assert time.monotonic() - began < 5
    assert done.returncode == 1
    assert (
        done.stderr == f"tinit: the reply from {path} is longer than 4194304 bytes: not tinit's\n"
    )
    assert peak < 100, peak


def test_the_timeout_covers_a_reply_that_trickles_forever(sockdir: str) -> None:
    """Each read got the time left, and never lacked data: the exchange had no end."""
    with fake_server(sockdir, "drip") as path:
        began = time.monotonic()
        done, _ = client("status", "--control-socket", path, "--timeout", "2")
        took = time.monotonic() - began
    assert done.returncode == 1
    assert (
        done.stderr
        == f"tinit: tinit on {path} did not answer within 2s (give more time with --timeout)\n"
    )
    assert 2 <= took < 10, took


SERVICE = {"name": "a", "state": "running", "pid": 7, "uptime": 1.5, "restarts": 0,
           "last_exit": None, "ready": True, "memory": None, "pids": None}  # fmt: skip
#: the first reply of ``logs``, after which the malformed part comes
LOGS_HEADER = b'{"v": 1, "ok": true, "result": {"services": ["a"]}}\n'
MALFORMED = [
    b"[]",
    b"5",
    b'"ok"',
    b"not json at all",
    b'{"v": 1}',
    b'{"v": 1, "ok": "yes", "result": []}',
    b'{"v": true, "ok": true, "result": []}',
    b'{"v": 1, "ok": true, "result": {"a": 1}}',
    b'{"v": 1, "ok": true, "result": 5}',
    b'{"v": 1, "ok": true, "result": [5]}',
    b'{"v": 1, "ok": true, "result": [{}]}',
    b'{"v": 1, "ok": true, "result": [{"name": "a", "state": "running"}]}',
    b'{"v": 1, "ok": true, "result": [{"name": "a", "state": "running", "pid": 7, "uptime": Infinity,'
    b' "restarts": 0, "last_exit": null, "ready": true, "memory": null, "pids": null}]}',
    b'{"v": 1, "ok": true, "result": [{"name": "a", "state": "running", "pid": 7, "uptime": 1,'
    b' "restarts": 0, "last_exit": null, "ready": true, "memory": 1e999, "pids": null}]}',
    b'{"v": 1, "ok": true, "result": [{"name": "a", "state": "running", "pid": 7, "uptime": 1,'
    b' "restarts": 0, "last_exit": null, "ready": true, "memory": '
    + b"9" * 400
    + b', "pids": null}]}',
    b'{"v": 1, "ok": false, "error": ["x"]}',
    b"[" * 5000 + b"]" * 5000,
]


@pytest.mark.parametrize("reply", MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_status_reply_is_one_line_and_exit_1(sockdir: str, reply: bytes) -> None:
    """Before: exit 70 (an internal error) for a reply of the wrong type."""
    with fake_server(sockdir, (reply + b"\n").hex()) as path:
        done, _ = client("status", "--control-socket", path, "--timeout", "10")
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("tinit: "), done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (("reload",), b'{"v": 1, "ok": true, "result": ["a"]}'),
        (("reload",), b'{"v": 1, "ok": true, "result": {"added": "a"}}'),
        (("reload",), b'{"v": 1, "ok": false, "error": "no", "problems": {"a": 1}}'),
        (("logs",), b'{"v": 1, "ok": true, "result": []}'),
        (("logs",), b'{"v": 1, "ok": true, "result": {"services": ["a"], "lines": [1]}}'),
        (("logs",), b'{"v": 1, "ok": true, "result": {"services": ["a"], "lines": [{"line": 1}]}}'),
        (("logs",), LOGS_HEADER + b'{"v": 1, "ok": true, "result": {"lines": [1]}}'),
        (("logs",), LOGS_HEADER + b'{"v": 1, "ok": true, "result": {"lines": [{"lines": []}]}}'),
        (
            ("logs",),
            LOGS_HEADER + b'{"v": 1, "ok": true, "result": {"lines": [{"ts": 1, "service": "a",'
            b' "stream": "stdout", "lines": [1]}]}}',
        ),
        (("logs",), LOGS_HEADER + b'{"v": 1, "ok": true, "result": {"end": 1}}'),
    ],
)
def test_malformed_reload_and_logs_replies_are_one_line_and_exit_1(
    sockdir: str, command: tuple[str, ...], reply: bytes
) -> None:
    with fake_server(sockdir, (reply + b"\n").hex()) as path:
        done, _ = client(*command, "--control-socket", path, "--timeout", "10")
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("tinit: the reply from "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_a_well_formed_reply_still_works(sockdir: str) -> None:
    """The checks refuse nothing tinit itself sends (a control for the tests above)."""
    import json

    reply = json.dumps({"v": 1, "ok": True, "result": [SERVICE]}).encode() + b"\n"
    with fake_server(sockdir, reply.hex()) as path:
        done, _ = client("status", "--control-socket", path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[1].split()[:3] == ["a", "running", "7"]


# -- the health listener against a crowd ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _raised_fd_limit(at_least: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= at_least:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < at_least:
        pytest.skip(f"needs {at_least} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (at_least, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_half_requests_do_not_starve_healthz(tmp_path: Path) -> None:
    """Before: about 260 connections that sent half a request made /healthz unreachable."""
    port = _free_port()
    config = write_config(
        tmp_path,
        f"""
        version: 1
        settings: {{health_listen: "127.0.0.1:{port}"}}
        services:
          a: {{command: 'sleep 600'}}
        """,
    )
    tinit = start(config)
    url = f"http://127.0.0.1:{port}/healthz"

    def healthz() -> int:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)

    crowd: list[socket.socket] = []
    with _raised_fd_limit(2200):
        try:
            assert wait_for(lambda: "health_listening" in tinit.stderr_so_far(), timeout=20)
            for _ in range(1000):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: tinit\r\nX-Half: ")
                crowd.append(s)
            began = time.monotonic()
            assert healthz() == 200
            assert time.monotonic() - began < 5
            fds = len(os.listdir(f"/proc/{tinit.pid}/fd"))
            assert fds < MAX_CONNECTIONS + 64, fds  # the crowd beyond the limit was closed
        finally:
            for s in crowd:
                s.close()
    tinit.signal(signal.SIGTERM)
    result = finish(tinit)
    assert result.code == 0
    assert not result.named("health_connection_failed")
