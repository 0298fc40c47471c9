"""Many-services benchmark: tinit against supervisord, s6 and a plain shell loop.

Run it as root from the repository (after ``bash .ci/setup``)::

    .venv/bin/python bench/services.py                    # N=200, 2 runs: ~8-11 minutes
    .venv/bin/python bench/services.py --quick            # a smoke run with small counts
    .venv/bin/python bench/services.py --tinit-ref main   # before/after: one more column
    .venv/bin/python bench/services.py --tinit-ref HEAD --only 'floor,tinit HEAD'
    .venv/bin/python bench/services.py --only tinit,s6 --services 50 --runs 3
    .venv/bin/python bench/services.py --tests lifecycle --runs 6   # start/shutdown only
    .venv/bin/python bench/services.py --tests lifecycle,first --service-kind sh
    .venv/bin/python bench/services.py --tinit-arg=--no-cgroups --json results.json

``tinit`` runs from the working tree (the venv's editable install), which
may change under a long run. ``--tinit-ref REF`` adds the contender
``tinit REF``: tinit as committed at REF (``git archive``), with the same
generated configuration and ``--tinit-arg``s, in the same round-robin and in
every test that ``tinit`` takes part in, as a column of its own. The targets
are judged on ``tinit`` alone. To measure only the snapshot (say while the
working tree changes), leave ``tinit`` out: ``--only 'floor,tinit REF'``.

Every contender runs as PID 1 of a fresh PID namespace
(``unshare --pid --fork --mount-proc --kill-child``) and supervises the same
N services, generated into its own configuration:

- ``floor``: a ``/bin/sh`` script that starts the services with ``&`` in a
  loop and, on SIGTERM, ``kill``s them all and ``wait``s; a crashing service
  runs in a ``while :; do ...; done`` loop;
- ``tinit``: a generated services.yaml (``tinit run FILE``);
- ``supervisord``: a generated supervisord.conf (``supervisord -n -c FILE``);
- ``s6``: a scan directory with one service directory each
  (``s6-svscan DIR``; each ``run`` is ``#!/bin/sh`` + ``exec python3 ...``).

Every service is one small program run by the system Python with ``-S``.
It writes one line to a FIFO the benchmark reads: ``R`` (running, with the
``CLOCK_MONOTONIC`` time its first statement ran), ``S`` (got SIGTERM,
exiting with 0 now) or ``X`` (a crashing service, about to exit with 1). The
clock is the same inside and outside the namespace.

With ``--service-kind sh`` every idle service is instead the cheapest one
there is, ``/bin/sh -c 'echo R ... >FIFO; exec sleep 100000'``, so the
figures show the supervisor's own cost rather than Python's start-up. The
shell has no ``CLOCK_MONOTONIC``: its ``R`` is stamped when the benchmark
reads it (time of receipt, a little late, never early), and ``sleep`` dies
of SIGTERM without an ``S`` (so 2. cannot count who heard it). Crashing
services stay Python: 4. and 5. keep their Python crashers among sh idle
services.

The contenders take turns (round-robin) within each measurement. Measured:

1. start: from just before ``Popen`` to the last service's ``R``;
   ``first`` (its own test): the same with ONE service, 5 × R runs, what a
   user feels at ``docker run``: from just before ``Popen`` to that
   service's ``R``. A one-service configuration rather than the earliest
   ``R`` of N, so the figure is not also the parsing of N services. Each
   contender's time includes ``unshare``'s own start, then: floor, one
   ``sh`` and a fork; tinit, Python's start-up, its imports, reading the
   configuration and making the service's cgroup; supervisord, the same for
   its Python, then a wait of about 1 s by design: its main loop polls (1 s
   timeout, nothing to read yet) before its first pass starts the
   ``autostart`` programs (``startsecs`` delays only the RUNNING state, not
   the exec); s6, ``s6-svscan``'s first scan (at once), one
   ``s6-supervise`` and the ``run`` script's ``#!/bin/sh`` before it execs
   the service;
2. shutdown: one second after all are running, SIGTERM to PID 1 until the
   namespace is gone (unshare has exited), and how many services said ``S``;
3. memory with N running services (before the SIGTERM of 2.): the
   supervisor's VmRSS and PSS (for s6: s6-svscan plus every s6-supervise);
4. crash-to-respawn: one of the N services exits with 1 after 50 ms, again
   and again; the time from its ``X`` to the next ``R``;
5. tinit's memory while 20 of the N services crash every 50 ms, over some
   thousands of restarts;
6. output throughput: one service writing 100-byte lines as fast as it can
   into a pipe the benchmark drains: directly (no supervisor), through tinit
   in ``raw`` and ``prefix`` mode, and through supervisord
   (``stdout_logfile=/dev/stdout``).

Each namespace is ended with SIGTERM (then SIGKILL if it lingers), so tinit
gets to remove the cgroups it made. The table goes to stdout, progress to
stderr, raw numbers to ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Final, assert_never

from _common import (
    SYSTEM_PYTHON,
    TINIT,
    BenchError,
    Launched,
    cpu_ticks,
    deb_version,
    ensure_debian_packages,
    fmt,
    git,
    log,
    machine_info,
    markdown_table,
    median,
    percentile,
    proc_status,
    pss_kib,
    snapshot_tinit,
    status_kib,
)

CONTENDERS: Final = ("floor", "tinit", "supervisord", "s6")
FLOOR: Final = "floor"
#: The working tree's tinit: the one the targets are about.
WORK_TREE: Final = "tinit"
MIB: Final = 1024.0
#: How long a crashing service runs before it exits with 1.
CRASH_AFTER: Final = 0.05
#: supervisord stops its programs one after the other; past this, give up.
SHUTDOWN_CAP: Final = 150.0
START_TIMEOUT: Final = 120.0
#: One payload line of the throughput test, newline included.
LINE_BYTES: Final = 100
#: Runs of ``first`` per run of the others: one launch is quick, and noisy.
FIRST_RUNS_PER_RUN: Final = 5
#: After ``first``'s R, before the SIGTERM: dash, the floor, misses a signal that
#: lands just before it blocks in ``wait``, and would then wait for its service.
FIRST_SETTLE: Final = 0.2
#: In place of a service's own clock: the benchmark stamps the line on receipt.
STAMP_ON_RECEIPT: Final = "?"


class ServiceKind(StrEnum):
    """What every idle service is: the Python program, or the cheapest shell one."""

    PYTHON = "python"
    SH = "sh"


# The service. Started as: python3 -S svc.py FIFO NAME idle|crash [SECONDS].
# It takes its start time first thing, so ``R`` carries the moment the
# program began to run (interpreter start-up is part of every contender's
# time alike). Lines up to PIPE_BUF are written to a FIFO atomically.
SERVICE_SCRIPT: Final = r"""
import time
t0 = time.monotonic_ns()
import os, signal, sys
fifo, name, mode = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
try:
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: the benchmark is gone
except OSError:
    os._exit(3)
