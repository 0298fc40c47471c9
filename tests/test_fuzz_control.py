"""Fuzzing the control protocol, both ways: whatever arrives, only the documented errors come out.

Server side, a request line of any bytes or any JSON is either refused with
one error reply or served with one reply; it never raises, never logs an
error, and never leaves the connection without an answer. Client side, a
reply of any bytes or any JSON is either believed, in the shape the printing
code expects, or refused with a `ControlError`: one line and exit 1.

CI runs 200 examples per target. A long run, 10,000 per target (tens of
minutes), which keeps the examples that fail in .hypothesis/ to replay them:

    TINIT_FUZZ=long .venv/bin/pytest -p no:cacheprovider tests/test_fuzz_control.py
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import FakeTarget
from tinit import client
from tinit.control import _BadRequest, _Connection, _parse, _Server
from tinit.errors import ControlError
from tinit.logs import make_logger
from tinit.replies import (
    logs_header,
    logs_part,
    parse_reply,
    problems,
    reload_result,
    status_result,
)

_LONG = os.environ.get("TINIT_FUZZ") == "long"
_SLOW = [HealthCheck.too_slow, HealthCheck.filter_too_much]
FUZZ = (
    settings(max_examples=10_000, deadline=None, suppress_health_check=_SLOW)
    if _LONG
    # CI: a bounded run that leaves nothing behind (no example database)
    else settings(max_examples=200, deadline=None, suppress_health_check=_SLOW, database=None)
)
pytestmark = pytest.mark.timeout(0 if _LONG else 120)  # 0: a long run takes its time

COMMANDS = ["status", "start", "stop", "restart", "signal", "reload", "logs", "ping"]
FIELDS = ["v", "cmd", "names", "signal", "n", "follow", "total", "end", "ok", "result", "error", "problems",
          "services", "lines", "ts", "service", "stream", "line", "name", "state", "pid",
          "uptime", "restarts", "last_exit", "ready", "memory", "pids", "completed",
          "added", "removed", "changed", "exit_code", "oom"]  # fmt: skip
WORDS = ["web", "worker", "nope", "", "SIGHUP", "hup", "SIGRTMIN+3", "SIGRTMAX-99", "0", "64",
         "running", "stopped", "stdout", "stderr", "x" * 300]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(WORDS + COMMANDS),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=6))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=30,
)
names = st.lists(st.sampled_from(["web", "worker", "nope"]), max_size=3) | values
requests = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 1.0, True, 2, "1"]), "cmd": st.sampled_from(COMMANDS) | values},
    optional={
        "names": names,
        "signal": st.sampled_from(WORDS) | values,
        "n": st.integers(min_value=-2, max_value=2**70) | values,
        "follow": st.booleans() | values,
        "total": st.booleans() | values,
        "junk": values,
    },
)
service = st.fixed_dictionaries(
    {
        "name": st.sampled_from(WORDS) | values,
        "state": st.sampled_from(["running", "stopped"]) | values,
        "pid": st.none() | st.integers() | values,
        "uptime": st.none() | st.floats() | values,
        "restarts": st.integers() | values,
        "last_exit": st.none() | st.dictionaries(st.sampled_from(FIELDS), values) | values,
        "ready": st.booleans() | values,
        "memory": st.none() | st.integers() | values,
        "pids": st.none() | st.integers() | values,
    },
    optional={"completed": st.booleans() | values, "oom_kills": values},
)
run = st.fixed_dictionaries(
    {
        "ts": st.floats() | values,
        "service": st.sampled_from(WORDS) | values,
        "stream": st.sampled_from(["stdout", "stderr"]) | values,
        "lines": st.lists(st.text(max_size=20) | values, max_size=3) | values,
    }
)
results = st.one_of(
    values,
    st.lists(service, max_size=3),
    st.fixed_dictionaries({"services": st.lists(st.text(max_size=8)) | values}),
    st.fixed_dictionaries({"lines": st.lists(run, max_size=3) | values}),
    st.fixed_dictionaries({"end": st.just(True) | values}),
    st.dictionaries(
        st.sampled_from(["added", "removed", "changed", "updated", "unchanged"]),
        st.lists(st.text(max_size=8)) | values,
    ),
    run,
)
replies = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 1.0, True, 2]), "ok": st.booleans() | values},
    optional={"result": results, "error": st.text(max_size=20) | values, "problems": values},
)


# -- the server: request parsing and dispatch ---------------------------------------------------


@FUZZ
@given(st.binary(max_size=300) | requests.map(lambda r: json.dumps(r).encode()))
def test_parse_raises_only_bad_request(line: bytes) -> None:
    try:
        request = _parse(line)
    except _BadRequest as exc:
        error = str(exc)
        assert error
        return
    assert request["cmd"] in COMMANDS
    assert all(isinstance(n, str) and n for n in request["names"])
    assert request["n"] is None or (type(request["n"]) is int and request["n"] >= 0)
    assert type(request["follow"]) is bool
    assert request["cmd"] != "signal" or type(request["signal"]) is int


async def _answer(line: bytes) -> tuple[list[dict[str, Any]], str]:
    """Serve ``line`` to a fake supervisor; return the messages sent back and the log."""
    log_text = io.StringIO()
    log = make_logger(level="debug", fmt="json", stream=log_text)
    target = FakeTarget("web", "worker")
    target.add_line("web", "hello")
    ours, theirs = trio.testing.memory_stream_pair()
    connection = _Connection(ours, _Server(target, log, 5.0, 4))  # type: ignore[arg-type]
    received = bytearray()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.answer, line)
            while not (received.endswith(b"\n") and _complete(bytes(received))):
                chunk = await theirs.receive_some(65536)
                assert chunk, "the server sent no reply"
                received += chunk
            await theirs.send_stream.aclose()  # ends a ``logs --follow``
    messages = [json.loads(part) for part in bytes(received).splitlines()]
    return messages, log_text.getvalue()


def _streamed(message: dict[str, Any]) -> bool:
    """A message of a ``logs`` stream that more messages follow: the names, or lines."""
    result = message.get("result")
    return (
        bool(message["ok"])
        and isinstance(result, dict)
        and set(result) in ({"services"}, {"lines"})
    )


def _complete(received: bytes) -> bool:
    """Whether ``received`` holds a whole answer: one reply, or a ``logs`` stream to its end."""
    return not _streamed(json.loads(received.splitlines()[-1]))


@FUZZ
@given(st.binary(max_size=200) | requests.map(lambda r: json.dumps(r).encode()))
def test_any_request_gets_one_reply_and_logs_no_error(line: bytes) -> None:
    messages, log = trio.run(_answer, line)
    *streamed, reply = messages
    assert all(m["v"] == 1 for m in messages)
    if streamed:  # logs: the names, runs of lines, then the end
        assert set(streamed[0]["result"]) == {"services"}
        assert all(set(m["result"]) == {"lines"} for m in streamed[1:])
        assert reply == {"v": 1, "ok": True, "result": {"end": True}}
    assert isinstance(reply["ok"], bool)
    assert reply["ok"] or isinstance(reply["error"], str)
    assert '"level": "error"' not in log, log


# -- the client: reply framing, parsing and checking --------------------------------------------


def _use(message: dict[str, Any]) -> None:
    """Do with a believed reply what every client command would do; ControlError only."""
    result = message.get("result")
    for check in (status_result, reload_result, logs_header, logs_part):
        with contextlib.suppress(ControlError):
            check(result, "/x")
    with contextlib.suppress(ControlError):
        problems(message, "/x")
    with contextlib.suppress(ControlError):
        services = status_result(result, "/x")
        client.format_status(services)
        [client._healthy(s) for s in services]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(ControlError):
        client._print_runs(logs_part(result, "/x") or [], 8)


@FUZZ
@given(st.binary(max_size=300) | replies.map(lambda r: json.dumps(r).encode()))
def test_any_reply_is_believed_in_shape_or_refused_with_a_control_error(line: bytes) -> None:
    try:
        message = parse_reply(line, "/x")
    except ControlError as exc:
        error = str(exc)
        assert "\n" not in error
        return
    assert isinstance(message["ok"], bool)
    _use(message)


@FUZZ
@given(st.lists(st.binary(max_size=80), max_size=6), st.integers(min_value=1, max_value=100))
def test_reply_framing_ends_in_messages_or_a_control_error(
    chunks: list[bytes], max_reply: int
) -> None:
    """Any bytes in any pieces, then EOF: messages, then None or a ControlError."""
    ours, theirs = socket.socketpair()
    connection = object.__new__(client.Connection)
    connection.path, connection.timeout, connection.max_reply = "/x", 5.0, max_reply
    connection._buffer, connection._sock, connection._deadline = bytearray(), ours, None
    with ours, theirs:
        ours.settimeout(5)
        for chunk in chunks:
            theirs.sendall(chunk)
        theirs.shutdown(socket.SHUT_WR)
        error = ""
        try:
            while (message := connection.receive()) is not None:
                assert isinstance(message["ok"], bool)
        except ControlError as exc:
            error = str(exc)
        assert "\n" not in error
