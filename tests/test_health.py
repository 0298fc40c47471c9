"""The HTTP health endpoint: /healthz, /readyz, /metrics, and its defences."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import h11
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import FakeTarget
from tinit.control import Metrics
from tinit.errors import ControlError
from tinit.health import METRICS_CONTENT_TYPE, render_metrics, serve_health
from tinit.logs import make_logger
from tinit.state import State


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget("web", "worker")


@asynccontextmanager
async def health(target: FakeTarget, errors: int = 0, **kwargs: Any) -> AsyncIterator[int]:
    """Serve ``target`` on 127.0.0.1 and a free port for the duration; yields the port.

    No client can make tinit log an error: only the ``errors`` the test expects.
    """
    stream = io.StringIO()
    log = make_logger(level="debug", fmt="json", stream=stream)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_health, "127.0.0.1", 0, target, log, **kwargs))
        yield port
        nursery.cancel_scope.cancel()
    assert stream.getvalue().count('"level": "error"') == errors, stream.getvalue()


class Http:
    """A keep-alive HTTP/1.1 client on h11."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> Http:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def request(
        self, method: str, path: str, headers: list[tuple[str, str]] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        all_headers = [("Host", "localhost"), *(headers or [])]
        data = self.conn.send(h11.Request(method=method, target=path, headers=all_headers))
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        response: h11.Response | None = None
        body = b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event!r}")
        assert response is not None
        headers_out = {k.decode().lower(): v.decode() for k, v in response.headers}
        return response.status_code, headers_out, body

    async def aclose(self) -> None:
        await self.stream.aclose()


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    client = await Http.connect(port)
    try:
        return await client.request(method, path)
    finally:
        await client.aclose()


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    try:
        while chunk := await stream.receive_some(65536):
            data += chunk
    except trio.BrokenResourceError:
        pass  # reset: closed with our bytes unread
    return data


# -- the endpoints ---------------------------------------------------------------------------