os.set_blocking(fd, True)
pid = os.getpid()
def report(kind, t):
    try:
        os.write(fd, b"%s %s %d %d\n" % (kind, name, pid, t))
    except OSError:
        pass
def on_term(signum, frame):
    report(b"S", time.monotonic_ns())
    os._exit(0)
signal.signal(signal.SIGTERM, on_term)
report(b"R", t0)
if mode == "crash":
    time.sleep(float(sys.argv[4]))
    report(b"X", time.monotonic_ns())
    os._exit(1)
while True:
    signal.pause()
"""

# The sh service: /bin/sh -c SH_SERVICE sh FIFO NAME. No clock to read, so
# its R carries STAMP_ON_RECEIPT. The script is the same for every contender,
# so it avoids what one of them would rewrite: ``%`` (supervisord expands
# it), ``$$`` (tinit reads it as ``$``; the pid, unused, is written 0) and
# single quotes (shlex.join wraps the script in them). One echo of a short
# line is one write, atomic on a FIFO.
SH_SERVICE: Final = f'echo "R $2 0 {STAMP_ON_RECEIPT}" >"$1"; exec sleep 100000'

# The writer of the throughput test: python3 -S writer.py FIFO SECONDS.
# 100-byte lines, 655 to a write (65,500 bytes), for SECONDS; then it reports
# how many bytes it wrote (``D``) and exits with 0.
WRITER_SCRIPT: Final = r"""
import os, sys, time
fifo, seconds = sys.argv[1], float(sys.argv[2])
block = memoryview((b"x" * 99 + b"\n") * 655)
total = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    for _ in range(16):
        view = block
        while view:
            view = view[os.write(1, view):]
        total += len(block)
fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
os.write(fd, b"D writer %d %d\n" % (os.getpid(), total))
"""


@dataclass(frozen=True)
class Counts:
    services: int
    runs: int
    crashes: int
    crash_cap_s: float
    crashers: int
    restarts: int
    restart_cap_s: float
    write_s: float
    settle_s: float


FULL = Counts(
    services=200,
    runs=2,
    crashes=50,
    crash_cap_s=75.0,
    crashers=20,
    restarts=3000,
    restart_cap_s=150.0,
    write_s=3.0,
    settle_s=1.0,
)
QUICK = Counts(
    services=20,
    runs=1,
    crashes=8,
    crash_cap_s=20.0,
    crashers=5,
    restarts=300,
    restart_cap_s=30.0,
    write_s=1.0,
    settle_s=1.0,
)


#: How each tinit contender is started; ``--tinit-ref`` adds a snapshot of a commit.
TINIT_COMMANDS: dict[str, tuple[str, ...]] = {WORK_TREE: (str(TINIT),)}
#: Extra options for ``tinit run`` (``--tinit-arg``), e.g. ``--no-cgroups``.
TINIT_ARGS: list[str] = []


def tinit_revision() -> str:
    """The commit of the working tree, and whether tinit/ differs from it."""
    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        dirty = git("status", "--porcelain", "--", "tinit").strip()
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    return f"working tree at {commit}" + (", tinit/ modified" if dirty else "")


def ms(ns: int) -> float:
    return ns / 1e6


# --- the reports of the services -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    kind: str  # R running, S stopping on SIGTERM, X crashing, D writer done
    name: str
    pid: int
    value: int  # a CLOCK_MONOTONIC time in ns, seen_ns for an sh service (D: bytes written)
    seen_ns: int  # when the benchmark read it


class Reports:
    """The FIFO every service of one namespace run writes its lines to.

    The benchmark holds a write end itself, so the FIFO never reads as EOF
    between two writers, and makes the pipe 1 MiB so no service waits to
    write its line while hundreds start at once.
    """

    def __init__(self, path: Path) -> None:
        os.mkfifo(path, 0o600)
        self.path = path
        self._r = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._w = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._r, fcntl.F_SETPIPE_SZ, 1 << 20)
        self._buffer = b""
        self.all: list[Report] = []
        self.running: dict[str, Report] = {}  # latest R per name
        self.stopped: set[str] = set()
        self.crashes = 0

    def fileno(self) -> int:
        """The read end, for poll()."""
        return self._r

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def poll(self, timeout: float) -> int:
        """Read whatever arrives within ``timeout`` (or is there now); return how many lines."""
        poller = select.poll()
        poller.register(self._r, select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            return 0
        seen = time.monotonic_ns()
        while True:
            try:
                chunk = os.read(self._r, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            kind, name, pid, value = line.decode().split()
            stamp = seen if value == STAMP_ON_RECEIPT else int(value)
            report = Report(kind, name, int(pid), stamp, seen)
            self.all.append(report)
            if kind == "R":
                self.running[name] = report
            elif kind == "S":
                self.stopped.add(name)
            elif kind == "X":
                self.crashes += 1
        return len(lines)

    def wait_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{what}: not within {timeout:g} s")
            self.poll(min(left, 0.5))

    def drain(self, quiet: float = 0.05, limit: float = 2.0) -> None:
        """Read until nothing has come for ``quiet`` seconds, or for ``limit`` seconds at most."""
        deadline = time.monotonic() + limit
        while self.poll(quiet) and time.monotonic() < deadline:
            pass

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` while reading whatever comes."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.poll(left)


# --- the contenders' configurations ----------------------------------------------


@dataclass(frozen=True)
class Program:
    """One service as every contender is told about it."""

    name: str
    argv: list[str]
    restart: bool = True
    #: the floor runs it in a ``while :`` loop (it crashes again and again)
    crash: bool = False
    #: tinit's output mode; supervisord: "stdout" passes output to its stdout, else discarded
    output: str = "prefix"


@dataclass
class Work:
    """The files of one namespace run, in a directory of its own."""

    root: Path
    service: Path
    writer: Path
    reports: Reports
    kind: ServiceKind

    def service_argv(self, name: str, crash_after: float | None = None) -> list[str]:
        """An idle service of this run's kind, or a crashing one (always Python: it reports X)."""
        if crash_after is None and self.kind is ServiceKind.SH:
            return ["/bin/sh", "-c", SH_SERVICE, "sh", str(self.reports.path), name]
        argv = [SYSTEM_PYTHON, "-S", str(self.service), str(self.reports.path), name]
        return argv + (["idle"] if crash_after is None else ["crash", f"{crash_after:g}"])

    def writer_argv(self, seconds: float) -> list[str]:
        return [SYSTEM_PYTHON, "-S", str(self.writer), str(self.reports.path), f"{seconds:g}"]


