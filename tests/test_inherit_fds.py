"""Inherited fds in services mode, end to end: ``inherit_fds`` under systemd-socket-activate.

tinit runs as PID 1 of a fresh PID namespace, exec'd in place by
systemd-socket-activate, which hands it listening sockets as fds 3 and up
with LISTEN_PID naming it. Only the services that name an fd get it,
renumbered from 3, with LISTEN_* of their own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.nsrun import ROOT, tinit_argv
from tests.svcrun import Result, control_path, write_config

if TYPE_CHECKING:
    from collections.abc import Sequence

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        shutil.which("systemd-socket-activate") is None, reason="needs systemd-socket-activate"
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def activated(
    config: Path, ports: Sequence[int], names: str, connect: Sequence[int] = ()
) -> tuple[Result, list[bytes]]:
    """tinit on ``config`` with sockets on ``ports`` named ``names``; connect to ``connect``.

    Returns tinit's result and what each connection read before it closed.
    systemd-socket-activate starts tinit at the first connection: without
    ``connect``, one is made to the first port and closed at once.
    """
    listen = [arg for port in ports for arg in ("-l", f"127.0.0.1:{port}")]
    argv = [
        "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
        "systemd-socket-activate", *listen, f"--fdname={names}",
        *tinit_argv("run", "--log-format", "json", "--log-level", "debug", str(config)),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TINIT_CONTROL_SOCKET": control_path()}
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        replies = [_read_from(port) for port in connect]
        if not connect:
            _poke(ports[0])
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return Result(proc.returncode, out.decode(), err.decode()), replies


def _poke(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
            return
        except OSError:
            time.sleep(0.05)


def _read_from(port: int) -> bytes:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                data = b""
                while chunk := conn.recv(100):
                    data += chunk
                return data
        except OSError:
            time.sleep(0.05)
    return b""


SHOW = """\
import os, socket
def port(fd):
    return socket.socket(fileno=os.dup(fd)).getsockname()[1]
print(os.environ["LISTEN_PID"] == str(os.getpid()), os.environ["LISTEN_FDS"],
      os.environ["LISTEN_FDNAMES"], port(3), port(4))
"""

COUNT_SOCKETS = """\
import os
fds = os.listdir("/proc/self/fd")
links = [os.readlink(f"/proc/self/fd/{fd}") for fd in fds if os.path.exists(f"/proc/self/fd/{fd}")]
print(sum(link.startswith("socket:") for link in links), "LISTEN_FDS" in os.environ)
"""


def test_named_fds_are_renumbered_in_order_and_no_other_service_gets_one(
    tmp_path: Path,
) -> None:
    first, second = free_port(), free_port()
    (tmp_path / "show.py").write_text(SHOW)
    (tmp_path / "count.py").write_text(COUNT_SOCKETS)
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          both:
            command: [PYTHON, {tmp_path / "show.py"}]
            inherit_fds: [second, 3]
            restart: never
          bare:
            command: [PYTHON, {tmp_path / "count.py"}]
            restart: never
        """,
    )
    result, _ = activated(config, [first, second], "first:second")
    assert result.code == 0, result.stderr
    assert result.output("both") == [f"True 2 second:first {second} {first}"]
    assert result.output("bare") == ["0 False"]


ACCEPT_ONCE = """\
import os, socket, sys
counter = sys.argv[1]
runs = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(runs))
listener = socket.socket(fileno=3)
conn, _ = listener.accept()
conn.sendall(f"run {runs} on fd 3".encode())
conn.close()
sys.exit(1 if runs == 1 else 0)
"""


def test_the_socket_outlives_a_restart_of_the_service_that_accepts_on_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    (tmp_path / "accept.py").write_text(ACCEPT_ONCE)
    config = write_config(
        tmp_path,
        f"""
        version: 1
        services:
          web:
            command: [PYTHON, {tmp_path / "accept.py"}, {tmp_path / "runs"}]
            inherit_fds: [http]
            restart: on-failure
            backoff: {{initial: 50ms}}
        """,
    )
    result, replies = activated(config, [port], "http", connect=[port, port])
    assert replies == [b"run 1 on fd 3", b"run 2 on fd 3"]
    assert result.code == 0, result.stderr
    assert len(result.named("service_starting", "web")) == 2


def test_an_fd_tinit_was_not_given_is_a_start_failure_that_says_so(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
        version: 1
        services:
          web:
            command: "true"
            inherit_fds: [http, 4]
            restart: never
        """,
    )
    result, _ = activated(config, [free_port()], "http")
    (failed,) = result.named("service_start_failed", "web")
    assert failed["error"] == (
        "true: cannot pass inherited fds: fd 4 was not passed to tinit (it was given 3 (http))"
    )
    assert not result.named("service_exited", "web")
    assert result.code != 0
