"""The control socket and the client commands, against a fake supervisor.

The server runs in the test's trio loop; the client, which blocks, runs in a
worker thread or a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fakes import FakeTarget, client_main
from tinit import client
from tinit.control import serve_control
from tinit.errors import ControlError, Problem
from tinit.logs import Log, make_logger
from tinit.state import State

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534

needs_root = pytest.mark.skipif(os.getuid() != 0, reason="changing uid needs root")


@pytest.fixture
def sockdir() -> Iterator[str]:
    """A short directory: AF_UNIX paths must stay under 108 bytes."""
    path = tempfile.mkdtemp(dir="/tmp", prefix="tinit-ctl-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sock(sockdir: str) -> str:
    return os.path.join(sockdir, "run", "control.sock")


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget("web", "worker", "db")


def quiet_log() -> tuple[Log, io.StringIO]:
    stream = io.StringIO()
    return make_logger(level="debug", fmt="json", stream=stream), stream


@asynccontextmanager
async def control(target: FakeTarget, path: str, **kwargs: Any) -> AsyncIterator[io.StringIO]:
    """Serve ``target`` on ``path`` for the duration; yields the log stream.

    Nothing a client does is an error of tinit's: no event at level error.
    """
    log, stream = quiet_log()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_control, path, target, log, **kwargs))
        yield stream
        nursery.cancel_scope.cancel()
    assert '"level": "error"' not in stream.getvalue()


async def run_client(*argv: str) -> int:
    """``tinit ARGV`` in a worker thread, printing like cli.py does."""
    return await trio.to_thread.run_sync(client_main, list(argv))


class Raw:
    """A client speaking the wire protocol directly, for what the CLI would never send."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def connect(cls, path: str) -> Raw:
        return cls(await trio.open_unix_socket(path))

    async def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        await self.stream.send_all(data)

    async def receive(self) -> dict[str, Any] | None:
        while b"\n" not in self.buffer:
            try:
                chunk = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset: the server closed with our bytes unread
                return None
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def call(self, message: dict[str, Any] | bytes) -> dict[str, Any]:
        await self.send(message)
        reply = await self.receive()
        assert reply is not None, f"connection closed instead of answering {message!r}"
        return reply

    async def aclose(self) -> None:
        await self.stream.aclose()


async def ping(path: str) -> dict[str, Any]:
    conn = await Raw.connect(path)
    try:
        return await conn.call({"v": 1, "cmd": "ping"})
    finally:
        await conn.aclose()


# -- the socket file ------------------------------------------------------------------------


async def test_socket_is_0600_in_a_new_0700_directory(target: FakeTarget, sock: str) -> None:
    """A missing directory is made 0700; the socket is 0600 whatever the umask."""
    with trio.fail_after(10):
        old = os.umask(0)
        try:
            async with control(target, sock):
                assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700
                assert stat.S_ISSOCK(os.lstat(sock).st_mode)
                assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
        finally:
            os.umask(old)


async def test_existing_directory_keeps_its_mode(target: FakeTarget, sockdir: str) -> None:
    """tinit only chooses the mode of a directory it made itself."""
    with trio.fail_after(10):
        os.chmod(sockdir, 0o755)
        async with control(target, os.path.join(sockdir, "c.sock")):
            assert stat.S_IMODE(os.stat(sockdir).st_mode) == 0o755


async def test_socket_file_is_removed_on_exit(target: FakeTarget, sock: str) -> None:
    with trio.fail_after(10):
        async with control(target, sock):
            assert await trio.Path(sock).exists()
        assert not await trio.Path(sock).exists()


async def test_stale_socket_is_replaced(target: FakeTarget, sockdir: str) -> None:
    """A socket file nobody answers on (a crashed tinit's) is taken over."""
    with trio.fail_after(10):
        path = os.path.join(sockdir, "c.sock")
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(path)
        dead.close()
        async with control(target, path):
            assert (await ping(path))["ok"] is True


