"""Cgroup benchmark: what per-service cgroups cost tinit at start, and how fast a stop empties one.

Run it as root from the repository (after ``bash .ci/setup``)::

    .venv/bin/python bench/cgroups.py --tinit-ref HEAD  # 100 services, 5 runs: ~40 s
    .venv/bin/python bench/cgroups.py --quick           # a smoke run with small counts
    .venv/bin/python bench/cgroups.py --json out.json   # the raw numbers too

    # inside a guest whose /sys/fs/cgroup is a pure cgroup v2 with cpu, io,
    # memory and pids, .ci/cgv2-vm's (docs/benchmarks.md describes it; every
    # fork of tinit costs it ~0.2 s, so one run takes ~75 s):
    .ci/cgv2-vm --rw "$PWD" -- .venv/bin/python bench/cgroups.py --runs 3

Without ``--tinit-ref`` tinit runs from the working tree (the venv's
editable install), which may change while the benchmark runs.

tinit runs as PID 1 of a fresh PID namespace, the same way for both settings
it is compared under, ``cgroups: auto`` and ``cgroups: off``. Where
/sys/fs/cgroup is a pure cgroup v2 with controllers (the guest), it runs as in
a container: its own ``/sys/fs/cgroup/tinit-bench-*`` cgroup, a private cgroup
namespace and cgroup2 mounted again inside (see tests/test_cgroups_e2e.py),
so ``auto`` evacuates ROOT into ROOT/tinit and enables the controllers. On a
v1/v2 hybrid host it runs in a plain PID namespace, and ``auto`` works in a
private ``tinit-ID`` subtree of the controller-less cgroup2 (placement and
``cgroup.kill``, no limits).

Measured, with the two settings taking turns (interleaved), median of R runs:

1. spawn: N services (``sleep 600``, no probe) from tinit's ``config_loaded``
   event to its last ``service_ready`` (each is logged once the service has
   exec'd), both timestamps tinit's own; with ``auto`` every service's cgroup
   is made, its limits written and the child moves itself into it before
   exec. Also from launch to the last ``service_ready`` as the benchmark
   reads it (interpreter start and cgroup set-up included), and SIGTERM to
   ``shutdown_finished`` for the N services.
2. stop-to-empty: one service of 100 processes (a shell forks 99 ``sleep``
   and execs the 100th). From the SIGTERM to tinit to the service's
   ``cgroup.events`` saying ``populated 0``, watched by the benchmark with
   poll(2) for POLLPRI (the kernel's change notification for that file, so
   the watcher takes no CPU from tinit on a one-CPU guest), and to tinit's
   ``service_stopped``. Once with processes that die on SIGTERM, once with
   processes that ignore it (``stop_timeout: 1s``, then ``cgroup.kill``, or
   SIGKILL to the process group with ``off``): from tinit's
   ``service_killed`` to ``populated 0`` / ``service_stopped``.

The table goes to stdout, progress to stderr, raw numbers to ``--json``.
Every process is started as PID 1 of a namespace tied to ``unshare
--kill-child`` and is killed and waited for; every wait has a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from _common import (
    TINIT,
    BenchError,
    fmt,
    log,
    markdown_table,
    median,
    snapshot_tinit,
)

MOUNT: Final = Path("/sys/fs/cgroup")
MODES: Final = ("auto", "off")
TARGET_RATIO: Final = 1.5
#: processes of the stop-to-empty service
FAN: Final = 100
UNSHARE: Final = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
# PID 1 of the new PID namespace moves itself into the bench cgroup ($1),
# takes a cgroup namespace rooted there and a mount namespace to mount
# cgroup2 again in, then execs the rest of its arguments (tinit).
CONTAINER_SHELL: Final = (
    'echo 0 > "$1/cgroup.procs" && shift && exec unshare --cgroup --mount sh -c'
    ' \'umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"\' sh "$@"'
)


@dataclass(frozen=True)
class Counts:
    services: int
    runs: int


FULL: Final = Counts(services=100, runs=5)
QUICK: Final = Counts(services=20, runs=1)


#: How tinit is started; ``--tinit-ref`` replaces it with a snapshot of a commit.
TINIT_COMMAND: list[str] = [str(TINIT)]


# --- where we are ---------------------------------------------------------------


def cgroup2_mount() -> Path | None:
    """The cgroup2 mount to read service cgroups through (/sys/fs/cgroup first)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup2":
            points.append(Path(fields[4]))
    points.sort(key=lambda p: (p != MOUNT, len(str(p))))
    return points[0] if points else None


