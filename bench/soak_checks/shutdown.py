"""The final SIGTERM ends everything in time and in order; tinit's log has no surprise."""

from __future__ import annotations

from collections import Counter
from typing import Final

from .evidence import Evidence
from .record import RACE_LEAD, SHUTDOWN_TIMEOUT, STUBBORN_STOP, Check, Stats, strip

#: events at level error that the chaos provokes on purpose
EXPECTED_ERRORS: Final = frozenset({"service_gave_up", "oom_kill"})


def check_shutdown(ev: Evidence, stats: Stats) -> Check:
    """The final SIGTERM ended everything in time, started nothing, and exited 137."""
    soak = ev.soak
    problems: list[str] = []
    began = [e for e in ev.events if e["event"] == "shutdown_began"]
    finished = [e for e in ev.events if e["event"] == "shutdown_finished"]
    after = [e for e in ev.events if began and e["_i"] > began[0]["_i"]]
    killed = sorted({e["service"] for e in after if e["event"] == "service_killed"})
    expected = 137 if killed else 0
    if len(began) != 1 or began[0].get("reason") != "signal SIGTERM":
        problems.append(f"shutdown_began events: {[e.get('reason') for e in began]}")
    for e in after:
        if e["event"] == "service_starting":
            problems.append(
                f"{e['service']} pid {e['pid']} was started after the shutdown began"
                " (an operator's restart that was waiting for the old run to stop)"
            )
    if "stubborn" not in killed:
        problems.append("stubborn (ignores SIGTERM) was not SIGKILLed at its stop_timeout")
    if soak.exit_code != 137:
        problems.append(f"exit code {soak.exit_code}, not 137: a shutdown that SIGKILLs exits 137")
    if not finished or finished[-1].get("exit_code") != expected:
        problems.append(f"shutdown_finished says {finished[-1] if finished else None}")
    secs = soak.shutdown_seconds
    if not secs <= SHUTDOWN_TIMEOUT + 0.5:
        problems.append(f"shutdown took {secs:.2f}s, shutdown_timeout is {SHUTDOWN_TIMEOUT}s")
    longest = max(s.stop_timeout for s in soak.specs) * 2  # a dependency chain of two
    if secs > longest + 2.0:
        problems.append(f"shutdown took {secs:.2f}s; nothing needed more than {longest}s")
    if secs < STUBBORN_STOP - RACE_LEAD - 0.05:
        # (stubborn's stop began RACE_LEAD before the SIGTERM: the racing restart)
        problems.append(f"shutdown took {secs:.2f}s, before stubborn's stop_timeout ran out")
    for runs in ev.runs.values():
        if runs and runs[-1].exit is None:
            problems.append(f"{runs[-1].service} pid {runs[-1].pid} never exited")
    return Check(
        "shutdown",
        not problems,
        f"SIGTERM -> tinit gone in {secs:.2f}s (shutdown_timeout {SHUTDOWN_TIMEOUT:g}s,"
        f" stubborn's stop_timeout {STUBBORN_STOP:g}s); exit code {soak.exit_code}"
        f" (SIGKILLed: {', '.join(killed) or 'none'})",
        problems,
    )


def check_shutdown_order(ev: Evidence, stats: Stats) -> Check:
    """At the shutdown, no dependency was told to stop before its dependents had ended."""
    problems: list[str] = []
    began = next((e["_i"] for e in ev.events if e["event"] == "shutdown_began"), None)
    pairs = [(s.name, d) for s in ev.soak.specs for d in s.depends]
    if began is None:
        return Check("shutdown order", False, "no shutdown_began", ["no shutdown_began"])
    tail = ev.events[began:]
    for dependent, dependency in pairs:
        stopping = [
            e["_i"] for e in tail
            if e.get("service") == dependency and e["event"] == "service_stopping"
        ]  # fmt: skip
        ended = [
            e["_i"] for e in tail
            if e.get("service") == dependent
            and e["event"] in ("service_exited", "service_stopped")
        ]  # fmt: skip
        if stopping and ended and stopping[0] < max(ended):
            problems.append(f"{dependency} got its stop signal before {dependent} had ended")
    return Check(
        "shutdown order",
        not problems,
        f"{len(pairs)} dependency pairs: each dependency got its stop signal only after its"
        " dependent had ended",
        problems,
    )


def check_own_log(ev: Evidence, stats: Stats) -> Check:
    """tinit logged no unexpected error and wrote nothing else to stderr."""
    problems: list[str] = []
    levels: Counter[tuple[str, str]] = Counter()
    for e in ev.events:
        levels[(e.get("level", "?"), e["event"])] += 1
        if e.get("level") == "error" and e["event"] not in EXPECTED_ERRORS:
            problems.append(f"error event: {strip(e)}")
    for line in ev.other_stderr[:10]:
        problems.append(f"stderr line that is neither an event nor service output: {line!r}")
    warnings = {f"{ev}": n for (lvl, ev), n in levels.items() if lvl == "warning"}
    stats["events"] = len(ev.events)
    return Check(
        "tinit's own log",
        not problems,
        f"{len(ev.events)} events, no unexpected error, no traceback, no dropped event;"
        f" warnings: {warnings}",
        problems,
    )
