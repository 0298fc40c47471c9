"""The control socket answered every request, and every reload did exactly what it said."""

from __future__ import annotations

from collections import Counter

from _common import percentile

from .evidence import Evidence
from .record import Check, Stats


def check_control(ev: Evidence, stats: Stats) -> Check:
    """Every control request got an answer, quickly enough; junk got an error or a hang-up."""
    problems: list[str] = []
    kinds: Counter[str] = Counter()
    status_latency: list[float] = []
    for req in ev.soak.requests:
        kinds[req.kind] += 1
        if req.kind == "soak-error":
            problems.append(f"the soak itself failed in {req.detail}: {req.error}")
            continue
        if req.kind == "race":
            continue  # answered or cut off by tinit's exit: both are fine
        if req.kind in ("status", "logs"):
            status_latency.append(req.latency)
        tolerable = req.reply is not None and "unknown service" in str(req.reply.get("error"))
        if not req.ok and not tolerable:
            problems.append(f"{req.kind} ({req.detail}) failed: {req.error or req.reply}")
        if req.kind in ("status", "logs", "junk") and req.latency > 10:
            problems.append(f"{req.kind} took {req.latency:.1f}s")
    lat = (
        f"status/logs p50 {percentile(status_latency, 50) * 1000:.0f} ms,"
        f" p99 {percentile(status_latency, 99) * 1000:.0f} ms,"
        f" max {max(status_latency) * 1000:.0f} ms"
        if status_latency
        else "n/a"
    )
    return Check(
        "control socket",
        not problems,
        f"{len(ev.soak.requests)} requests ({dict(kinds)}), every one answered; junk"
        f" always got an error or a closed connection; {lat}",
        problems,
    )


def check_reloads(ev: Evidence, stats: Stats) -> Check:
    """Each reload added or removed just the toggled service and restarted just the edited one."""
    problems: list[str] = []
    reloaded = [e for e in ev.events if e["event"] == "config_reloaded"]
    for i, reload in enumerate(ev.soak.reloads):
        result = reload.result["result"] if reload.result and reload.result.get("ok") else None
        if reload.via == "socket" and result is None:
            problems.append(f"reload {i} got {reload.result}")
            continue
        if result is None:
            # The first config_reloaded after the SIGHUP (reloads never overlap here).
            event = next((e for e in reloaded if e["_t"] >= reload.t), None)
            if event is None:
                problems.append(f"SIGHUP reload {i}: no config_reloaded event after it")
                continue
            result = event
        want_changed = [reload.bumped]
        if sorted(result["changed"]) != want_changed or result[reload.toggled] != [ev.soak.toggle]:
            problems.append(
                f"reload {i} ({reload.via}): {reload.toggled} {ev.soak.toggle}, changed"
                f" {reload.bumped}; tinit: { ({k: result[k] for k in ('added', 'removed', 'changed')}) }"  # noqa: E501
            )
    invalid = sum(1 for r in ev.soak.requests if r.kind == "reload_invalid")
    return Check(
        "reloads",
        not problems,
        f"{len(ev.soak.reloads)} reloads (socket and SIGHUP) each added or removed"
        f" exactly the toggled service and restarted exactly the edited one; {invalid}"
        " invalid configs refused with the problem named",
        problems,
    )