@contextlib.contextmanager
def open_work(top: Path, label: str, kind: ServiceKind = ServiceKind.PYTHON) -> Any:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label)  # a contender may be "tinit origin/main"
    root = Path(tempfile.mkdtemp(prefix=f"{safe}-", dir=top))
    service = root / "svc.py"
    service.write_text(SERVICE_SCRIPT)
    writer = root / "writer.py"
    writer.write_text(WRITER_SCRIPT)
    reports = Reports(root / "reports.fifo")
    try:
        yield Work(root, service, writer, reports, kind)
    finally:
        reports.close()


def floor_argv(work: Work, programs: Sequence[Program], tinit_output: str) -> list[str]:
    lines = [
        "#!/bin/sh",
        "# The floor: start every service, and on SIGTERM kill them all and wait.",
        "pids=",
        "trap 'kill $pids 2>/dev/null; wait; exit 0' TERM INT",
    ]
    for p in programs:
        command = shlex.join(p.argv)
        lines.append(f"while :; do {command}; done &" if p.crash else f"{command} &")
        lines.append('pids="$pids $!"')
    lines.append("wait")
    script = work.root / "floor.sh"
    script.write_text("\n".join(lines) + "\n")
    return ["/bin/sh", str(script)]


def tinit_argv(
    work: Work, programs: Sequence[Program], tinit_output: str, contender: str = WORK_TREE
) -> list[str]:
    services: dict[str, Any] = {}
    for p in programs:
        services[p.name] = {
            "command": p.argv,
            "restart": "always" if p.restart else "never",
            # 0 s is accepted for initial (max must be > 0, but 0 * factor**n stays 0).
            "backoff": {"initial": "0s"},
            "max_restarts": None,
            "stop_timeout": "100s",
            "output": p.output if p.output != "stdout" else "raw",
        }
        if p.output == "prefix" and tinit_output != "prefix":
            services[p.name]["output"] = tinit_output
    config = {
        "version": 1,
        "settings": {
            "shutdown_timeout": "120s",
            "control_socket": str(work.root / "tinit.sock"),
        },
        "services": services,
    }
    path = work.root / "services.yaml"
    path.write_text(json.dumps(config, indent=1) + "\n")  # JSON is YAML
    return [*TINIT_COMMANDS[contender], "run", *TINIT_ARGS, str(path)]


def supervisord_argv(work: Work, programs: Sequence[Program], tinit_output: str) -> list[str]:
    lines = [
        "[supervisord]",
        "nodaemon=true",
        "silent=true",  # its own log off stdout (the throughput test reads stdout)
        "logfile=/dev/null",
        "logfile_maxbytes=0",
        f"pidfile={work.root / 'supervisord.pid'}",
        f"minfds={max(1024, 8 * len(programs) + 64)}",
        "user=root",
        "",
        "[unix_http_server]",
        f"file={work.root / 'supervisor.sock'}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
    ]
    for p in programs:
        out = "/dev/stdout" if p.output == "stdout" else "NONE"
        lines += [
            "",
            f"[program:{p.name}]",
            f"command={shlex.join(p.argv)}",
            "autostart=true",
            f"autorestart={'true' if p.restart else 'false'}",
            "startsecs=0",
            "stopwaitsecs=100",
            f"stdout_logfile={out}",
            "stdout_logfile_maxbytes=0",
            "stderr_logfile=NONE",
        ]
    path = work.root / "supervisord.conf"
    path.write_text("\n".join(lines) + "\n")
    return ["supervisord", "-n", "-c", str(path)]


def s6_argv(work: Work, programs: Sequence[Program], tinit_output: str) -> list[str]:
    scan = work.root / "scan"
    scan.mkdir()
    for p in programs:
        if not p.restart:
            raise BenchError("s6 always restarts a service; no one-shot runs here")
        directory = scan / p.name
        directory.mkdir()
        run = directory / "run"
        run.write_text(f"#!/bin/sh\nexec {shlex.join(p.argv)}\n")
        run.chmod(0o755)
    return ["s6-svscan", str(scan)]


Builder = Callable[[Work, Sequence[Program], str], list[str]]
BUILDERS: Final[dict[str, Builder]] = {
    "floor": floor_argv,
    "tinit": tinit_argv,
    "supervisord": supervisord_argv,
    "s6": s6_argv,
}


def builder(contender: str) -> Builder:
    """How a contender's configuration is made; every tinit contender gets tinit's."""
    if contender in TINIT_COMMANDS:
        return partial(tinit_argv, contender=contender)
    return BUILDERS[contender]


def supervisor_pids(contender: str, init: int) -> list[int]:
    """The processes whose memory is the supervisor's: PID 1, and for s6 every s6-supervise."""
    if contender != "s6":
        return [init]
    pids = [init]
    children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
    for child in children:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{child}/comm").read_text().strip() == "s6-supervise":
                pids.append(int(child))
    return pids


def memory(pids: Sequence[int]) -> dict[str, int]:
    rss = anon = pss = 0
    for pid in pids:
        status = proc_status(pid)
        rss += status_kib(status, "VmRSS")
        anon += status_kib(status, "RssAnon")
        pss += pss_kib(pid) or 0
    return {
        "processes": len(pids),
        "threads": sum(len(os.listdir(f"/proc/{pid}/task")) for pid in pids),
        "VmRSS_kib": rss,
        "RssAnon_kib": anon,
        "Pss_kib": pss,
    }


# --- measurements ------------------------------------------------------------------


def idle_programs(work: Work, n: int) -> list[Program]:
    return [Program(f"s{i:03d}", work.service_argv(f"s{i:03d}")) for i in range(n)]


