"""The evidence of a soak run, read back and put in order for the checks.

tinit's JSON events (from its stderr), its output (split per service, see
:mod:`.streams`) and each service's journal (what every run meant to do, did
and got) are read once; the events of each service are then grouped into
runs, one per process tinit started, each matched to the intent its process
journaled.
"""

from __future__ import annotations

import bisect
import contextlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .record import Sample, wall_of
from .streams import OutputReader

if TYPE_CHECKING:
    from soak import Soak


@dataclass
class Run:
    """One process tinit started for a service, from its start to what came after its exit."""

    service: str
    pid: int
    t_start: float
    index: int
    intent: dict[str, Any] | None = None
    wrote: bool = False
    wrote_t: float | None = None  # it wrote everything; it acts (exits, dies) a pause later
    got: list[tuple[float, str]] = field(default_factory=list)
    stop_sent: bool = False
    killed: bool = False
    exit: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    next_start: float | None = None
    oom: bool = False
    #: its runner was stopped after it ended (in the backoff): the next run is a new runner's
    replaced: bool = False


class Evidence:
    """tinit's events and output and the services' journals, with the soak's own record."""

    def __init__(self, soak: Soak) -> None:
        self.soak = soak
        self.events: list[dict[str, Any]] = []
        self.other_stderr: list[bytes] = []
        self.output = OutputReader(soak)
        self._forwards: dict[str, list[int]] | None = None  # signal -> signal_received indices
        self.journal: dict[str, list[dict[str, Any]]] = {}
        self.runs: dict[str, list[Run]] = defaultdict(list)
        #: events that do not fit together into runs (checked under "exit statuses")
        self.run_problems: list[str] = []

    # -- reading ------------------------------------------------------------------

    def read(self) -> None:
        """Read everything the run left, then put each service's events into runs."""
        soak = self.soak
        for line in lines_of(soak.stderr_path):
            if line.startswith(b"{") and b'"event": ' in line:
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                if isinstance(event, dict) and "event" in event:
                    event["_t"] = wall_of(event["timestamp"])
                    event["_i"] = len(self.events)
                    self.events.append(event)
                    continue
            if not self.output.route(line, "stderr") and line:
                self.other_stderr.append(line[:300])
        self.output.read_stdout(lines_of(soak.stdout_path))
        self.output.close()
        for spec in soak.specs:
            path = soak.workdir / "journal" / f"{spec.name}.jsonl"
            records = []
            if path.exists():
                for text in path.read_bytes().splitlines():
                    with contextlib.suppress(ValueError):
                        records.append(json.loads(text))
            self.journal[spec.name] = records
        self.run_problems = self._build_runs()

    # -- runs ---------------------------------------------------------------------

    def _build_runs(self) -> list[str]:
        """Group each service's events into runs; match intents. Returns problems."""
        problems: list[str] = []
        current: dict[str, Run] = {}
        for e in self.events:
            name = e.get("service")
            ev = e["event"]
            if name is None:
                continue
            run = current.get(name)
            if ev == "service_starting":
                if run is not None and run.exit is None:
                    problems.append(f"{name}: pid {e['pid']} started before pid {run.pid} exited")
                if run is not None and run.next_start is None:
                    run.next_start = e["_t"]
                new = Run(name, e["pid"], e["_t"], e["_i"])
                self.runs[name].append(new)
                current[name] = new
            elif run is None:
                continue
            elif ev == "service_stopping" and run.exit is None:
                run.stop_sent = True
            elif ev == "service_killed" and run.exit is None:
                run.killed = True
            elif ev == "oom_kill":
                run.oom = True
            elif ev == "service_exited":
                if run.exit is not None or e.get("pid") != run.pid:
                    problems.append(
                        f"{name}: exit of pid {e.get('pid')} while the current run is pid"
                        f" {run.pid} ({'already exited' if run.exit else 'running'})"
                    )
                else:
                    run.exit = e
            elif ev in ("service_restarting", "service_gave_up", "service_stopped"):
                if run.exit is not None and run.decision is None:
                    run.decision = e
                if ev == "service_stopped" and run.exit is not None:
                    run.replaced = True
        for name, runs in self.runs.items():
            intents = [r for r in self.journal.get(name, []) if r["k"] == "intent"]
            by_pid: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for record in self.journal.get(name, []):
                by_pid[record["pid"]].append(record)
            j = 0
            for run in runs:
                # Intents come in run order; a run killed before it wrote one has none.
                k = j
                while k < len(intents) and intents[k]["pid"] != run.pid and k - j < 3:
                    k += 1
                if k < len(intents) and intents[k]["pid"] == run.pid:
                    for skipped in intents[j:k]:
                        problems.append(
                            f"{name}: run {skipped['run']} (pid {skipped['pid']}) wrote an intent"
                            " but tinit never reported starting it"
                        )
                    run.intent = intents[k]
                    j = k + 1
                    mine = [r for r in by_pid[run.pid] if r["run"] == run.intent["run"]]
                    run.wrote = any(r["k"] == "wrote" for r in mine)
                    run.wrote_t = next((r["t"] for r in mine if r["k"] == "wrote"), None)
                    run.got = [(r["t"], r["sig"]) for r in mine if r["k"] == "got"]
            for skipped in intents[j:]:
                problems.append(
                    f"{name}: run {skipped['run']} (pid {skipped['pid']}) wrote an intent"
                    " but tinit never reported starting it"
                )
        return problems

    # -- checks -------------------------------------------------------------------

    # -- questions the checks ask -------------------------------------------------

    def stop_requested(self, name: str, before: int) -> bool:
        """Whether anything asked ``name`` to stop, up to event index ``before``."""
        for e in self.events[:before]:
            ev = e["event"]
            if ev == "shutdown_began":
                return True
            if e.get("service") == name and ev in (
                "service_stop_requested",
                "service_restart_requested",
            ):
                return True
            if ev == "config_reloaded" and name in (*e["changed"], *e["removed"]):
                return True
        return False

    def forwarded_during(self, run: Run, exit_index: int, signame: str) -> bool:
        """Whether tinit forwarded ``signame`` while ``run`` was its service's process.

        tinit logs ``signal_received`` and forwards the signal to every running
        service in one step, and it records a run's process before it logs
        ``service_starting``: the order of the events says exactly which runs a
        forwarded signal reached, however late tinit got to it.
        """
        if self._forwards is None:
            self._forwards = {}
            for e in self.events:
                if e["event"] == "signal_received":
                    self._forwards.setdefault(e["signal"], []).append(e["_i"])
        indices = self._forwards.get(signame, [])
        first = bisect.bisect_right(indices, run.index)
        return first < len(indices) and indices[first] < exit_index

    def warm_samples(self) -> tuple[list[Sample], list[Sample], float]:
        """The monitor's samples in a window after the warm-up and in the last window."""
        mon = self.soak.monitor
        assert mon is not None
        samples = [s for s in mon.samples if s.t <= self.soak.t_chaos_end]
        duration = self.soak.args.duration
        warm = self.soak.t_start + max(self.soak.args.warmup, 0.1 * duration)
        window = min(30.0, max(10.0, 0.05 * duration))
        first = [s for s in samples if warm <= s.t <= warm + window]
        last = [s for s in samples if s.t >= samples[-1].t - window] if samples else []
        return first, last, warm

    def restarts_between(self, t0: float, t1: float) -> int:
        """Service starts tinit logged between two wall-clock times."""
        return sum(
            1 for e in self.events if e["event"] == "service_starting" and t0 <= e["_t"] <= t1
        )


def lines_of(path: Path) -> Iterator[bytes]:
    """The lines of a file, read in bounded chunks (tinit's stdout can be hundreds of MB)."""
    with open(path, "rb") as f:
        tail = b""
        while chunk := f.read(1 << 22):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            yield from lines
        if tail:
            yield tail