async def test_refuses_a_socket_another_tinit_answers_on(target: FakeTarget, sock: str) -> None:
    with trio.fail_after(10):
        async with control(target, sock):
            log, _ = quiet_log()
            with pytest.raises(ControlError, match="another tinit is already listening"):
                await serve_control(sock, target, log)
            assert (await ping(sock))["ok"] is True  # the first one is undisturbed


async def test_refuses_a_path_that_is_not_a_socket(target: FakeTarget, sockdir: str) -> None:
    with trio.fail_after(10):
        path = os.path.join(sockdir, "file")
        await trio.Path(path).write_text("mine\n")
        log, _ = quiet_log()
        with pytest.raises(ControlError, match="is not a socket"):
            await serve_control(path, target, log)
        assert await trio.Path(path).read_text() == "mine\n"


# -- the commands ---------------------------------------------------------------------------


async def test_ping(target: FakeTarget, sock: str) -> None:
    with trio.fail_after(10):
        async with control(target, sock):
            reply = await trio.to_thread.run_sync(client.request, sock, {"cmd": "ping"}, 5.0)
            assert reply == {"v": 1, "ok": True, "result": {"pid": os.getpid(), "version": "0.1.0"}}


async def test_status_table_exits_0_when_all_running_and_ready(
    target: FakeTarget, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(10):
        target.services["db"].last_exit = {"exit_code": None, "signal": "SIGKILL"}
        target.services["worker"].last_exit = {"exit_code": None, "signal": "SIGKILL", "oom": True}
        target.services["web"].restarts = 2
        async with control(target, sock):
            assert await run_client("status", "--control-socket", sock) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].split() == [
            "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST-EXIT", "READY", "MEMORY", "PIDS"
        ]  # fmt: skip
        assert out[1].split() == ["web", "running", "100", "0s", "2", "-", "yes", "12.3M", "1"]
        assert out[2].split()[5] == "OOM"
        assert out[3].split()[5] == "SIGKILL"
        assert out[0].index("STATE") == out[1].index("running")  # columns line up


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda t: setattr(t.services["db"], "ready", False), id="not-ready"),
        pytest.param(lambda t: setattr(t.services["db"], "state", State.BACKOFF), id="backoff"),
        pytest.param(lambda t: setattr(t.services["db"], "state", State.FAILED), id="failed"),
    ],
)
async def test_status_exits_1_unless_every_service_is_running_and_ready(
    target: FakeTarget, sock: str, change: Callable[[FakeTarget], None]
) -> None:
    with trio.fail_after(10):
        change(target)
        async with control(target, sock):
            assert await run_client("status", "--control-socket", sock) == 1
            # Only the services asked about count.
            assert await run_client("status", "--control-socket", sock, "web", "worker") == 0


async def test_status_counts_a_completed_oneshot_as_healthy(target: FakeTarget, sock: str) -> None:
    with trio.fail_after(10):
        db = target.services["db"]
        db.state, db.ready, db.completed = State.EXITED, False, True
        async with control(target, sock):
            assert await run_client("status", "--control-socket", sock) == 0


async def test_status_counts_a_service_an_operator_stopped_as_fine(
    target: FakeTarget, sock: str
) -> None:
    with trio.fail_after(10):
        db = target.services["db"]
        db.state, db.ready, db.pid = State.STOPPED, False, None
        async with control(target, sock):
            assert await run_client("status", "--control-socket", sock) == 1  # stopped, not held
            db.held = True
            assert await run_client("status", "--control-socket", sock) == 0