def container_mode() -> bool:
    """A pure cgroup v2 with controllers at /sys/fs/cgroup: run tinit as in a container."""
    try:
        offered = (MOUNT / "cgroup.controllers").read_text().split()
    except OSError:
        return False
    return cgroup2_mount() == MOUNT and {"memory", "pids"} <= set(offered)


def unified_path(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def destroy(path: Path, timeout: float = 10.0) -> None:
    """Kill everything in the cgroup tree at ``path`` and remove it, deepest first."""
    if not path.is_dir():
        return
    tree = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    deadline = time.monotonic() + timeout
    for cgroup in [*tree, path]:
        while cgroup.exists():
            with contextlib.suppress(OSError):
                (cgroup / "cgroup.kill").write_text("1")
            with contextlib.suppress(OSError):
                cgroup.rmdir()
            if time.monotonic() > deadline:
                raise BenchError(f"cannot remove the bench cgroup {cgroup}")
            time.sleep(0.01)


def event_time(event: dict[str, Any]) -> float:
    """An event's ``timestamp`` (ISO 8601, UTC) as seconds since the epoch."""
    stamp = str(event["timestamp"]).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp()


# --- one tinit ------------------------------------------------------------------


class Tinit:
    """tinit on ``config`` as PID 1 of a new PID namespace; its JSON events, read as they come."""

    def __init__(self, config: Path, *, container: bool) -> None:
        self.cgroup: Path | None = None
        argv = [*TINIT_COMMAND, "run", "--log-format", "json", "--log-level", "info", str(config)]
        if container:
            self.cgroup = MOUNT / f"tinit-bench-{uuid.uuid4().hex[:10]}"
            self.cgroup.mkdir()
            argv = ["sh", "-c", CONTAINER_SHELL, "sh", str(self.cgroup), *argv]
        self.events: list[dict[str, Any]] = []
        #: what tinit wrote to stderr that is not an event (an error message)
        self.other: list[str] = []
        self._buffer = b""
        self.t_launch = time.time()
        self.proc = subprocess.Popen(
            [*UNSHARE, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.pid = self._find_pid1()

    def _find_pid1(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = children_of(self.proc.pid)
            if found:
                return found[0]
            if self.proc.poll() is not None:
                raise BenchError(f"unshare exited early with {self.proc.returncode}")
            time.sleep(0.002)
        raise BenchError("tinit did not start in its namespace")

    def read_events(self, timeout: float) -> bool:
        """Read what tinit has logged, waiting up to ``timeout`` for more; False at EOF."""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return True
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.other.append(line.decode(errors="replace"))
        return True

    def named(self, event: str, service: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("event") == event and (service is None or e.get("service") == service)
        ]

    def wait_for(self, event: str, count: int, timeout: float) -> float:
        """Read events until ``event`` was logged ``count`` times; return when that was seen."""
        deadline = time.monotonic() + timeout
        while len(self.named(event)) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not self.read_events(min(left, 1.0)):
                tail = [e.get("event") for e in self.events[-8:]]
                raise BenchError(
                    f"{count}x {event}: not in {timeout}s; last events: {tail};"
                    f" stderr: {' / '.join(self.other[-5:])}"
                )
        return time.time()

    def wait_exit(self, timeout: float) -> float:
        """Read events to EOF, wait for the exit; return when it was seen."""
        deadline = time.monotonic() + timeout
        while self.read_events(max(0.0, min(deadline - time.monotonic(), 1.0))):
            if time.monotonic() > deadline:
                raise BenchError(f"tinit still running after {timeout}s")
        self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        return time.time()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # --kill-child takes PID 1, so the namespace, with it
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        if self.cgroup is not None:
            destroy(self.cgroup)

    def __enter__(self) -> Tinit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_config(directory: Path, name: str, mode: str, services: dict[str, str]) -> Path:
    lines = [
        "version: 1",
        f"settings: {{cgroups: {mode}, control_socket: null, shutdown_timeout: 60s}}",
        "services:",
    ]
    lines += [f"  {key}: {value}" for key, value in services.items()]
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    return path


# --- 1. spawn -------------------------------------------------------------------


@dataclass
class Spawn:
    mode: str
    #: config_loaded -> last service_ready, tinit's own timestamps
    spawn_s: float
    #: launch -> the benchmark reads the last service_ready
    launch_s: float
    #: SIGTERM -> shutdown_finished (tinit's timestamp)
    stop_s: float
    exit_code: int


def measure_spawn(directory: Path, mode: str, n: int, *, container: bool) -> Spawn:
    services = {f"s{i:03d}": '{command: "sleep 600"}' for i in range(n)}
    config = write_config(directory, f"spawn-{mode}.yaml", mode, services)
    with Tinit(config, container=container) as tinit:
        seen = tinit.wait_for("service_ready", n, timeout=60 + n)
        loaded = event_time(tinit.named("config_loaded")[0])
        last = max(event_time(e) for e in tinit.named("service_ready"))
        _check_placement(tinit, mode)
        terminated = time.time()
        os.kill(tinit.pid, signal.SIGTERM)
        tinit.wait_exit(timeout=60 + n)
        (finished,) = tinit.named("shutdown_finished")
        return Spawn(
            mode=mode,
            spawn_s=last - loaded,
            launch_s=seen - tinit.t_launch,
            stop_s=event_time(finished) - terminated,
            exit_code=int(finished["exit_code"]),
        )


def _check_placement(tinit: Tinit, mode: str) -> None:
    """With auto every service must be in a services/NAME cgroup, with off in none."""
    for pid in children_of(tinit.pid)[:3]:
        path = unified_path(pid) or ""
        placed = "/services/s" in path
        if placed != (mode == "auto"):
            raise BenchError(f"cgroups: {mode}, but a service is in {path!r}")


# --- 2. stop-to-empty ------------------------------------------------------------


@dataclass
class Stop:
    mode: str
    variant: str
    #: SIGTERM -> populated 0 (auto only)
    to_empty_s: float | None
    #: SIGTERM -> service_stopped (tinit's timestamp)
    to_stopped_s: float
    #: service_killed -> populated 0 (auto) / service_stopped (off); stubborn only
    kill_to_empty_s: float | None
    exit_code: int
    processes: int


class EventsWatch:
    """poll(2) on a cgroup.events file: POLLPRI when a value in it changes."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLPRI | select.POLLERR)

    def populated(self) -> bool:
        try:
            text = os.pread(self.fd, 4096, 0).decode()
        except OSError:
            return False  # the cgroup was removed: empty
        return "populated 1" in text

    def wait_empty(self, timeout: float) -> float:
        """Return the time ``populated 0`` was seen."""
        deadline = time.monotonic() + timeout
        while self.populated():
            if time.monotonic() > deadline:
                raise BenchError(f"the service's cgroup is still populated after {timeout}s")
            self.poller.poll(100)  # woken by the change; 100 ms only as a safety net
        return time.time()

    def close(self) -> None:
        os.close(self.fd)


FAN_SHELL: Final = (
    "{trap}i=1; while [ $i -lt " + str(FAN) + " ]; do sleep 600 & i=$((i+1)); done; exec sleep 600"
)


def measure_stop(directory: Path, mode: str, variant: str, *, container: bool) -> Stop:
    trap = "trap '' TERM; " if variant == "stubborn" else ""
    command = FAN_SHELL.format(trap=trap)
    service = f'{{command: ["sh", "-c", "{command}"], stop_timeout: 1s}}'
    config = write_config(directory, f"stop-{mode}-{variant}.yaml", mode, {"fan": service})
    with Tinit(config, container=container) as tinit:
        tinit.wait_for("service_ready", 1, timeout=60)
        deadline = time.monotonic() + 60
        main: int | None = None
        while time.monotonic() < deadline:
            kids = children_of(tinit.pid)
            if kids and len(children_of(kids[0])) == FAN - 1:
                main = kids[0]
                break
            time.sleep(0.05)
        if main is None:
            raise BenchError(f"the service did not reach {FAN} processes")
        watch: EventsWatch | None = None
        if mode == "auto":
            mount = cgroup2_mount()
            path = unified_path(main)
            if mount is None or path is None or not path.endswith("/services/fan"):
                raise BenchError(f"the service is not in its cgroup: {path!r}")
            cgroup = Path(f"{mount}{path}")
            processes = len((cgroup / "cgroup.procs").read_text().split())
            watch = EventsWatch(cgroup / "cgroup.events")
        else:
            processes = 1 + len(children_of(main))
        try:
            terminated = time.time()
            os.kill(tinit.pid, signal.SIGTERM)
            empty = watch.wait_empty(timeout=60) if watch is not None else None
        finally:
            if watch is not None:
                watch.close()
        tinit.wait_exit(timeout=60)
        (stopped,) = tinit.named("service_stopped", "fan")
        (finished,) = tinit.named("shutdown_finished")
        killed = tinit.named("service_killed", "fan")
        kill_to_empty = None
        if killed:
            end = empty if empty is not None else event_time(stopped)
            kill_to_empty = end - event_time(killed[0])
        return Stop(
            mode=mode,
            variant=variant,
            to_empty_s=None if empty is None else empty - terminated,
            to_stopped_s=event_time(stopped) - terminated,
            kill_to_empty_s=kill_to_empty,
            exit_code=int(finished["exit_code"]),
            processes=processes,
        )


# --- the run ---------------------------------------------------------------------


@dataclass
class Results:
    container: bool
    counts: Counts
    spawn: list[Spawn] = field(default_factory=list)
    stop: list[Stop] = field(default_factory=list)


def run_all(counts: Counts, directory: Path, *, container: bool) -> Results:
    res = Results(container=container, counts=counts)
    for round_ in range(counts.runs):
        order = MODES if round_ % 2 == 0 else MODES[::-1]
        for mode in order:
            log(f"bench: run {round_ + 1}/{counts.runs}: spawn {counts.services}, cgroups {mode}")
            res.spawn.append(measure_spawn(directory, mode, counts.services, container=container))
        for variant in ("term", "stubborn"):
            for mode in order:
                log(f"bench: run {round_ + 1}/{counts.runs}: stop {variant}, cgroups {mode}")
                res.stop.append(measure_stop(directory, mode, variant, container=container))
    return res


def _ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    ms = [v * 1000 for v in values]
    if len(ms) == 1:
        return f"{ms[0]:.0f} ms"
    return f"{median(ms):.0f} ms ({min(ms):.0f}-{max(ms):.0f})"


def summarize(res: Results) -> tuple[str, float | None]:
    n = res.counts.services

    def spawn(mode: str, key: str) -> list[float]:
        return [float(getattr(s, key)) for s in res.spawn if s.mode == mode]

    def stop(mode: str, variant: str, key: str) -> list[float]:
        found = [getattr(s, key) for s in res.stop if s.mode == mode and s.variant == variant]
        return [float(v) for v in found if v is not None]

    def ratio(key: str) -> float | None:
        auto, off = spawn("auto", key), spawn("off", key)
        if not auto or not off or median(off) <= 0:
            return None
        return median(auto) / median(off)

    def paired(key: str) -> list[float]:
        """auto/off within each round (the two ran back to back)."""
        auto, off = spawn("auto", key), spawn("off", key)
        return [a / o for a, o in zip(auto, off, strict=True) if o > 0]

    rows = []
    for label, key in (
        (f"spawn {n} services: config_loaded -> last service_ready", "spawn_s"),
        (f"launch -> last service_ready read ({n} services)", "launch_s"),
        (f"stop {n} services: SIGTERM -> shutdown_finished", "stop_s"),
    ):
        r = ratio(key)
        rows.append(
            [label, _ms(spawn("auto", key)), _ms(spawn("off", key)), fmt(r, 2) + "x" if r else ""]
        )
    per = [median(spawn(m, "spawn_s")) / n * 1000 if spawn(m, "spawn_s") else None for m in MODES]
    rows.append(["per service (spawn / N)", f"{fmt(per[0], 2)} ms", f"{fmt(per[1], 2)} ms", ""])
    rounds = paired("spawn_s")
    if len(rounds) > 1:
        spread = f"{median(rounds):.2f}x ({min(rounds):.2f}-{max(rounds):.2f})"
        rows.append(["spawn: auto/off within each round, median", "", "", spread])
    for variant, what in (("term", "die on SIGTERM"), ("stubborn", "ignore SIGTERM")):
        rows.append(
            [
                f"{FAN}-process service ({what}): SIGTERM -> populated 0",
                _ms(stop("auto", variant, "to_empty_s")),
                "(no cgroup)",
                "",
            ]
        )
        rows.append(
            [
                f"{FAN}-process service ({what}): SIGTERM -> service_stopped",
                _ms(stop("auto", variant, "to_stopped_s")),
                _ms(stop("off", variant, "to_stopped_s")),
                "",
            ]
        )
    rows.append(
        [
            f"{FAN}-process service (ignore SIGTERM, stop_timeout 1s):"
            " service_killed -> populated 0 (auto) / service_stopped (off)",
            _ms(stop("auto", "stubborn", "kill_to_empty_s")),
            _ms(stop("off", "stubborn", "kill_to_empty_s")),
            "",
        ]
    )
    table = markdown_table(["measurement", "cgroups: auto", "cgroups: off", "auto/off"], rows)
    return table, ratio("spawn_s")


def machine() -> dict[str, str]:
    model = "n/a"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    guest = os.environ.get("CGV2_VM") == "1"
    mount = cgroup2_mount()
    offered = "n/a"
    with contextlib.suppress(OSError, TypeError):
        offered = (Path(str(mount)) / "cgroup.controllers").read_text().strip() or "none"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": (
            "cgv2-vm guest (User-Mode Linux, 1 CPU, every syscall trapped: slow fork/exec)"
            if guest
            else "host"
        ),
        "kernel": platform.release(),
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "python": platform.python_version(),
        "cgroup2": f"{mount} (controllers: {offered})",
        "load at the start (1, 5, 15 min)": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, help="N, the number of services (default 100)")
    parser.add_argument("--runs", type=int, help="R, runs of each measurement (default 5)")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--json", metavar="OUT", type=Path, help="write the raw numbers here")
    parser.add_argument(
        "--tinit-ref",
        metavar="REF",
        help="measure tinit as of this commit (git archive), not the working tree",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/cgroups.py: run as root (it makes namespaces and cgroups)", file=sys.stderr)
        return 2
    if not TINIT.exists():
        print(f"bench/cgroups.py: {TINIT} is missing: run 'bash .ci/setup'", file=sys.stderr)
        return 2
    if cgroup2_mount() is None:
        print("bench/cgroups.py: no cgroup2 mount on this machine", file=sys.stderr)
        return 2
    counts = QUICK if args.quick else FULL
    if args.services is not None:
        counts = Counts(max(1, args.services), counts.runs)
    if args.runs is not None:
        counts = Counts(counts.services, max(1, args.runs))
    container = container_mode()
    info = machine()
    info["tinit runs"] = (
        "as PID 1 in PID + cgroup + mount namespaces, in its own cgroup (a container)"
        if container
        else "as PID 1 in a PID namespace; auto uses a private tinit-ID subtree"
    )
    info["tinit"] = "the working tree (the venv's editable install)"
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tinit-bench-cgroups-") as tmp:
        if args.tinit_ref:
            snapshot = snapshot_tinit(args.tinit_ref, Path(tmp))
            TINIT_COMMAND[:] = snapshot.command
            info["tinit"] = snapshot.label
        res = run_all(counts, Path(tmp), container=container)
    info["duration"] = f"{time.monotonic() - began:.0f} s"
    info["load at the end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    table, ratio = summarize(res)
    print(f"## Cgroups: placement cost and stop-to-empty ({counts.services} services)\n")
    print("\n".join(f"- {k}: {v}" for k, v in info.items()))
    print(f"- counts: {asdict(counts)}; medians, (min-max) over the runs\n")
    print(table)
    met = ratio is not None and ratio <= TARGET_RATIO
    verdict = "met" if met else "NOT met"
    print(f"\nTarget: spawn with cgroups <= {TARGET_RATIO}x without: {fmt(ratio, 2)}x, {verdict}.")
    codes = sorted({s.exit_code for s in res.spawn} | {s.exit_code for s in res.stop})
    print(f"tinit exit codes seen: {codes}")
    if args.json:
        raw: dict[str, Any] = {"machine": info, "counts": asdict(counts), "ratio": ratio}
        raw |= {"spawn": [asdict(s) for s in res.spawn], "stop": [asdict(s) for s in res.stop]}
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
