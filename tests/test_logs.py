"""tinit's own events as an operator reads them: one line each, console or JSON."""

from __future__ import annotations

import io
import json
import os
import re

import pytest

from tinit.logs import Log, make_logger

_CONSOLE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) \[(?P<level>[a-z]+) *\] (?P<rest>.*)$"
)


def _console(level: str = "debug") -> tuple[io.StringIO, Log]:
    stream = io.StringIO()
    return stream, make_logger(level, "console", stream)


def test_console_lines_have_a_timestamp_a_padded_level_and_aligned_fields() -> None:
    stream, log = _console()
    log.info("service_ready", service="web", pid=12)
    log.warning("a_name_longer_than_the_event_column", n=1)
    log.error("bare")
    first, second, third = stream.getvalue().splitlines()
    match = _CONSOLE.match(first)
    assert match is not None, first
    assert match["level"] == "info"
    assert first.index("service_ready") == second.index("a_name_longer")  # the level column
    assert match["rest"] == "service_ready" + " " * 11 + " service=web pid=12"
    assert second.endswith("a_name_longer_than_the_event_column n=1")
    assert third.endswith("[error    ] bare")


def test_bound_fields_come_first_and_call_fields_override_them() -> None:
    stream, log = _console()
    log.bind(service="web", pid=1).info("exited", pid=2, code=0)
    assert stream.getvalue().rstrip("\n").endswith("service=web pid=2 code=0")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain", "plain"),
        ("/etc/tinit/services.yaml", "/etc/tinit/services.yaml"),
        ("two words", "'two words'"),
        ("", "''"),
        ("a=b", "'a=b'"),
        (None, "None"),
        (1.5, "1.5"),
        (["sh", "-c", "x"], "['sh', '-c', 'x']"),
    ],
)
def test_console_values_are_bare_only_when_unambiguous(value: object, shown: str) -> None:
    stream, log = _console()
    log.info("e", v=value)
    assert stream.getvalue().rstrip("\n").endswith(f" v={shown}")


@pytest.mark.parametrize(
    "hostile", ["a\nFAKE [error] x", "\x1b[2J\x1b[31mred", "tab\there", "nul\x00"]
)
def test_a_hostile_value_can_neither_forge_a_line_nor_paint_the_terminal(hostile: str) -> None:
    stream, log = _console()
    log.info("service_exited", service=hostile, error=hostile)
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert "\x1b" not in text and "\x00" not in text and "\t" not in text


def test_json_lines_parse_and_carry_event_level_and_timestamp() -> None:
    stream = io.StringIO()
    log = make_logger("info", "json", stream).bind(service="web")
    log.info("service_starting", pid=7, command=["/bin/sh", "-c", "exec x"], raw=b"\xff")
    log.debug("hidden")
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["event"] == "service_starting"
    assert record["level"] == "info"
    assert record["service"] == "web" and record["pid"] == 7
    assert record["command"] == ["/bin/sh", "-c", "exec x"]
    assert record["raw"] == repr(b"\xff")  # what JSON cannot hold is shown, not dropped
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["timestamp"])


def test_the_level_filter_drops_events_below_it() -> None:
    stream = io.StringIO()
    log = make_logger("warning", "console", stream)
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    events = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    assert events == ["w", "e"]


def test_a_terminal_gets_colours_and_a_pipe_gets_none() -> None:
    read_end, write_end = os.openpty()
    try:
        with open(write_end, "w", closefd=False) as tty:
            log = make_logger("info", "console", tty)
            log.info("coloured", k="v")
        shown = os.read(read_end, 4096).decode()
    finally:
        os.close(read_end)
        os.close(write_end)
    assert "\x1b[" in shown and "coloured" in shown
    stream, plain = _console()
    plain.info("plain", k="v")
    assert "\x1b" not in stream.getvalue()


def test_a_closed_stderr_loses_the_event_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    with io.TextIOWrapper(io.FileIO(write_end, "w"), write_through=True) as gone:
        log = make_logger("info", "console", gone)
        log.info("nobody_reads_this")  # EPIPE: no exception reaches the caller
        log.error("nor_this")
