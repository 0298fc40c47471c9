"""``tinit probe tcp|http``: tinit's own checks as a command, for other orchestrators' exec probes."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from tests.nsrun import ROOT, imported_modules, tinit_argv
from tinit.probes import check_http


def probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tinit_argv("probe", *args),
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@contextmanager
def answering(reply: bytes | None) -> Iterator[tuple[int, list[bytes]]]:
    """A server on loopback that reads one request and sends ``reply`` (None: says nothing)."""
    seen: list[bytes] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(0.05)  # so the loop sees ``stop`` soon after the test
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                with conn:
                    conn.settimeout(5)
                    try:
                        seen.append(conn.recv(4096))
                        if reply is None:
                            stop.wait(5)  # silent until the test is over
                        else:
                            conn.sendall(reply)
                    except OSError:
                        pass

        worker = threading.Thread(target=serve, daemon=True)
        worker.start()
        try:
            yield server.getsockname()[1], seen
        finally:
            stop.set()
            server.close()
            worker.join(timeout=10)


def test_tcp_passes_on_a_listener_and_fails_on_a_refusal() -> None:
    with answering(b"") as (port, _), socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: refuses
        assert probe("tcp", f"127.0.0.1:{port}").returncode == 0
        refused = probe("tcp", f"localhost:{closed.getsockname()[1]}")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "Connection refused" in refused.stderr


@pytest.mark.parametrize(
    ("reply", "passes"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.0 301 Moved\r\nLocation: /x/\r\n\r\n", True),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", False),
        (b"HTTP/1.1 500 Oops\r\n\r\n", False),
        (b"SSH-2.0-OpenSSH\r\n", False),
        (b"", False),
    ],
)
def test_http_agrees_with_tinits_own_check(reply: bytes, passes: bool) -> None:
    with answering(reply) as (port, seen):
        url = f"http://127.0.0.1:{port}/ready?full=1"
        done = probe("http", url)
        own = trio.run(check_http, url, 5.0)
    assert (done.returncode == 0) is passes is own
    assert seen[0].startswith(b"GET /ready?full=1 HTTP/1.1\r\n")
    if not passes:
        assert done.returncode == 1 and done.stderr.count("\n") == 1


def test_credentials_in_the_url_are_never_sent() -> None:
    with answering(b"HTTP/1.1 204 No Content\r\n\r\n") as (port, seen):
        url = f"http://user:secret@127.0.0.1:{port}/"
        assert probe("http", url).returncode == 0
        assert trio.run(check_http, url, 5.0)
    assert len(seen) == 2
    for request in seen:
        assert b"secret" not in request
        assert f"Host: 127.0.0.1:{port}\r\n".encode() in request


def test_a_server_that_never_answers_fails_at_the_timeout() -> None:
    with answering(None) as (port, _):
        began = time.monotonic()
        done = probe("http", f"http://127.0.0.1:{port}/", "--timeout", "0.5")
        took = time.monotonic() - began
    assert done.returncode == 1
    assert "no answer in time" in done.stderr
    assert took < 10  # the interpreter's start plus the half second, not the server's 5 s


@pytest.mark.parametrize(
    "args",
    [
        ("tcp", "no-port"),
        ("tcp", "host:0"),
        ("tcp", "host:99999"),
        ("http", "ftp://host/"),
        ("http", "http://host:99999/"),
        ("http", "http://host/", "--timeout", "0"),
        ("udp", "host:53"),
        ("tcp", ":80"),
        ("tcp", "[::1:80"),
        ("tcp", "a" * 300 + ":80"),
        ("http", "http://[::1"),
        ("http", "http://"),
        ("http", "http://:80/"),
        ("http", "http://h/\r\nX-Injected: 1"),
        ("http", "http://h/ spaced"),
        ("http", "http://" + "a" * 300 + "/"),
    ],
)
def test_a_bad_command_line_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    done = probe(*args)
    assert done.returncode == 2
    assert done.stderr.startswith("tinit: ") or "usage:" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    if done.stderr.startswith("tinit: "):
        assert done.stderr.count("\n") == 1 and len(done.stderr) < 300


def test_it_loads_no_event_loop() -> None:
    with answering(b"") as (port, _):
        done = probe("tcp", f"127.0.0.1:{port}", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert done.returncode == 0
    imported = imported_modules(done.stderr)
    assert "tinit.probecmd" in imported
    assert "trio" not in imported