def measure_lifecycle(
    contender: str, top: Path, counts: Counts, tinit_output: str, kind: ServiceKind
) -> dict[str, Any]:
    """Start N services, settle, read memory, SIGTERM PID 1, time the end."""
    n = counts.services
    out: dict[str, Any] = {}
    with open_work(top, f"life-{contender}", kind) as work:
        programs = idle_programs(work, n)
        argv = builder(contender)(work, programs, tinit_output)
        reports = work.reports
        with Launched(argv, capture=False) as run:
            init = run.init_pid()
            reports.wait_until(
                lambda: len(reports.running) >= n, START_TIMEOUT, f"{contender}: start of {n}"
            )
            last = max(r.value for r in reports.running.values())
            out["start_s"] = (last - run.t_launch) / 1e9
            out["start_seen_s"] = (max(r.seen_ns for r in reports.running.values())) / 1e9 - (
                run.t_launch / 1e9
            )
            out["start_cpu_ms"] = cpu_ticks(init) * 1000 / os.sysconf("SC_CLK_TCK")
            reports.pause(counts.settle_s)
            pids = supervisor_pids(contender, init)
            out["memory"] = memory(pids)
            out["restarts_before_stop"] = sum(1 for r in reports.all if r.kind == "R") - n
            sent = time.monotonic_ns()
            os.kill(init, signal.SIGTERM)
            try:
                t_exit, code = _wait_exit_reading(run, reports, SHUTDOWN_CAP)
                out["shutdown_s"] = (t_exit - sent) / 1e9
                out["exit_code"] = code
            except BenchError:
                out["shutdown_s"] = None
                out["shutdown_capped_at_s"] = SHUTDOWN_CAP
                out["exit_code"] = None
            reports.drain()
            out["stopped_reported"] = len(reports.stopped)
            out["stderr_tail"] = run.stderr_text()[-2000:]
    return out


def measure_first(
    contender: str, top: Path, tinit_output: str, kind: ServiceKind
) -> dict[str, Any]:
    """Launch with one service: from just before Popen to that service's R, in ms."""
    with open_work(top, f"first-{contender}", kind) as work:
        argv = builder(contender)(work, idle_programs(work, 1), tinit_output)
        reports = work.reports
        with Launched(argv, capture=False) as run:
            reports.wait_until(lambda: bool(reports.running), START_TIMEOUT, f"{contender}: first")
            (first,) = reports.running.values()
            took = first.value - run.t_launch
            reports.pause(FIRST_SETTLE)
            end_gracefully(run, reports)
    return {"first_ms": ms(took)}


def _wait_exit_reading(run: Launched, reports: Reports, timeout: float) -> tuple[int, int]:
    """Wait for the namespace to end while reading reports (so no service waits on the FIFO)."""
    deadline = time.monotonic() + timeout
    pidfd = os.pidfd_open(run.proc.pid)  # readable once unshare has exited
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(reports.fileno(), select.POLLIN)
        while True:
            if _readable(pidfd):
                return run.wait_exit(timeout=1.0)
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{run.describe()}: still running after {timeout:g} s")
            poller.poll(int(min(left, 0.5) * 1000) + 1)
            reports.poll(0)
    finally:
        os.close(pidfd)


def end_gracefully(run: Launched, reports: Reports, timeout: float = 60.0) -> None:
    """SIGTERM to PID 1 and wait for the namespace to end, so the supervisor cleans up.

    (tinit removes the cgroups it made only when it is let exit.) The caller's
    ``with Launched`` block SIGKILLs whatever is left after ``timeout``.
    """
    if run.proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(run.init_pid(), signal.SIGTERM)
    with contextlib.suppress(BenchError):
        _wait_exit_reading(run, reports, timeout)


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def measure_crash(
    contender: str, top: Path, counts: Counts, tinit_output: str, kind: ServiceKind
) -> dict[str, Any]:
    """One of N services crashes again and again: X (exit) to the next R (running), in ms."""
    n = counts.services
    with open_work(top, f"crash-{contender}", kind) as work:
        programs = idle_programs(work, n - 1)
        programs.append(Program("crash", work.service_argv("crash", CRASH_AFTER), crash=True))
        argv = builder(contender)(work, programs, tinit_output)
        reports = work.reports
        with Launched(argv, capture=False) as run:
            run.init_pid()
            reports.wait_until(
                lambda: len(reports.running) >= n, START_TIMEOUT, f"{contender}: start of {n}"
            )
            # Crashes while the others were still starting, or within the
            # settle time after, are not counted: the supervisor was busy.
            reports.pause(counts.settle_s)
            counted_from = time.monotonic_ns()
            start = time.monotonic()
            target = counts.crashes + 1 + reports.crashes
            while reports.crashes < target and time.monotonic() - start < counts.crash_cap_s:
                reports.poll(0.5)
                if run.proc.poll() is not None:
                    raise BenchError(f"{contender} exited during the crash test")
            window = time.monotonic() - start
            end_gracefully(run, reports)
    mine = sorted((r for r in reports.all if r.name == "crash"), key=lambda r: r.value)
    samples: list[float] = []
    exit_at: int | None = None
    for r in mine:
        if r.kind == "X":
            exit_at = r.value if r.value >= counted_from else None
        elif r.kind == "R" and exit_at is not None:
            samples.append(ms(r.value - exit_at))
            exit_at = None
    return {"respawn_ms": samples[: counts.crashes], "window_s": window}