async def test_status_json_prints_the_result_list(
    target: FakeTarget, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(10):
        async with control(target, sock):
            assert await run_client("status", "--json", "--control-socket", sock, "web") == 0
        [web] = json.loads(capsys.readouterr().out)
        assert web["name"] == "web"
        assert web["state"] == "running"
        assert web["pid"] == 100
        assert web["memory"] == 12_900_000


async def test_control_socket_from_the_environment(
    target: FakeTarget, sock: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(10):
        monkeypatch.setenv("TINIT_CONTROL_SOCKET", sock)
        async with control(target, sock):
            assert await run_client("status") == 0


async def test_unknown_service_is_one_line_and_nothing_happens(
    target: FakeTarget, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(10):
        async with control(target, sock):
            for argv in (["status"], ["stop", "web"], ["signal", "HUP", "web"], ["logs"]):
                assert await run_client(argv[0], "--control-socket", sock, *argv[1:], "nope") == 1
                assert capsys.readouterr().err == "tinit: unknown service 'nope'\n"
        assert target.calls == []
        assert target.services["web"].state is State.RUNNING


async def test_start_stop_restart_act_on_the_named_services(
    target: FakeTarget, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(10):
        target.stop_delay = 0.2  # stop waits until the services are stopped
        async with control(target, sock):
            assert await run_client("stop", "--control-socket", sock, "web", "db") == 0
            assert target.states() == {"web": "stopped", "worker": "running", "db": "stopped"}
            assert await run_client("start", "--control-socket", sock, "web") == 0
            assert await run_client("restart", "--control-socket", sock, "worker") == 0
        assert target.calls == [
            ("stop", ("web", "db")),
            ("start", ("web",)),
            ("restart", ("worker",)),
        ]
        assert target.states() == {"web": "running", "worker": "running", "db": "stopped"}
        assert target.services["worker"].restarts == 1
        assert capsys.readouterr().out == ""


async def test_signal_by_any_name(target: FakeTarget, sock: str) -> None:
    with trio.fail_after(10):
        async with control(target, sock):
            for name in ("SIGHUP", "hup", "1", "SIGRTMIN+2"):
                assert await run_client("signal", "--control-socket", sock, name, "web") == 0
        rt = signal.SIGRTMIN + 2
        assert target.services["web"].signals == [signal.SIGHUP] * 3 + [rt]
        assert target.services["db"].signals == []


async def test_bad_signal_name_is_a_usage_error(
    target: FakeTarget, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(10):
        async with control(target, sock):
            assert await run_client("signal", "--control-socket", sock, "SIGNOPE", "web") == 2
        assert "unknown signal 'SIGNOPE'" in capsys.readouterr().err
        assert target.calls == []


async def test_reload_prints_what_changed(
    target: FakeTarget, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(10):
        target.reload_result = {
            "added": ["cache"],
            "removed": [],
            "changed": ["web"],
            "updated": ["db"],
            "unchanged": [],
        }
        async with control(target, sock):
            assert await run_client("reload", "--control-socket", sock) == 0
            assert capsys.readouterr().out == "added: cache\nchanged: web\nupdated: db\n"
            target.reload_result = {"added": [], "removed": [], "changed": [], "unchanged": ["a"]}
            assert await run_client("reload", "--control-socket", sock) == 0
            assert capsys.readouterr().out == "nothing changed\n"


async def test_reload_of_an_invalid_file_reports_every_problem(
    target: FakeTarget, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(10):
        target.reload_problems = [
            Problem("/etc/tinit/services.yaml", 3, 5, "services.web.restart", "unknown policy"),
            Problem("/etc/tinit/services.yaml", 9, 1, "services.db", "no command"),
        ]
        async with control(target, sock):
            assert await run_client("reload", "--control-socket", sock) == 1
        assert capsys.readouterr().err.splitlines() == [
            "tinit: /etc/tinit/services.yaml:3:5: services.web.restart: unknown policy",
            "tinit: /etc/tinit/services.yaml:9:1: services.db: no command",
            "tinit: the new config is invalid; nothing was changed",
        ]


async def test_logs_n_counts_per_service_and_marks_stderr_on_stdout(
    target: FakeTarget, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(10):
        for i in range(5):
            target.add_line("web", f"request {i}")
        target.add_line("db", "slow query", stream="stderr")
        target.add_line("worker", "job done")
        async with control(target, sock):
            assert await run_client("logs", "--control-socket", sock, "-n", "3") == 0
            assert capsys.readouterr() == (
                "web    | request 2\nweb    | request 3\nweb    | request 4\n"
                "db     ! slow query\nworker | job done\n",
                "",
            )
            assert await run_client("logs", "--control-socket", sock, "-n", "3", "--total") == 0
            assert capsys.readouterr() == (
                "web    | request 4\ndb     ! slow query\nworker | job done\n",
                "",
            )
            assert await run_client("logs", "--control-socket", sock, "--total") == 2
            assert "give -n too" in capsys.readouterr().err
            assert await run_client("logs", "--control-socket", sock, "web", "db") == 0
            out = capsys.readouterr().out.splitlines()
            assert out == [f"web | request {i}" for i in range(5)] + ["db  ! slow query"]
            assert await run_client("logs", "--control-socket", sock, "-n", "0") == 0
            assert capsys.readouterr() == ("", "")


async def test_logs_stream_in_bounded_messages_with_the_names_first_and_an_end(
    target: FakeTarget, sock: str
) -> None:
    """Kept lines go in several messages, none near the client's limit even when escaped."""
    with trio.fail_after(20):
        for i in range(3000):
            target.add_line("web", "\x01" * 100 + str(i))  # 6 bytes a character in JSON
        async with control(target, sock):
            conn = await Raw.connect(sock)
            await conn.send({"v": 1, "cmd": "logs"})
            sizes: list[int] = []
            messages: list[dict[str, Any]] = []
            while not messages or messages[-1].get("result") != {"end": True}:
                while b"\n" not in conn.buffer:
                    chunk = await conn.stream.receive_some(65536)
                    assert chunk
                    conn.buffer += chunk
                sizes.append(conn.buffer.index(b"\n") + 1)
                message = await conn.receive()
                assert message is not None and message["ok"] is True
                messages.append(message)
            await conn.aclose()
    assert messages[0]["result"] == {"services": ["web", "worker", "db"]}
    runs = [run for m in messages[1:-1] for run in m["result"]["lines"]]
    assert [line for run in runs for line in run["lines"]] == [
        "\x01" * 100 + str(i) for i in range(3000)
    ]
    assert len(messages) > 4
    assert max(sizes) < client.MAX_LOGS_MESSAGE / 2


async def test_logs_of_many_one_line_runs_stay_in_bounded_messages(
    target: FakeTarget, sock: str
) -> None:
    """A run's own keys count too: tiny runs, each read on its own, still pack boundedly."""
    with trio.fail_after(20):
        for _ in range(20_000):
            target.add_line("web", "")
        async with control(target, sock):
            conn = await Raw.connect(sock)
            await conn.send({"v": 1, "cmd": "logs"})
            sizes: list[int] = []
            lines = 0
            while True:
                while b"\n" not in conn.buffer:
                    chunk = await conn.stream.receive_some(65536)
                    assert chunk
                    conn.buffer += chunk
                sizes.append(conn.buffer.index(b"\n") + 1)
                message = await conn.receive()
                assert message is not None and message["ok"] is True
                if message["result"] == {"end": True}:
                    break
                lines += sum(len(run["lines"]) for run in message["result"].get("lines", []))
            await conn.aclose()
    assert lines == 20_000
    assert max(sizes) < client.MAX_LOGS_MESSAGE / 2


async def test_logs_follow_prints_new_lines_until_ctrl_c(target: FakeTarget, sock: str) -> None:
    """``logs -f`` shows the kept lines, then new ones as they come; Ctrl-C ends it with 0."""
    with trio.fail_after(20):
        target.add_line("web", "old line")
        async with control(target, sock):
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-c", CLIENT, "logs", "-f", "--control-socket", sock, "web"],
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            try:
                assert proc.stdout is not None
                lines = LineReader(proc.stdout)
                assert await lines.next() == "web | old line"
                # The follower is set up before the kept lines are sent.
                target.add_line("db", "not followed")
                target.add_line("web", "new line 1")
                target.add_line("web", "new line 2")
                assert await lines.next() == "web | new line 1"
                assert await lines.next() == "web | new line 2"
                proc.send_signal(signal.SIGINT)
                assert await proc.wait() == 0
            finally:
                proc.kill()
                await proc.wait()
            # The server notices the client is gone and drops the follower.
            while target.followers:
                await trio.sleep(0.01)


async def test_logs_follow_ends_with_0_when_tinit_goes_away(
    target: FakeTarget, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as outer:
            codes: list[int] = []

            async def follow() -> None:
                codes.append(await run_client("logs", "-f", "--control-socket", sock))

            async with control(target, sock):
                outer.start_soon(follow)
                while not target.followers:
                    await trio.sleep(0.01)
                target.add_line("worker", "bye")
                while "bye" not in capsys.readouterr().out:
                    await trio.sleep(0.01)
        assert codes == [0]


async def test_a_follower_that_stops_reading_is_dropped(target: FakeTarget, sock: str) -> None:
    """A ``logs -f`` client that reads nothing costs a bounded time, and is no error."""
    with trio.fail_after(10):
        async with control(target, sock, idle_timeout=0.5) as logged:
            conn = await Raw.connect(sock)
            await conn.send({"v": 1, "cmd": "logs", "follow": True})
            while not target.followers:
                await trio.sleep(0.01)
            for _ in range(5000):  # ~5 MB: more than the socket buffers hold
                target.add_line("web", "x" * 1000)
                await trio.lowlevel.checkpoint()
            while target.followers:
                await trio.sleep(0.01)
            assert (await ping(sock))["ok"] is True
            await conn.aclose()
        assert '"level": "error"' not in logged.getvalue()


# -- the client alone -------------------------------------------------------------------------


def test_no_tinit_is_one_line(sockdir: str) -> None:
    """Neither a missing socket nor a dead one gives more than the one sentence."""
    missing = os.path.join(sockdir, "nothing.sock")
    dead = os.path.join(sockdir, "dead.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(dead)
    for path in (missing, dead):
        with pytest.raises(ControlError) as caught:
            client.request(path, {"cmd": "ping"}, 1.0)
        assert str(caught.value) == (
            f"no tinit is listening on {path} (is it running? is the path right: "
            "--control-socket or TINIT_CONTROL_SOCKET)"
        )
        assert caught.value.exit_code == 1


def test_client_times_out_on_a_tinit_that_never_accepts(sockdir: str) -> None:
    """A full backlog makes connect() fail with EAGAIN: the client waits, then gives up."""
    path = os.path.join(sockdir, "busy.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(0)
        queued = []
        for _ in range(4):  # fill the backlog
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                s.close()
                break
            queued.append(s)
        start = time.monotonic()
        with pytest.raises(ControlError, match=r"did not answer within 0\.3s"):
            client.request(path, {"cmd": "ping"}, 0.3)
        assert 0.25 < time.monotonic() - start < 2
        for s in queued:
            s.close()


def test_default_socket_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINIT_CONTROL_SOCKET", raising=False)
    assert client.socket_path(None) == "/run/tinit/control.sock"
    monkeypatch.setenv("TINIT_CONTROL_SOCKET", "/x.sock")
    assert client.socket_path(None) == "/x.sock"
    assert client.socket_path("/y.sock") == "/y.sock"


async def test_client_gives_up_after_its_timeout(
    target: FakeTarget, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(10):
        target.stop_delay = 5.0
        async with control(target, sock):
            start = time.monotonic()
            assert (
                await run_client("stop", "--timeout", "0.3", "--control-socket", sock, "web") == 1
            )
            assert time.monotonic() - start < 2
        assert capsys.readouterr().err == (
            f"tinit: tinit on {sock} did not answer within 0.3s (give more time with --timeout)\n"
        )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (192, "3m12s"), (7500, "2h05m"), (3 * 86400 + 4 * 3600, "3d04h")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert client.format_duration(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0B"), (1023, "1023B"), (1024, "1.0K"), (12_900_000, "12.3M"), (200 * 2**20, "200M")],
)
def test_format_bytes(n: int, text: str) -> None:
    assert client.format_bytes(n) == text


@pytest.mark.parametrize(
    ("last", "text"),
    [
        (None, "-"),
        ({"exit_code": 0, "signal": None}, "0"),
        ({"exit_code": 1, "signal": None}, "1"),
        ({"exit_code": None, "signal": "SIGKILL"}, "SIGKILL"),
        ({"exit_code": None, "signal": 9}, "SIGKILL"),
        ({"exit_code": None, "signal": "SIGKILL", "oom": True}, "OOM"),
    ],
)
def test_format_exit(last: dict[str, Any] | None, text: str) -> None:
    assert client.format_exit(last) == text


def test_client_does_not_import_trio() -> None:
    """``tinit status`` is a health probe: trio's import alone would blow its time budget."""
    code = "import sys, tinit.client; print(sorted(m for m in sys.modules if 'trio' in m))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert out.stdout == "[]\n"


async def test_status_round_trip_in_a_fresh_process(target: FakeTarget, sock: str) -> None:
    """The whole ``tinit status`` process, interpreter start included, is quick."""
    with trio.fail_after(30):
        async with control(target, sock):
            argv = [sys.executable, "-c", CLIENT, "status", "--control-socket", sock]
            best = float("inf")
            for _ in range(3):
                start = time.monotonic()
                done = await trio.run_process(argv, cwd=ROOT, capture_stdout=True)
                best = min(best, time.monotonic() - start)
                assert done.returncode == 0
        assert best < 1.0, f"tinit status took {best:.3f}s"


# -- robustness -------------------------------------------------------------------------------

BAD_REQUESTS: list[tuple[bytes, str]] = [
    (b"this is not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"ping"', "must be a JSON object"),
    (b'{"cmd": "ping"}', "unsupported protocol version None"),
    (b'{"v": 2, "cmd": "ping"}', "unsupported protocol version 2"),
    (b'{"v": true, "cmd": "ping"}', "unsupported protocol version True"),
    (b'{"v": 1, "cmd": "rm -rf /"}', "unknown command 'rm -rf /'"),
    (b'{"v": 1}', "unknown command None"),
    (b'{"v": 1, "cmd": "stop", "names": "web"}', "names must be a list"),
    (b'{"v": 1, "cmd": "stop", "names": [1]}', "names must be a list"),
    (b'{"v": 1, "cmd": "stop", "names": [""]}', "names must be a list"),
    (b'{"v": 1, "cmd": "stop", "names": []}', "stop needs at least one service name"),
    (b'{"v": 1, "cmd": "stop", "names": ["nope"]}', "unknown service 'nope'"),
    (b'{"v": 1, "cmd": "reload", "names": ["web"]}', "reload takes no service names"),
    (b'{"v": 1, "cmd": "signal", "names": ["web"]}', "signal needs a signal name"),
    (b'{"v": 1, "cmd": "signal", "signal": 9, "names": ["web"]}', "signal needs a signal name"),
    (b'{"v": 1, "cmd": "signal", "signal": "SIGFOO", "names": ["web"]}', "unknown signal"),
    (b'{"v": 1, "cmd": "signal", "signal": "0", "names": ["web"]}', "out of range"),
    (b'{"v": 1, "cmd": "logs", "n": -1}', "n must be a number"),
    (b'{"v": 1, "cmd": "logs", "n": "5"}', "n must be a number"),
    (b'{"v": 1, "cmd": "logs", "n": true}', "n must be a number"),
    (b'{"v": 1, "cmd": "logs", "follow": "yes"}', "follow must be true or false"),
    (b'{"v": 1, "cmd": "status", "n": 3}', "status takes neither n nor follow"),
    (b'{"v": 1, "cmd": "status", "extra": 1}', "unknown field 'extra'"),
    (b"[" * 10_000 + b"]" * 10_000, "not valid JSON"),  # deep nesting: RecursionError
    (b'{"v": 1, "cmd": "logs", "n": 1' + b"0" * 5000 + b"}", "not valid JSON"),  # huge int
    (b"\xff\xfe garbage", "not valid JSON"),
    (b"", "not valid JSON"),
]


async def test_bad_requests_get_an_error_and_the_connection_stays_usable(
    target: FakeTarget, sock: str
) -> None:
    with trio.fail_after(10):
        async with control(target, sock) as logged:
            conn = await Raw.connect(sock)
            for line, error in BAD_REQUESTS:
                reply = await conn.call(line + b"\n")
                assert reply["v"] == 1
                assert reply["ok"] is False
                assert error in reply["error"], (line[:60], reply)
            assert (await conn.call({"v": 1, "cmd": "ping"}))["ok"] is True
            await conn.aclose()
        # One warning per connection, the rest at debug: a bad client can't flood the log.
        events = [json.loads(line) for line in logged.getvalue().splitlines()]
        rejected = [e for e in events if e["event"] == "control_request_rejected"]
        assert [e["level"] for e in rejected].count("warning") == 1
        assert rejected[0]["peer_uid"] == os.getuid()
        assert target.calls == []


async def test_oversized_request_closes_the_connection(target: FakeTarget, sock: str) -> None:
    with trio.fail_after(10):
        async with control(target, sock):
            conn = await Raw.connect(sock)

            async def flood() -> None:
                for _ in range(100):  # 6.4 MB without a newline: the server stops reading
                    await conn.send(b"x" * 65536)

            with pytest.raises(trio.BrokenResourceError):
                await flood()
            await conn.aclose()
            conn = await Raw.connect(sock)
            await conn.send(b'{"v": 1, "cmd": "ping", "names": ["' + b"a" * 70000 + b'"]}\n')
            reply = await conn.receive()
            assert reply is None or "request too large" in reply["error"]
            await conn.aclose()
            assert (await ping(sock))["ok"] is True


async def test_a_thousand_bad_requests_and_200_clients_disturb_nothing(
    target: FakeTarget, sock: str
) -> None:
    """Garbage, oversize and a crowd of clients: the server answers a ping after, services untouched."""
    with trio.fail_after(60):
        before = target.snapshot()
        async with control(target, sock):

            async def garbage(i: int) -> None:
                conn = await Raw.connect(sock)
                try:
                    for j in range(50):
                        line, _ = BAD_REQUESTS[(i + j) % len(BAD_REQUESTS)]
                        await conn.call(line + b"\n")
                    if i % 4 == 0:  # and some oversized ones, which close the connection
                        await conn.send(b"{" * (70 * 1024))
                        assert await conn.receive() in (None, {"v": 1, "ok": False, "error": ANY})
                finally:
                    await conn.aclose()

            async def good(i: int) -> None:
                conn = await Raw.connect(sock)
                try:
                    assert (await conn.call({"v": 1, "cmd": "ping"}))["ok"] is True
                    reply = await conn.call({"v": 1, "cmd": "status", "names": ["web"]})
                    assert reply["result"][0]["name"] == "web"
                finally:
                    await conn.aclose()

            async with trio.open_nursery() as nursery:
                for i in range(20):  # 20 x 50 = 1,000 malformed requests
                    nursery.start_soon(garbage, i)
                for i in range(200):
                    nursery.start_soon(good, i)
            assert (await ping(sock))["ok"] is True
        assert target.snapshot() == before
        assert target.calls == []


async def test_a_slow_client_is_dropped_and_blocks_no_one(target: FakeTarget, sock: str) -> None:
    with trio.fail_after(10):
        async with control(target, sock, idle_timeout=0.5):
            slow = await Raw.connect(sock)
            await slow.send(b'{"v": 1, "cmd"')  # and nothing more
            start = time.monotonic()
            assert (await ping(sock))["ok"] is True
            assert time.monotonic() - start < 0.3
            assert await slow.receive() is None  # closed by the server
            assert 0.4 < time.monotonic() - start < 3
            await slow.aclose()


async def test_too_many_connections_are_turned_away(target: FakeTarget, sock: str) -> None:
    with trio.fail_after(10):
        async with control(target, sock, max_connections=3):
            idle = [await Raw.connect(sock) for _ in range(3)]
            assert (await idle[0].call({"v": 1, "cmd": "ping"}))["ok"] is True
            reply = await ping(sock)
            assert reply["ok"] is False
            assert "too many control connections" in reply["error"]
            for conn in idle:
                await conn.aclose()
            for _ in range(100):
                if (await ping(sock))["ok"]:
                    break
                await trio.sleep(0.01)
            else:
                pytest.fail("the server never took connections again")


async def test_several_requests_on_one_connection(target: FakeTarget, sock: str) -> None:
    with trio.fail_after(10):
        async with control(target, sock):
            conn = await Raw.connect(sock)
            await conn.send(
                b'{"v": 1, "cmd": "ping"}\n{"v": 1, "cmd": "status", "names": ["db"]}\n'
            )
            assert (await conn.receive() or {})["ok"] is True
            assert (await conn.receive() or {})["result"][0]["name"] == "db"
            await conn.aclose()


# -- who may connect ---------------------------------------------------------------------------


def _as_nobody(path: str) -> str:
    """Connect to ``path`` as uid 65534 and send a ping; what came back, or the errno name."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no trio, no pytest, just the syscalls
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            try:
                s.connect(path)
                s.sendall(b'{"v": 1, "cmd": "stop", "names": ["web"]}\n')
                answer = s.recv(65536)
            except OSError as exc:
                answer = (exc.__class__.__name__ + "\n").encode()
            os.write(write, answer)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return data.decode()


@needs_root
async def test_other_uid_cannot_reach_the_0600_socket(target: FakeTarget, sockdir: str) -> None:
    with trio.fail_after(10):
        os.chmod(sockdir, 0o755)
        path = os.path.join(sockdir, "c.sock")
        async with control(target, path):
            assert await trio.to_thread.run_sync(_as_nobody, path) == "PermissionError\n"
        assert target.calls == []


@needs_root
async def test_other_uid_is_refused_by_its_credentials(target: FakeTarget, sockdir: str) -> None:
    """Even when the socket's mode lets it in, SO_PEERCRED keeps another uid out."""
    with trio.fail_after(10):
        os.chmod(sockdir, 0o755)
        path = os.path.join(sockdir, "c.sock")
        async with control(target, path) as logged:
            os.chmod(path, 0o666)
            answer = await trio.to_thread.run_sync(_as_nobody, path)
            assert json.loads(answer) == {
                "v": 1,
                "ok": False,
                "error": f"permission denied: uid {NOBODY} may not control tinit",
            }
            assert (await ping(path))["ok"] is True
        assert target.calls == []
        assert '"peer_uid": 65534' in logged.getvalue()


# -- helpers ---------------------------------------------------------------------------------


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY: Any = _Any()

#: the client as cli.py runs it, without importing the test helpers (nor trio)
CLIENT = """
import argparse, sys
from tinit import client
from tinit.errors import TinitError
parser = argparse.ArgumentParser(prog="tinit")
client.add_parsers(parser.add_subparsers(dest="command", required=True))
try:
    sys.exit(client.run(parser.parse_args()))
except TinitError as exc:
    print(f"tinit: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""


class LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> str:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some(4096)
            assert chunk, f"EOF after {self.buffer!r}"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()
