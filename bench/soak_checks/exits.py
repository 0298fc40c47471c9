"""How each run of a service ended, and what tinit decided next.

Each exit tinit reports is matched to what its run wrote in its journal that
it meant to do (exit with a code, die of a signal, blow its memory limit) and
to who asked it to stop; each decision after an exit (restart after a delay,
give up, stay stopped) is recomputed from the service's restart policy and
its failures so far, with the backoff's jitter allowed for.
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

from _common import percentile

from .evidence import Evidence, Run
from .record import Check, Stats, strip


def check_statuses(ev: Evidence, stats: Stats) -> Check:
    """Each exit tinit reported is one its run's intent, a stop or a forwarded signal allows."""
    problems = list(ev.run_problems)
    exits: Counter[str] = Counter()
    no_intent = 0
    began = next((e["_i"] for e in ev.events if e["event"] == "shutdown_began"), len(ev.events))
    for name, runs in ev.runs.items():
        for run in runs:
            e = run.exit
            if e is None:
                problems.append(f"{name}: pid {run.pid} started and never reported exiting")
                continue
            if run.index > began:
                continue  # should not exist at all: reported under "shutdown"
            got_sig = e.get("signal")
            got = f"signal {got_sig}" if got_sig else f"code {e.get('exit_code')}"
            exits[got_sig or "exit"] += 1
            allowed: set[str] = set()
            if run.stop_sent and not (run.intent and run.intent["hang"]):
                allowed.add("signal SIGTERM")
            if run.killed:
                allowed.add("signal SIGKILL")
            intent = run.intent
            if intent is None:
                no_intent += 1
                for sig in ("SIGUSR1", "SIGUSR2"):
                    if ev.forwarded_during(run, e["_i"], sig):
                        allowed.add(f"signal {sig}")
                if got not in allowed:
                    problems.append(
                        f"{name}: pid {run.pid} died before writing its intent, with {got};"
                        f" allowed: {sorted(allowed) or 'nothing (it was not stopped)'}"
                    )
                continue
            # What the run meant to do is allowed only once it got that far.
            if run.wrote:
                if intent["act"] == "exit":
                    allowed.add(f"code {intent['code']}")
                elif intent["act"] == "signal":
                    allowed.add(f"signal {signal.Signals(intent['signal']).name}")
                else:
                    allowed.add("signal SIGKILL")
                    if got == "signal SIGKILL" and e.get("reason") != "oom" and not run.killed:
                        problems.append(f"{name}: run {intent['run']} OOM kill not reported as oom")
            if got not in allowed:
                problems.append(
                    f"{name}: run {intent['run']} pid {run.pid} meant {describe(intent)},"
                    f" tinit reported {got} (stop sent: {run.stop_sent},"
                    f" killed: {run.killed}, got as far as acting: {run.wrote});"
                    f" allowed: {sorted(allowed)}"
                )
    total = sum(exits.values())
    stats["exits"] = dict(exits)
    stats["runs_without_intent"] = no_intent
    return Check(
        "exit statuses",
        not problems,
        f"{total} exits, each matched to its run's intent ({no_intent} runs were stopped"
        " before writing one); " + ", ".join(f"{k}: {v}" for k, v in exits.most_common()),
        problems,
    )


