"""What tinit owes the processes it did not start: orphans, zombies, signals.

Services fork children and abandon them; tinit, as PID 1, inherits and reaps
them, each with its own status. A zombie among tinit's children must not live
long, and a signal sent to tinit that it forwards must reach every service
ready for it.
"""

from __future__ import annotations

import bisect
import signal
from collections import Counter, defaultdict
from typing import Any

from _common import percentile

from .evidence import Evidence
from .record import Check, Stats


def check_orphans(ev: Evidence, stats: Stats) -> Check:
    """Every orphan a service abandoned was reaped by tinit, with its own exit status."""
    reaped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in ev.events:
        if e["event"] == "orphan_reaped":
            reaped[e["pid"]].append(e)
    starts: dict[int, list[float]] = defaultdict(list)
    for runs in ev.runs.values():
        for run in runs:
            starts[run.pid].append(run.t_start)
    used: set[int] = set()
    problems: list[str] = []
    forked = 0
    statuses: Counter[str] = Counter()
    for name, records in ev.journal.items():
        for record in records:
            if record["k"] != "forked":
                continue
            for pid, code in record["procs"]:
                forked += 1
                match = next(
                    (e for e in reaped.get(pid, []) if e["_t"] >= record["t0"] - 0.01
                     and e["_i"] not in used),
                    None,
                )  # fmt: skip
                if match is None:
                    problems.append(
                        f"{name}: orphan pid {pid} (run {record['run']}, {record['storm']})"
                        " was never reported reaped"
                    )
                    continue
                used.add(match["_i"])
                sig = match.get("signal")
                got = f"signal {sig}" if sig else f"code {match.get('exit_code')}"
                statuses[sig or "exit"] += 1
                if got != f"code {code}" and sig not in ("SIGTERM", "SIGKILL"):
                    problems.append(
                        f"{name}: orphan pid {pid} meant code {code}, reaped with {got}"
                    )
    total = sum(len(v) for v in reaped.values())
    stats["orphans_forked"] = forked
    stats["orphans_reaped"] = total
    return Check(
        "orphans reaped",
        not problems,
        f"{forked} orphans forked by the services, each reaped by tinit with its own status"
        f" ({dict(statuses)}); {total} orphan_reaped events in all"
        f" ({total - len(used)} from storms cut short before they were journaled)",
        problems,
    )


def check_zombies(ev: Evidence, stats: Stats) -> Check:
    """The monitor never saw a child of tinit stay a zombie for more than a second."""
    mon = ev.soak.monitor
    assert mon is not None
    problems = [
        f"zombie pid {pid} (host) stayed a zombie child of tinit for at least {age:.2f}s"
        for (pid, _), age in sorted(mon.old_zombies.items())
    ]
    return Check(
        "no zombie older than 1 s",
        not problems,
        f"{mon.scans} scans of tinit's children at 4 Hz saw {mon.zombie_sightings} zombies;"
        f" the oldest had been one for {mon.max_zombie_age:.2f}s (scan resolution 0.25 s)",
        problems,
    )


def check_signals(ev: Evidence, stats: Stats) -> Check:
    """Every signal tinit forwarded reached every service ready for it.

    A burst sent at t is forwarded when tinit gets to it (its next
    ``signal_received`` of that signal; repeats sent meanwhile merge into
    it). A run must get it when that forwarding falls between the run's
    handlers being set (its intent) and the start of its last act (after
    ``wrote`` it pauses, then exits or dies; stubborn never acts).
    """
    problems: list[str] = []
    latencies: list[float] = []
    checked = 0
    bursts = ev.soak.bursts
    forwards: dict[str, list[float]] = {}
    for e in ev.events:
        if e["event"] == "signal_received":
            forwards.setdefault(e["signal"], []).append(e["_t"])
    for series in forwards.values():
        series.sort()
    handled: list[tuple[float, str, float]] = []  # (sent, signal, forwarded)
    for t, signum in bursts:
        sig = signal.Signals(signum).name
        series = forwards.get(sig, [])
        k = bisect.bisect_left(series, t - 0.002)
        if k == len(series):
            problems.append(f"tinit never handled {sig} sent at {t:.3f}")
        else:
            handled.append((t, sig, series[k]))
    for name, runs in ev.runs.items():
        for run in runs:
            if run.intent is None or run.exit is None:
                continue
            alive_from = run.intent["t"]
            alive_to = run.exit["_t"] - 1.0
            if run.wrote_t is not None and name != "stubborn":
                alive_to = min(alive_to, run.wrote_t)
            for t, sig, forwarded in handled:
                if not alive_from + 0.05 <= forwarded <= alive_to - 0.05:
                    continue
                if run.stop_sent and forwarded > run.exit["_t"] - 5:
                    continue  # stopped meanwhile: its group may be going away
                checked += 1
                after = [g for g, s in run.got if s == sig and g >= t - 0.005]
                if not after:
                    problems.append(
                        f"{name} pid {run.pid}: {sig} sent at {t:.3f}, forwarded at"
                        f" {forwarded:.3f}, never arrived"
                    )
                else:
                    latencies.append(min(after) - t)
    stats["signals_sent"] = len(bursts)
    lat = (
        f"p50 {percentile(latencies, 50) * 1000:.1f} ms, p99"
        f" {percentile(latencies, 99) * 1000:.1f} ms"
        if latencies
        else "n/a"
    )
    return Check(
        "forwarded signals",
        not problems,
        f"{len(bursts)} signals sent to tinit in bursts; {checked} (signal, running service)"
        f" pairs checked, each delivered (first arrival after sending: {lat})",
        problems,
    )