def measure_restart_memory(
    contender: str, top: Path, counts: Counts, tinit_output: str, kind: ServiceKind
) -> dict[str, Any]:
    """A tinit's memory while ``crashers`` of its N services crash every 50 ms."""
    n = counts.services
    samples: list[dict[str, Any]] = []
    with open_work(top, f"restarts-{contender}", kind) as work:
        programs = idle_programs(work, n - counts.crashers)
        programs += [
            Program(f"c{i:02d}", work.service_argv(f"c{i:02d}", CRASH_AFTER), crash=True)
            for i in range(counts.crashers)
        ]
        argv = tinit_argv(work, programs, tinit_output, contender)
        reports = work.reports
        with Launched(argv, capture=False) as run:
            init = run.init_pid()
            reports.wait_until(
                lambda: len(reports.running) >= n, START_TIMEOUT, f"{contender}: start of {n}"
            )
            reports.pause(counts.settle_s)
            t0 = time.monotonic()
            base = reports.crashes  # restarts during start-up and settling
            step = max(1, counts.restarts // 10)
            next_mark = 0
            while time.monotonic() - t0 < counts.restart_cap_s:
                reports.poll(0.2)
                done = reports.crashes - base
                if done >= next_mark:
                    samples.append(
                        {
                            "restarts": done,
                            "t_s": round(time.monotonic() - t0, 3),
                            "cpu_ms": cpu_ticks(init) * 1000 / os.sysconf("SC_CLK_TCK"),
                            **memory([init]),
                        }
                    )
                    if done >= counts.restarts:
                        break
                    next_mark = (done // step + 1) * step
                if run.proc.poll() is not None:
                    raise BenchError(
                        f"{contender} exited during the restart test{run.stderr_tail()}"
                    )
            end_gracefully(run, reports)
    return {"samples": samples, "restarts_before_first_sample": base}


def measure_throughput(mode: str, top: Path, counts: Counts) -> dict[str, Any]:
    """One service writing 100-byte lines for ``write_s`` seconds; payload MB/s at the reader."""
    with open_work(top, f"write-{mode}") as work:
        writer = work.writer_argv(counts.write_s)
        if mode == "direct":
            argv = writer
        elif (contender := mode.rpartition(" ")[0]) in TINIT_COMMANDS:
            output = mode.rpartition(" ")[2]
            argv = tinit_argv(
                work, [Program("writer", writer, restart=False, output=output)], output, contender
            )
        elif mode == "supervisord":
            argv = supervisord_argv(
                work, [Program("writer", writer, restart=False, output="stdout")], ""
            )
        else:
            raise ValueError(mode)
        with Launched(argv, capture=True) as run:
            run.init_pid()
            got = _read_output(run, work.reports, time.monotonic() + counts.write_s * 20 + 30)
            end_gracefully(run, work.reports)
    seconds = (got.t_last - got.t_first) / 1e9
    payload = got.lines * LINE_BYTES
    return {
        "payload_bytes": payload,
        "stdout_bytes": got.total,
        "seconds": seconds,
        "MBps": payload / seconds / 1e6,
        "line_prefix": got.prefix.decode(errors="replace"),
    }


@dataclass
class Received:
    total: int  # bytes read from the pipe
    lines: int  # lines the writer wrote
    prefix: bytes  # what the supervisor put before each line
    t_first: int  # when the first bytes were read
    t_last: int  # when the last expected byte was read


def _read_output(run: Launched, reports: Reports, deadline: float) -> Received:
    """Drain ``run``'s stdout until every line the writer reported has arrived.

    Reads into one preallocated buffer: a Python reader that makes a new
    bytes object per read tops out near 400 MB/s here, below the writer. The
    bytes are only counted; each line is the writer's 100 bytes plus the
    prefix seen on the first line.
    """
    fd = run.stdout_fd
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    os.set_blocking(fd, False)
    buffer = bytearray(1 << 20)
    head = b""
    total = 0
    t_first = t_last = 0
    expected: int | None = None  # bytes
    lines = 0
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(reports.fileno(), select.POLLIN)

    def check_reports(timeout: float) -> int | None:
        reports.poll(timeout)
        done = [r.value for r in reports.all if r.kind == "D"]
        if not done or b"\n" not in head:
            return None
        nonlocal lines
        lines = done[0] // LINE_BYTES
        return lines * (head.index(b"\n") + 1)

    while expected is None or total < expected:
        try:
            n = os.readv(fd, [buffer])
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise BenchError(f"output did not all arrive in time{run.stderr_tail()}") from None
            poller.poll(200)
            n = -1
        if n > 0:
            t_last = time.monotonic_ns()
            if not total:
                t_first = t_last
            if len(head) < 4 * LINE_BYTES:
                head += bytes(buffer[: min(n, 4 * LINE_BYTES)])
            total += n
        # While bytes flow, look at the reports only every 64 MiB or so.
        if expected is None and (n <= 0 or total % (64 << 20) < n):
            expected = check_reports(0)
        if n == 0:  # EOF: nothing more will come
            if expected is None:
                expected = check_reports(5.0)
            if expected is None or total < expected:
                raise BenchError(f"EOF after {total} of {expected} bytes{run.stderr_tail()}")
    width = head.index(b"\n") + 1
    return Received(total, lines, head[: width - LINE_BYTES], t_first, t_last)


# --- orchestration -----------------------------------------------------------------


def _attempt(label: str, errors: list[str], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except (BenchError, OSError) as exc:
        log(f"  {label}: FAILED: {exc}")
        errors.append(f"{label}: {exc}")
        return {"error": str(exc)}


@dataclass
class Results:
    counts: dict[str, Any]
    contenders: list[str]
    tinit_output: str
    tests: list[str]
    service_kind: ServiceKind
    lifecycle: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    first: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    crash: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: by tinit contender
    restart_memory: dict[str, dict[str, Any]] = field(default_factory=dict)
    throughput: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


#: The output modes of tinit's throughput test: "CONTENDER MODE" for every tinit contender.
TINIT_OUTPUTS: Final = ("raw", "prefix")


TESTS: Final = ("lifecycle", "first", "crash", "restarts", "output")


def run_all(
    counts: Counts,
    contenders: list[str],
    tinit_output: str,
    top: Path,
    tests: Sequence[str],
    kind: ServiceKind,
) -> Results:
    res = Results(asdict(counts), contenders, tinit_output, list(tests), kind)
    n = counts.services
    for name in contenders:
        res.lifecycle[name] = []
        res.first[name] = []
        res.crash[name] = []
    for i in range(counts.runs if "lifecycle" in tests else 0):
        for name in contenders:
            log(f"start/memory/shutdown of {n} services, run {i + 1}/{counts.runs}: {name}")
            r = _attempt(
                f"{name} lifecycle",
                res.errors,
                partial(measure_lifecycle, name, top, counts, tinit_output, kind),
            )
            log(
                f"  start {fmt(r.get('start_s'), 3)} s, shutdown {fmt(r.get('shutdown_s'), 3)} s,"
                f" stopped {r.get('stopped_reported')}/{n}"
            )
            res.lifecycle[name].append(r)
    first_runs = FIRST_RUNS_PER_RUN * counts.runs
    for i in range(first_runs if "first" in tests else 0):
        for name in contenders:
            log(f"launch to the first service running, run {i + 1}/{first_runs}: {name}")
            r = _attempt(
                f"{name} first",
                res.errors,
                partial(measure_first, name, top, tinit_output, kind),
            )
            log(f"  {fmt(r.get('first_ms'), 1)} ms")
            res.first[name].append(r)
    for i in range(counts.runs if "crash" in tests else 0):
        for name in contenders:
            log(f"crash-to-respawn, run {i + 1}/{counts.runs}: {name}")
            r = _attempt(
                f"{name} crash",
                res.errors,
                partial(measure_crash, name, top, counts, tinit_output, kind),
            )
            if r.get("respawn_ms"):
                log(f"  median {fmt(median(r['respawn_ms']), 2)} ms of {len(r['respawn_ms'])}")
            res.crash[name].append(r)
    tinits = [c for c in contenders if c in TINIT_COMMANDS]
    for name in tinits if "restarts" in tests else []:
        log(f"{name} memory while {counts.crashers} services crash every {CRASH_AFTER * 1000:g} ms")
        res.restart_memory[name] = _attempt(
            f"{name} restarts",
            res.errors,
            partial(measure_restart_memory, name, top, counts, tinit_output, kind),
        )
    modes = ["direct", *(f"{t} {o}" for t in tinits for o in TINIT_OUTPUTS)]
    modes += ["supervisord"] if "supervisord" in contenders else []
    if "output" not in tests:
        modes = []
    for mode in modes:
        res.throughput[mode] = []
    for i in range(counts.runs):
        for mode in modes:
            log(f"output throughput, run {i + 1}/{counts.runs}: {mode}")
            r = _attempt(
                f"{mode} throughput",
                res.errors,
                partial(measure_throughput, mode, top, counts),
            )
            if "MBps" in r:
                log(f"  {r['MBps']:.0f} MB/s")
            res.throughput[mode].append(r)
    return res


# --- report --------------------------------------------------------------------------


@dataclass
class Target:
    label: str
    met: bool | None
    detail: str


def _values(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in runs if r.get(key) is not None]


def _med_range(values: list[float], digits: int, unit: str = "") -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{unit}"
    return f"{median(values):.{digits}f}{unit} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def _ratio_target(label: str, ratio: float | None, limit: float, kind: ServiceKind) -> Target:
    if ratio is None:
        return Target(label, None, "n/a (no floor or no tinit value)")
    if kind is not ServiceKind.PYTHON:
        # With sh services the floor is near zero: the limits were set against Python ones.
        return Target(label, None, f"not judged: {ratio:.2f}× the floor with {kind} services")
    if ratio <= limit:
        return Target(label, True, f"yes: {ratio:.2f}× the floor (limit {limit:g}×)")
    return Target(label, False, f"**no**: {ratio:.2f}× the floor (limit {limit:g}×)")


def _limit_target(label: str, value: float | None, limit: float, unit: str, *, low: bool) -> Target:
    if value is None:
        return Target(label, None, "n/a")
    ok = value <= limit if low else value >= limit
    word = "yes" if ok else "**no**"
    return Target(label, ok, f"{word}: {value:.3g} {unit} (limit {'≤' if low else '≥'} {limit:g})")


def summarize(res: Results) -> tuple[list[list[str]], list[Target]]:
    cols = res.contenders
    n = res.counts["services"]
    rows: list[list[str]] = []
    targets: list[Target] = []

    def row(label: str, values: dict[str, str], target: str = "", met: str = "") -> None:
        rows.append([label, *(values.get(c, "–") for c in cols), target, met])

    def per_run_ratio(key: str, contender: str) -> list[float]:
        """contender / floor, run by run (each run has its own floor)."""
        out: list[float] = []
        floors = res.lifecycle.get(FLOOR, [])
        for mine, base in zip(res.lifecycle.get(contender, []), floors, strict=False):
            if mine.get(key) is not None and base.get(key):
                out.append(mine[key] / base[key])
        return out

    life = res.lifecycle
    # start
    start = {c: _values(life[c], "start_s") for c in cols}
    ratios = {c: per_run_ratio("start_s", c) for c in cols if c != FLOOR}
    t_ratio = median(ratios["tinit"]) if ratios.get("tinit") else None
    targets.append(_ratio_target(f"start of {n} services", t_ratio, 1.15, res.service_kind))
    row(
        f"start of {n} services to all running (s)",
        {c: _med_range(v, 3) for c, v in start.items()},
        "",
        "",
    )
    row(
        "  ratio to the floor",
        {c: _med_range(v, 2, "×") for c, v in ratios.items()},
        "≤ 1.15×",
        targets[-1].detail,
    )
    row(
        "  supervisor CPU during start (ms)",
        {c: _med_range(_values(life[c], "start_cpu_ms"), 0) for c in cols},
    )
    # launch to the first service
    first = {c: _values(res.first.get(c, []), "first_ms") for c in cols}
    if any(first.values()):
        row(
            f"launch to the first service running, 1 {res.service_kind} service (ms)",
            {c: _med_range(v, 1) for c, v in first.items()},
        )
        floor = median(first[FLOOR]) if first.get(FLOOR) else None
        row(
            "  added to the floor's median (ms)",
            {
                c: f"{median(v) - floor:+.1f}"
                for c, v in first.items()
                if c != FLOOR and v and floor is not None
            },
        )
    # shutdown
    shut: dict[str, str] = {}
    for c in cols:
        vals = _values(life[c], "shutdown_s")
        capped = sum(1 for r in life[c] if r.get("shutdown_capped_at_s"))
        text = _med_range(vals, 3)
        if capped:
            text = f"> {SHUTDOWN_CAP:g} ({capped} of {len(life[c])} runs)" + (
                f"; others {text}" if vals else ""
            )
        shut[c] = text
    ratios = {c: per_run_ratio("shutdown_s", c) for c in cols if c != FLOOR}
    t_ratio = median(ratios["tinit"]) if ratios.get("tinit") else None
    targets.append(_ratio_target(f"shutdown of {n} services", t_ratio, 2.0, res.service_kind))
    row(f"shutdown of {n} services, SIGTERM to namespace gone (s)", shut)
    row(
        "  ratio to the floor",
        {c: _med_range(v, 2, "×") for c, v in ratios.items()},
        "≤ 2×",
        targets[-1].detail,
    )
    if res.service_kind is ServiceKind.PYTHON:
        row(
            "  services that reported SIGTERM (min over runs)",
            {
                c: f"{min(int(r.get('stopped_reported', 0)) for r in life[c])}/{n}"
                for c in cols
                if life[c]
            },
        )
    row(
        "  PID 1 exit code",
        {c: "/".join(sorted({str(r.get("exit_code")) for r in life[c]})) for c in cols if life[c]},
    )
    # crash
    crash = {c: [s for r in res.crash[c] for s in r.get("respawn_ms", [])] for c in cols}
    t_med = median(crash["tinit"]) if crash.get("tinit") else None
    targets.append(_limit_target("crash-to-respawn, median", t_med, 20.0, "ms", low=True))
    row(
        "crash-to-respawn, median (ms)",
        {c: fmt(median(v), 2) if v else "n/a" for c, v in crash.items()},
        "≤ 20",
        targets[-1].detail,
    )
    row(
        "  p90 (ms)",
        {c: fmt(percentile(v, 90), 2) if v else "n/a" for c, v in crash.items()},
    )
    row("  samples", {c: str(len(v)) for c, v in crash.items()})

    # memory
    def mem(c: str, key: str) -> str:
        vals = [r["memory"][key] / MIB for r in life[c] if "memory" in r]
        procs = {r["memory"]["processes"] for r in life[c] if "memory" in r}
        suffix = f" [{'/'.join(str(p) for p in sorted(procs))} proc]" if procs != {1} else ""
        return _med_range(vals, 1) + suffix if vals else "n/a"

    sup = [c for c in cols if c != FLOOR]
    t_rss = [r["memory"]["VmRSS_kib"] / MIB for r in life.get("tinit", []) if "memory" in r]
    targets.append(
        _limit_target(
            f"tinit RSS with {n} services", max(t_rss) if t_rss else None, 40.0, "MiB", low=True
        )
    )
    row(
        f"supervisor VmRSS with {n} services (MiB)",
        {c: mem(c, "VmRSS_kib") for c in sup},
        "≤ 40",
        targets[-1].detail,
    )
    row(f"supervisor PSS with {n} services (MiB)", {c: mem(c, "Pss_kib") for c in sup})
    row("  of which RssAnon (MiB)", {c: mem(c, "RssAnon_kib") for c in sup})
    row(
        "  threads of the supervisor process(es)",
        {
            c: "/".join(sorted({str(r["memory"].get("threads")) for r in life[c] if "memory" in r}))
            for c in sup
            if life[c]
        },
    )
    # memory over restarts
    growth = {
        c: g for c, run in res.restart_memory.items() if (g := _growth(run.get("samples", [])))
    }
    if growth:
        mine = growth.get(WORK_TREE)
        if mine is not None:
            targets.append(Target("tinit RSS flat while services restart", mine.flat, mine.detail))
        row(
            "tinit VmRSS, before → after the restarts (MiB)",
            {c: g.cell for c, g in growth.items()},
            "flat",
            mine.detail if mine is not None else "",
        )
    # throughput
    tp = {m: _values(runs, "MBps") for m, runs in res.throughput.items()}
    direct = tp.get("direct", [])

    def rel(mode: str) -> list[float]:
        return [
            r["MBps"] / d["MBps"]
            for r, d in zip(
                res.throughput.get(mode, []), res.throughput.get("direct", []), strict=False
            )
            if "MBps" in r and "MBps" in d
        ]

    tinits = [c for c in cols if c in TINIT_COMMANDS]
    if tp:
        prefix = tp.get("tinit prefix", [])
        targets.append(
            _limit_target(
                "prefix throughput",
                median(prefix) if prefix else None,
                300.0,
                "MB/s",
                low=False,
            )
        )
        row(
            "output, 100-byte lines, `prefix` (MB/s payload); floor = direct write",
            {FLOOR: _med_range(direct, 0)}
            | {c: _med_range(tp.get(f"{c} prefix", []), 0) for c in tinits},
            "≥ 300",
            targets[-1].detail,
        )
        raw_rel = rel("tinit raw")
        targets.append(
            _limit_target(
                "raw throughput vs direct",
                median(raw_rel) if raw_rel else None,
                0.9,
                "× direct",
                low=False,
            )
        )
        row(
            "output, `raw` (supervisord: stdout_logfile=/dev/stdout) (MB/s)",
            {FLOOR: _med_range(direct, 0)}
            | {c: _med_range(tp.get(f"{c} raw", []), 0) for c in tinits}
            | {"supervisord": _med_range(tp.get("supervisord", []), 0)},
        )
        row(
            "  ratio to the direct write",
            {c: _med_range(rel(f"{c} raw"), 2, "×") for c in tinits}
            | {"supervisord": _med_range(rel("supervisord"), 2, "×")},
            "≥ 0.9×",
            targets[-1].detail,
        )
    return rows, targets


@dataclass(frozen=True, slots=True)
class Growth:
    """How a tinit's RSS moved over the restart test, and whether that is flat."""

    flat: bool
    cell: str
    detail: str


def _growth(samples: list[dict[str, Any]]) -> Growth | None:
    if len(samples) < 2:
        return None
    first, last = samples[0], samples[-1]
    grow = (last["VmRSS_kib"] - first["VmRSS_kib"]) / MIB
    peak = max(s["VmRSS_kib"] for s in samples) / MIB
    mid = min(samples, key=lambda s: abs(s["restarts"] - last["restarts"] / 2))
    late = (last["VmRSS_kib"] - mid["VmRSS_kib"]) / MIB
    flat = grow <= 2.0 and late <= 0.5
    detail = (
        f"{'yes' if flat else '**no**'}: +{grow:.1f} MiB over {last['restarts']} restarts,"
        f" +{late:.1f} MiB over the second half (flat: ≤ +2 MiB and ≤ +0.5 MiB)"
    )
    cell = (
        f"{first['VmRSS_kib'] / MIB:.1f} → {last['VmRSS_kib'] / MIB:.1f} (peak {peak:.1f};"
        f" {last['restarts']} restarts)"
    )
    return Growth(flat, cell, detail)


def versions() -> dict[str, str]:
    info = machine_info()
    for key in ("tini", "dumb-init"):
        info.pop(key, None)
    info["supervisord"] = f"deb supervisor {deb_version('supervisor')}"
    info["s6"] = f"deb s6 {deb_version('s6')}"
    info["/bin/sh"] = os.path.realpath("/bin/sh")
    return info


def load() -> str:
    """The load average, and CPU pressure where the kernel has PSI: others' work skews this run."""
    text = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with contextlib.suppress(OSError):
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0].split()
        text += f"; CPU pressure {' '.join(some[1:3])}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, help="N, the number of services")
    parser.add_argument(
        "--runs", type=int, help=f"R, runs of each measurement ({FIRST_RUNS_PER_RUN} × R of first)"
    )
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--json", metavar="OUT", type=Path, help="write the raw numbers here")
    parser.add_argument(
        "--only",
        metavar="LIST",
        help=f"comma-separated contenders (default: {','.join(CONTENDERS)})",
    )
    parser.add_argument(
        "--tests",
        metavar="LIST",
        help=f"comma-separated measurements (default: {','.join(TESTS)})",
    )
    parser.add_argument(
        "--tinit-ref",
        metavar="REF",
        help=(
            "also measure tinit as committed at REF (e.g. main), as the contender 'tinit REF'"
            " beside the working tree's"
        ),
    )
    parser.add_argument(
        "--tinit-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra option for 'tinit run' (repeatable), e.g. --tinit-arg=--no-cgroups",
    )
    parser.add_argument(
        "--service-kind",
        type=ServiceKind,
        default=ServiceKind.PYTHON,
        choices=list(ServiceKind),
        help=(
            "what each idle service is: the Python program (default), or sh, the cheapest"
            " (its start is stamped on receipt; crashing services stay Python)"
        ),
    )
    parser.add_argument(
        "--tinit-output",
        default="prefix",
        choices=("prefix", "null", "raw"),
        help="tinit's output mode for the N idle services (default: prefix, tinit's default)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/services.py: run as root (it makes PID namespaces)", file=sys.stderr)
        return 2
    if not TINIT.exists():
        print(f"bench/services.py: {TINIT} is missing: run 'bash .ci/setup'", file=sys.stderr)
        return 2
    snapshot_name = f"tinit {args.tinit_ref}" if args.tinit_ref else None
    available = list(CONTENDERS)
    if snapshot_name is not None:
        available.insert(available.index(WORK_TREE) + 1, snapshot_name)
    contenders = available
    if args.only:
        wanted = [c.strip() for c in args.only.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in available]
        if unknown:
            parser.error(f"unknown contender(s): {', '.join(unknown)} (known: {available})")
        contenders = [c for c in available if c in wanted]
    tests = list(TESTS)
    if args.tests:
        tests = [t.strip() for t in args.tests.split(",") if t.strip()]
        unknown = [t for t in tests if t not in TESTS]
        if unknown:
            parser.error(f"unknown test(s): {', '.join(unknown)}")
    counts = QUICK if args.quick else FULL
    if args.services is not None:
        if args.services < 2:
            parser.error("--services must be at least 2")
        counts = Counts(
            **{
                **asdict(counts),
                "services": args.services,
                "crashers": min(counts.crashers, args.services // 2),
            }
        )
    if args.runs is not None:
        counts = Counts(**{**asdict(counts), "runs": max(1, args.runs)})
    packages = {"unshare": "util-linux"}
    if "supervisord" in contenders:
        packages["supervisord"] = "supervisor"
    if "s6" in contenders:
        packages["s6-svscan"] = "s6"
    ensure_debian_packages(packages)
    machine = versions()
    machine["load at start (1, 5, 15 min)"] = load()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tinit-bench-services-") as tmp:
        if WORK_TREE in contenders:
            machine["tinit"] = tinit_revision()
        if snapshot_name is not None and snapshot_name in contenders:
            try:
                snapshot = snapshot_tinit(args.tinit_ref, Path(tmp))
            except (BenchError, subprocess.SubprocessError) as exc:
                print(f"bench/services.py: --tinit-ref {args.tinit_ref}: {exc}", file=sys.stderr)
                return 2
            TINIT_COMMANDS[snapshot_name] = snapshot.command
            machine[snapshot_name] = snapshot.label
        TINIT_ARGS[:] = args.tinit_arg
        if args.tinit_arg:
            machine["tinit run with"] = " ".join(args.tinit_arg)
        res = run_all(counts, contenders, args.tinit_output, Path(tmp), tests, args.service_kind)
    machine["load at end (1, 5, 15 min)"] = load()
    machine["duration"] = f"{(time.monotonic() - began) / 60:.1f} min"
    rows, targets = summarize(res)

    n = counts.services
    print(f"## Many services: tinit vs supervisord and s6 ({n} services)\n")
    print("\n".join(f"- {k}: {v}" for k, v in machine.items()))
    match args.service_kind:
        case ServiceKind.PYTHON:
            kind_note = "python (R stamped by the service's first statement)"
        case ServiceKind.SH:
            kind_note = "sh (R stamped when the benchmark reads it; crashers stay Python)"
        case _:
            assert_never(args.service_kind)
    print(
        f"- counts: {'quick' if args.quick else 'full'} run, {asdict(counts)};"
        f" tests: {','.join(tests)}; service kind: {kind_note};"
        f" tinit output mode for the services: {args.tinit_output}\n"
    )
    headers = ["measurement", *contenders, "target (tinit)", "met?"]
    print(markdown_table(headers, rows))
    met = sum(1 for t in targets if t.met)
    judged = sum(1 for t in targets if t.met is not None)
    print(f"\nTargets met by tinit: {met} of {judged}")
    for t in targets:
        print(f"- {t.label}: {t.detail}")
    for name, run in res.restart_memory.items():
        samples = run.get("samples", [])
        if not samples:
            continue
        print(f"\n### {name}: memory while services restart\n")
        print(
            markdown_table(
                [
                    "restarts",
                    "time (s)",
                    "tinit CPU (ms)",
                    "VmRSS (MiB)",
                    "RssAnon (MiB)",
                    "PSS (MiB)",
                ],
                [
                    [
                        str(s["restarts"]),
                        fmt(s["t_s"], 1),
                        fmt(s["cpu_ms"], 0),
                        fmt(s["VmRSS_kib"] / MIB),
                        fmt(s["RssAnon_kib"] / MIB),
                        fmt(s["Pss_kib"] / MIB),
                    ]
                    for s in samples
                ],
            )
        )
    if res.errors:
        print("\n### Errors\n")
        print("\n".join(f"- {e}" for e in res.errors))
    if args.json is not None:
        document = {
            "machine": machine,
            "results": asdict(res),
            "table": {"headers": headers, "rows": rows},
            "targets": [asdict(t) for t in targets],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        log(f"raw numbers written to {args.json}")
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