async def test_healthz_follows_whether_a_critical_service_failed(target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with health(target) as port:
            status, headers, body = await get(port, "/healthz")
            assert (status, body) == (200, b"ok\n")
            assert headers["content-type"] == "text/plain; charset=utf-8"
            target.alive = False
            status, _, body = await get(port, "/healthz")
            assert (status, body) == (503, b"a critical service failed\n")


async def test_readyz_follows_every_service_being_ready(target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with health(target) as port:
            assert (await get(port, "/readyz"))[0] == 200
            target.services["worker"].ready = False
            assert (await get(port, "/readyz"))[:3:2] == (503, b"not ready\n")
            target.services["worker"].ready = True
            target.services["web"].state = State.BACKOFF
            assert (await get(port, "/readyz"))[0] == 503
            assert (await get(port, "/healthz"))[0] == 200  # alive all the same


async def test_query_strings_are_ignored(target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with health(target) as port:
            assert (await get(port, "/healthz?verbose=1"))[0] == 200


async def test_metrics_parse_and_carry_every_value(target: FakeTarget) -> None:
    with trio.fail_after(10):
        web = target.services["web"]
        web.restarts, web.oom_kills, web.log_bytes = 3, 1, 4096
        web.log_rotations = 5
        web.exits = {"0": 2, "1": 1, "SIGKILL": 1}
        web.notify_drops, web.watchdog_misses = {"stranger": 5, "rate": 900}, 2
        worker = target.services["worker"]
        worker.state, worker.ready = State.BACKOFF, False
        target.orphans_reaped = 7
        async with health(target) as port:
            status, headers, body = await get(port, "/metrics")
        assert status == 200
        assert headers["content-type"] == METRICS_CONTENT_TYPE
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        values = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families.values()
            for s in f.samples
        }

        def one(name: str, **labels: str) -> float:
            return values[(name, tuple(sorted(labels.items())))]

        assert one("tinit_service_up", service="web") == 1
        assert one("tinit_service_up", service="worker") == 0
        assert one("tinit_service_ready", service="web") == 1
        assert one("tinit_service_ready", service="worker") == 0
        assert one("tinit_service_restarts_total", service="web") == 3
        assert one("tinit_service_restarts_total", service="worker") == 0
        assert one("tinit_service_exits_total", service="web", code="0") == 2
        assert one("tinit_service_exits_total", service="web", code="1") == 1
        assert one("tinit_service_exits_total", service="web", code="SIGKILL") == 1
        assert one("tinit_service_oom_kills_total", service="web") == 1
        assert one("tinit_service_log_bytes", service="web") == 4096
        assert one("tinit_service_notify_dropped_total", service="web", reason="stranger") == 5
        assert one("tinit_service_notify_dropped_total", service="web", reason="rate") == 900
        assert one("tinit_service_watchdog_misses_total", service="web") == 2
        assert one("tinit_service_main_pid_refused_total", service="worker") == 0
        assert one("tinit_service_log_rotations_total", service="web") == 5
        assert one("tinit_service_log_rotations_total", service="worker") == 0
        assert one("tinit_orphans_reaped_total") == 7
        assert one("tinit_uptime_seconds") == 12.5
        kinds = {name: f.type for name, f in families.items()}
        assert kinds == {
            "tinit_service_up": "gauge",
            "tinit_service_ready": "gauge",
            "tinit_service_restarts": "counter",
            "tinit_service_exits": "counter",
            "tinit_service_oom_kills": "counter",
            "tinit_service_log_bytes": "gauge",
            "tinit_service_notify_dropped": "counter",
            "tinit_service_watchdog_misses": "counter",
            "tinit_service_main_pid_refused": "counter",
            "tinit_service_log_rotations": "counter",
            "tinit_orphans_reaped": "counter",
            "tinit_uptime_seconds": "gauge",
        }
        assert all(f.documentation for f in families.values())


def test_label_values_are_escaped() -> None:
    """Backslash, double quote and newline survive the round trip through the parser."""
    target = FakeTarget('we"ird\\name\nx')
    target.services['we"ird\\name\nx'].exits = {"0": 1}
    text = render_metrics(target.metrics())
    [up] = [f for f in text_string_to_metric_families(text) if f.name == "tinit_service_up"]
    assert up.samples[0].labels == {"service": 'we"ird\\name\nx'}


def test_float_and_huge_values_render() -> None:
    text = render_metrics(Metrics(services=[], orphans_reaped_total=10**18, uptime_seconds=0.25))
    assert "tinit_orphans_reaped_total 1000000000000000000\n" in text
    assert "tinit_uptime_seconds 0.25\n" in text


async def test_head_answers_without_a_body(target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with health(target) as port:
            status, headers, body = await get(port, "/healthz", method="HEAD")
            assert (status, body) == (200, b"")
            assert headers["content-length"] == "3"


async def test_unknown_path_is_404_and_other_methods_405(target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with health(target) as port:
            assert (await get(port, "/"))[0] == 404
            assert (await get(port, "/healthz/../metrics"))[0] == 404
            status, headers, _ = await get(port, "/healthz", method="POST")
            assert status == 405
            assert headers["allow"] == "GET, HEAD"
            assert (await get(port, "/metrics", method="DELETE"))[0] == 405


async def test_keep_alive_serves_several_requests_on_one_connection(target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with health(target) as port:
            client = await Http.connect(port)
            for path in ("/healthz", "/readyz", "/metrics", "/nope", "/healthz"):
                status, _, _ = await client.request("GET", path)
                assert status in (200, 404)
            status, headers, _ = await client.request(
                "GET", "/healthz", headers=[("Connection", "close")]
            )
            assert status == 200
            assert headers["connection"] == "close"
            assert await read_until_closed(client.stream) == b""
            await client.aclose()


async def test_target_failure_is_a_500_not_a_crash(target: FakeTarget) -> None:
    def broken() -> tuple[bool, bool]:
        raise RuntimeError("boom")

    with trio.fail_after(10):
        async with health(target, errors=1) as port:
            target.health = broken  # type: ignore[method-assign]
            assert (await get(port, "/healthz"))[:3:2] == (500, b"internal error\n")
            assert (await get(port, "/metrics"))[0] == 200


async def test_a_port_in_use_is_a_control_error(target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with health(target) as port:
            log = make_logger(level="debug", fmt="json", stream=io.StringIO())
            with pytest.raises(ControlError, match=f"cannot listen on 127.0.0.1:{port}"):
                await serve_health("127.0.0.1", port, target, log)


# -- defences --------------------------------------------------------------------------------


async def test_slowloris_is_dropped_and_blocks_no_one(target: FakeTarget) -> None:
    """Headers one byte at a time: others are served meanwhile, the slow one is cut off."""
    with trio.fail_after(15):
        async with health(target, timeout=1.0) as port:
            slow = await trio.open_tcp_stream("127.0.0.1", port)
            start = time.monotonic()
            closed_after: list[float] = []

            async def dribble() -> None:
                request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100
                try:
                    for byte in request:
                        await slow.send_all(bytes([byte]))
                        await trio.sleep(0.1)
                except trio.BrokenResourceError:
                    pass
                closed_after.append(time.monotonic() - start)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(dribble)
                await trio.sleep(0.3)
                for _ in range(3):
                    t0 = time.monotonic()
                    assert (await get(port, "/healthz"))[0] == 200
                    assert time.monotonic() - t0 < 0.5
                data = await read_until_closed(slow)
                assert data == b""  # closed without an answer
                dropped = time.monotonic() - start
                assert 0.9 < dropped < 3, dropped
            assert closed_after and closed_after[0] < 5
            await slow.aclose()


async def test_idle_keep_alive_connection_is_closed(target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with health(target, timeout=0.5) as port:
            client = await Http.connect(port)
            assert (await client.request("GET", "/healthz"))[0] == 200
            start = time.monotonic()
            assert await read_until_closed(client.stream) == b""
            assert 0.4 < time.monotonic() - start < 3
            await client.aclose()


async def test_oversized_headers_get_431(target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with health(target) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 40000 + b"\r\n\r\n"
            try:
                await stream.send_all(head)
            except trio.BrokenResourceError:
                pass
            reply = await read_until_closed(stream)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 431 ")
            await stream.aclose()
            assert (await get(port, "/healthz"))[0] == 200


async def test_garbage_gets_400_and_a_closed_connection(target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with health(target) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"\x16\x03\x01 this is TLS, or nonsense\r\n\r\n")
            reply = await read_until_closed(stream)
            assert reply.startswith(b"HTTP/1.1 400 ")
            assert b"connection: close" in reply.lower()
            await stream.aclose()


async def test_oversized_body_gets_413(target: FakeTarget) -> None:
    with trio.fail_after(10):
        async with health(target) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            head = b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"
            try:
                await stream.send_all(head + b"a" * 200000)
            except trio.BrokenResourceError:
                pass
            reply = await read_until_closed(stream)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 413 ")
            await stream.aclose()


async def test_past_the_limit_the_oldest_idle_connection_is_closed(target: FakeTarget) -> None:
    """Not the newcomer: a crowd of idle connections must not lock out a probe."""
    with trio.fail_after(10):
        async with health(target, max_connections=2) as port:
            idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
            await trio.sleep(0.1)  # accepted
            assert (await get(port, "/healthz"))[0] == 200
            assert await read_until_closed(idle[0]) == b""  # the oldest went first
            for stream in idle:
                await stream.aclose()


async def test_a_crowd_of_clients_is_served(target: FakeTarget) -> None:
    with trio.fail_after(30):
        async with health(target) as port:
            statuses: list[int] = []

            async def one() -> None:
                statuses.append((await get(port, "/metrics"))[0])

            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(one)
            assert statuses == [200] * 100