def check_restarts(ev: Evidence, stats: Stats) -> Check:
    """What tinit did after each exit is what the restart policy and the backoff say."""
    problems: list[str] = []
    ratios: list[float] = []
    decisions: Counter[str] = Counter()
    late: list[float] = []
    began = next((e["_i"] for e in ev.events if e["event"] == "shutdown_began"), len(ev.events))
    for name, runs in ev.runs.items():
        spec = ev.soak.by_name[name]
        failures = 0
        previous: Run | None = None
        for run in runs:
            if (
                previous is None
                or previous.replaced
                or previous.decision is None
                or previous.decision["event"] != "service_restarting"
            ):
                failures = 0  # a new runner: an operator's start, restart or reload
            previous = run
            d = run.decision
            if run.exit is None or run.index > began:
                continue  # a run that should not exist is reported under "shutdown"
            if d is not None and d["event"] == "service_stopped":
                decisions["stopped on request"] += 1
                if not ev.stop_requested(name, d["_i"]):
                    problems.append(f"{name}: pid {run.pid} stopped with nobody asking")
                continue
            if run.stop_sent:
                if d is None or d["event"] != "service_stopped":
                    problems.append(f"{name}: pid {run.pid} was stopped but then {d}")
                continue
            e = run.exit
            failed = e.get("signal") is not None or e.get("exit_code") not in spec.success
            end = d["_t"] if d is not None else e["_t"]
            options = []
            if "uptime" in e:
                # tinit's own measure, on its monotonic clock (logged in ms)
                resets = {e["uptime"] >= spec.reset_after}
                if abs(e["uptime"] - spec.reset_after) <= 0.0005:
                    resets = {True, False}
            else:
                # from the event times: certain when even the exit came after
                # reset_after, possible when the decision did
                resets = {e["_t"] - run.t_start >= spec.reset_after + 0.01,
                          end - run.t_start >= spec.reset_after - 0.01}  # fmt: skip
            for reset in resets:
                f = (0 if reset else failures) + 1 if failed else 0
                wants = spec.restart == "always" or (spec.restart == "on-failure" and failed)
                if not wants:
                    options.append(("none", f, 0.0))
                elif failed and spec.max_restarts is not None and f > spec.max_restarts:
                    options.append(("service_gave_up", f, 0.0))
                else:
                    base = min(spec.initial * spec.factor ** max(f - 1, 0), spec.max_delay)
                    options.append(("service_restarting", f, base))
            seen = "none" if d is None else d["event"]
            fits = [o for o in options if o[0] == seen]
            if seen == "service_restarting":
                delay = float(d["delay"])  # type: ignore[index]
                fits = [o for o in fits if o[2] * 0.8 - 0.0015 <= delay <= o[2] * 1.2 + 0.0015]
                if fits:
                    ratios.append(delay / fits[0][2])
                    if run.next_start is not None and not run.replaced:
                        waited = run.next_start - d["_t"]  # type: ignore[index]
                        late.append(waited - delay)
                        if not delay - 0.005 <= waited <= delay + 2.0:
                            problems.append(
                                f"{name}: restarted {waited:.3f}s after announcing a"
                                f" {delay:.3f}s delay"
                            )
            elif seen == "service_gave_up":
                fits = [o for o in fits if d is not None and d.get("failures") == o[1]]
            if not fits:
                problems.append(
                    f"{name}: pid {run.pid} ended with"
                    f" {e.get('signal') or e.get('exit_code')} after"
                    f" {e['_t'] - run.t_start:.2f}s, {failures} failures before;"
                    f" policy says {options}, tinit did {seen}"
                    + (f" (delay {d.get('delay')}, failures {d.get('failures')})" if d else "")
                )
                failures = options[0][1]
            else:
                failures = fits[0][1]
            decisions[seen.replace("service_", "")] += 1
    # The restart counters tinit reports must match its own events.
    sent, received, reply = ev.soak.final_status
    if reply is not None and reply.get("ok"):
        for status in reply["result"]:
            name = status["name"]
            if name == ev.soak.toggle:
                continue  # removed and re-added: its counters started again
            events = [
                e["_t"] for e in ev.events
                if e.get("service") == name and e["event"] == "service_restarting"
            ]  # fmt: skip
            low = sum(1 for t in events if t <= sent)
            high = sum(1 for t in events if t <= received)
            if not low <= status["restarts"] <= high:
                problems.append(
                    f"{name}: status says {status['restarts']} restarts, events say {low}..{high}"
                )
    else:
        problems.append(f"the final status request failed: {reply}")
    stats["decisions"] = dict(decisions)
    stats["restarts"] = decisions.get("restarting", 0)
    spread = f"{min(ratios):.3f}..{max(ratios):.3f}" if ratios else "n/a"
    if len(ratios) >= 20 and max(ratios) - min(ratios) < 0.05:
        problems.append(f"restart delays show no jitter: ratios {spread}")
    over = "n/a"
    if late:
        p50, p99 = percentile(late, 50) * 1000, percentile(late, 99) * 1000
        over = f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(late) * 1000:.0f} ms"
    stats["backoff_overshoot"] = over
    return Check(
        "restart decisions",
        not problems,
        f"{sum(decisions.values())} ends decided as the policy says ({dict(decisions)});"
        f" delay/backoff ratio {spread} (jitter ±20%); the next start came after the"
        f" announced delay + {over}; status restart counters agree with the events",
        problems,
    )


def check_oom(ev: Evidence, stats: Stats) -> Check:
    """A run that went over memory.max is reported as an OOM kill (cgroup v2 guest only)."""
    if not ev.soak.cgv2:
        return Check(
            "OOM kills",
            True,
            "",
            skipped="needs the pure cgroup v2 guest (CGV2_VM=1, docs/reliability.md):"
            " this host's memory controller is on cgroup v1",
        )
    problems: list[str] = []
    count = 0
    for name, runs in ev.runs.items():
        for run in runs:
            if run.intent is None or run.intent["act"] != "oom" or run.exit is None:
                continue
            if run.stop_sent or run.killed:
                continue
            count += 1
            if run.exit.get("reason") != "oom" or not run.oom:
                problems.append(f"{name} pid {run.pid}: OOM run ended {strip(run.exit)}")
    if count == 0:
        problems.append(
            "no run got as far as going over memory.max: not exercised (run longer or"
            " with another seed)"
        )
    return Check(
        "OOM kills",
        not problems,
        f"{count} runs went over memory.max: each reported as SIGKILL with reason oom and an"
        " oom_kill event",
        problems,
    )


def describe(intent: dict[str, Any]) -> str:
    """What a run's intent said it would do, for a problem line."""
    if intent["act"] == "exit":
        what = f"exit {intent['code']}"
    elif intent["act"] == "signal":
        what = f"die of {signal.Signals(intent['signal']).name}"
    else:
        what = "go over memory.max"
    return what + (" (ignoring SIGTERM)" if intent["hang"] else "")
