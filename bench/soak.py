"""Soak and chaos test: tinit as PID 1 with many misbehaving services, checked throughout.

Run it as root from the repository (after ``bash .ci/setup``)::

    .venv/bin/python bench/soak.py --duration 60 --seed 1            # the CI length
    .venv/bin/python bench/soak.py --duration 1800 --report soak.md  # the long run
    .venv/bin/python bench/soak.py --analyse /tmp/tinit-soak-XXXX    # check a --keep run again

tinit runs as PID 1 of a fresh PID namespace
(``unshare --pid --fork --mount-proc --kill-child``; in the cgroup v2 guest,
``CGV2_VM=1``, also in a cgroup namespace of its own, as a container runtime
would start it) and supervises N services, each ``bench/soak_service.py``
run by the system Python. Every run of a service draws, from a seeded RNG,
how it ends (an exit code, SIGSEGV/SIGKILL/SIGABRT/SIGTERM, ignoring SIGTERM
first, or - in the cgroup v2 guest - blowing its memory limit), what it prints
(numbered, checksummed lines, some of them 64 KiB to 1 MiB long, binary junk
between them) and what it forks and abandons (zombie storms, sleeping and
setsid'd orphans, grandchildren), and writes that intent to a journal before
doing it. Meanwhile this script, from a seeded RNG of its own, sends tinit
bursts of forwarded signals, ``restart``/``stop``/``start``/``reload``
requests (the control socket, the CLI, SIGHUP; reloads toggle one service
and change another), invalid configs, and junk on the control socket; it
stops reading tinit's stdout (a pipe) now and then; and it watches tinit
from the host: zombies among its children, its RSS, fds, threads and CPU
time. The final SIGTERM races a restart of a service that ignores SIGTERM.

At the end it times the shutdown, and checks tinit's JSON events, its output
and the journals against each other (`Analysis.check_*`). The report
(markdown) goes to stdout and ``--report``; the exit status is 1 when any
invariant broke, 2 when the soak itself could not run. Everything it starts
dies with the namespace; ``--keep`` keeps the work directory (config,
journals, tinit's stdout and stderr, ``soak.json``) for ``--analyse``, and
``--tinit-src DIR`` runs the tinit package in DIR (a patched tree).
docs/reliability.md describes the invariants and what the soak found.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import datetime
import itertools
import json
import math
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from _common import (
    ROOT,
    TINIT,
    UNSHARE,
    machine_info,
    markdown_table,
    percentile,
    tinit_tree,
)

SERVICE: Final = ROOT / "bench" / "soak_service.py"
PYTHON: Final = "/usr/bin/python3"
MAX_LINE: Final = 64 * 1024  # tinit cuts longer lines into pieces this long (docs/configuration.md)
PIPE_BUF: Final = select.PIPE_BUF  # writes up to this size to a pipe are atomic
SHUTDOWN_TIMEOUT: Final = 8.0
STUBBORN_STOP: Final = 1.0
RACE_LEAD: Final = 0.3  # the final SIGTERM comes this long after a restart of stubborn
ZOMBIE_AGE: Final = 1.0
RSS_BUDGET_KIB: Final = 2048  # per 10,000 restarts
CGROUP_FS: Final = "/sys/fs/cgroup/"
CGROUP_FDS_PER_SERVICE: Final = 8  # stats files and event watches of one service's cgroup
RING_KIB: Final = 256  # what one service's `tinit logs` ring may hold (tinit.output.Ring)
FORWARD: Final = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
WORDS: Final = ("web", "worker", "cron", "queue", "cache", "api", "mailer", "log-shipper")
#: events at level error that the chaos provokes on purpose
EXPECTED_ERRORS: Final = frozenset({"service_gave_up", "oom_kill"})
#: chaos actions and how often each happens (per second)
RATES: Final = {
    "burst": 0.25,
    "restart": 0.25,
    "restart_cli": 0.06,
    "stop_start": 0.04,
    "reload": 0.05,
    "reload_hup": 0.02,
    "reload_invalid": 0.015,
    "junk": 0.2,
    "revive": 0.2,
    "logs": 0.1,
    "status_cli": 0.05,
    "stall": 0.04,
}


def log(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


def wall_of(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp).timestamp()


# --- the services -----------------------------------------------------------------


@dataclass
class Spec:
    """One service of the soak and its restart policy."""

    name: str
    mode: str = "prefix"
    role: str = "chaos"
    restart: str = "always"
    success: tuple[int, ...] = (0,)
    initial: float = 0.1
    factor: float = 2.0
    max_delay: float = 2.0
    reset_after: float = 5.0
    max_restarts: int | None = None
    stop_timeout: float = 1.0
    depends: tuple[str, ...] = ()
    memory: bool = False  # a memory limit (cgroup v2 guest only) and OOM runs

    def render(self, seed: int, workdir: Path, generation: int) -> str:
        program = workdir / SERVICE.name  # a copy: editing bench/ can't change a running soak
        argv = [PYTHON, "-S", "-u", str(program), str(seed), self.name, str(workdir), self.mode]
        argv += ["1" if self.memory else "0", self.role]
        lines = [
            f"  {self.name}:",
            f"    command: {json.dumps(argv)}",
            f"    output: {self.mode}",
            f"    restart: {self.restart}",
            f"    success_exit_codes: {list(self.success)}",
            f"    backoff: {{initial: {self.initial}, max: {self.max_delay},"
            f" factor: {self.factor}, reset_after: {self.reset_after}}}",
            f"    max_restarts: {'null' if self.max_restarts is None else self.max_restarts}",
            f"    stop_timeout: {self.stop_timeout}",
            f'    env: {{SOAK_GENERATION: "{generation}"}}',
        ]
        if self.depends:
            lines.append(f"    depends_on: {list(self.depends)}")
        if self.memory:
            lines.append("    limits: {memory: 48M}")
        return "\n".join(lines)


def make_specs(count: int, rng: random.Random, oom: bool) -> list[Spec]:
    """``count`` services: one stubborn, one toggled by reloads, the rest drawn from ``rng``."""
    specs = [Spec("stubborn", role="stubborn", stop_timeout=STUBBORN_STOP, max_restarts=None)]
    for i in range(count - 1):
        name = f"{WORDS[i % len(WORDS)]}-{i:02d}"
        mode = "json" if i % 8 == 5 else "raw" if i % 12 == 7 else "prefix"
        r = rng.random()
        spec = Spec(
            name,
            mode=mode,
            restart="always" if r < 0.45 else "on-failure" if r < 0.9 else "never",
            success=(0, 3) if rng.random() < 0.2 else (0,),
            initial=rng.choice((0.05, 0.1, 0.25)),
            factor=rng.choice((1.5, 2.0, 3.0)),
            max_delay=rng.choice((1.0, 2.0, 4.0)),
            reset_after=rng.choice((5.0, 8.0)),
            max_restarts=rng.choice((None, 2, 4, 8)),
            stop_timeout=rng.choice((0.5, 1.0, 1.5)),
            memory=oom and rng.random() < 0.3,
        )
        specs.append(spec)
    # A few dependencies, on services that never give up, to watch shutdown order.
    steady = [s for s in specs[1:] if s.max_restarts is None and s.restart != "never"]
    for dependency in steady[:4]:
        dependents = [s for s in specs[1:] if s is not dependency and not s.depends]
        dependent = dependents[rng.randrange(len(dependents))]
        if dependency.name not in dependent.depends and not dependency.depends:
            dependent.depends = (dependency.name,)
    return specs


# --- the control socket --------------------------------------------------------------


def ask(path: str, request: dict[str, Any], timeout: float) -> tuple[dict[str, Any] | None, str]:
    """One request on the control socket: (reply, "") or (None, what went wrong)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps({"v": 1, **request}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data)
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if not isinstance(reply, dict):
        return None, f"reply is not an object: {reply!r}"
    return reply, ""


JUNK: Final = (
    b"not json\n",
    b"{}\n",
    b"[]\n",
    b'"a string"\n',
    b"1e999\n",
    b'{"v": 2, "cmd": "status"}\n',
    b'{"v": 1, "cmd": "explode"}\n',
    b'{"v": 1, "cmd": "restart", "names": "stubborn"}\n',
    b'{"v": 1, "cmd": "restart", "names": ["no-such-service"]}\n',
    b'{"v": 1, "cmd": "signal", "signal": "SIGBOGUS", "names": ["stubborn"]}\n',
    b'{"v": 1, "cmd": "logs", "n": -1}\n',
    b'{"v": true, "cmd": "status"}\n',
    b'{"v": 1, "cmd": "reload", "names": ["x"]}\n',
    b"[" * 100_000 + b"\n",
    b"\xff\xfe\x00\x01\n",
)


# --- watching tinit from the host -------------------------------------------------------


def read_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) from /proc/PID/stat, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rindex(b")") + 2 :].split()
    return rest[0].decode(), int(rest[1]), int(rest[19])


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
            found.extend(int(c) for c in f.read().split())
    return found


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children(todo.pop())
        found.extend(kids)
        todo.extend(kids)
    return found


def kind_of(link: str) -> str:
    """An fd's kind for a report: ``socket``, ``pipe``, ``anon_inode:inotify`` or the path."""
    return link.split(":[", 1)[0]


def fd_links(pid: int) -> list[str]:
    links: list[str] = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return links
    for name in names:
        with contextlib.suppress(OSError):
            links.append(os.readlink(f"/proc/{pid}/fd/{name}"))
    return links


@dataclass
class Sample:
    t: float  # wall clock
    rss_kib: int
    fds: int
    fd_floor: int  # fds minus pipes shared with a live descendant and live cgroup files
    cpu_ticks: int
    cpu_ns: int
    threads: int
    log_kib: float = 0.0  # what tinit holds for `tinit logs` (status log_bytes, all services)
    cgroup_fds: int = 0  # files of live service cgroups tinit keeps open (stats; bounded)
    floor_links: list[str] = field(default_factory=list)  # what the fd floor counts


class Monitor(threading.Thread):
    """Watches tinit from the host: zombies among its children (4 Hz), resources (1 Hz)."""

    def __init__(self, tinit_pid: int, sock: str | None = None) -> None:
        super().__init__(name="monitor", daemon=True)
        self.pid = tinit_pid
        self.sock = sock
        self.stop_event = threading.Event()
        self.samples: list[Sample] = []
        self.first_seen: dict[tuple[int, int], float] = {}
        self.old_zombies: dict[tuple[int, int], float] = {}  # -> oldest age seen
        self.zombie_sightings = 0
        self.max_zombie_age = 0.0
        self.scans = 0

    def run(self) -> None:
        next_sample = 0.0
        while not self.stop_event.wait(0.25):
            now = time.monotonic()
            self.scan_zombies(now)
            if now >= next_sample:
                next_sample = now + 1.0
                with contextlib.suppress(OSError, ValueError, IndexError):
                    self.samples.append(self.sample())

    def scan_zombies(self, now: float) -> None:
        self.scans += 1
        seen = set()
        for pid in children(self.pid):
            stat = read_stat(pid)
            if stat is None or stat[0] != "Z" or stat[1] != self.pid:
                continue
            key = (pid, stat[2])
            seen.add(key)
            self.zombie_sightings += 1
            first = self.first_seen.setdefault(key, now)
            age = now - first
            self.max_zombie_age = max(self.max_zombie_age, age)
            if age > ZOMBIE_AGE:
                self.old_zombies[key] = max(age, self.old_zombies.get(key, 0.0))
        for key in list(self.first_seen):
            if key not in seen:
                del self.first_seen[key]

    def sample(self) -> Sample:
        status = Path(f"/proc/{self.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        raw = Path(f"/proc/{self.pid}/stat").read_bytes()
        rest = raw[raw.rindex(b")") + 2 :].split()
        cpu_ns = int(Path(f"/proc/{self.pid}/schedstat").read_text().split()[0])
        links = fd_links(self.pid)
        held: set[str] = set()
        for pid in descendants(self.pid):
            held.update(link for link in fd_links(pid) if link.startswith("pipe:"))
        shared = sum(1 for link in links if link in held)
        # tinit keeps a few files of each service's cgroup open (memory.current,
        # ...) while the cgroup exists; a leaked one points at a removed cgroup.
        live_cgroup = [
            link for link in links if link.startswith(CGROUP_FS) and not link.endswith("(deleted)")
        ]
        cgroup = len(live_cgroup)
        floor_links = [link for link in links if link not in held and link not in live_cgroup]
        log_kib = 0.0
        if self.sock is not None:
            reply, error = ask(self.sock, {"cmd": "status"}, 5)
            if reply is None or not reply.get("ok"):
                raise OSError(f"status for the log memory: {error or reply}")
            log_kib = sum(s.get("log_bytes", 0) for s in reply["result"]) / 1024
        return Sample(
            t=time.time(),
            rss_kib=int(fields["VmRSS"].split()[0]),
            fds=len(links),
            fd_floor=len(links) - shared - cgroup,
            cgroup_fds=cgroup,
            floor_links=sorted(floor_links),
            cpu_ticks=int(rest[11]) + int(rest[12]),
            cpu_ns=cpu_ns,
            threads=int(fields["Threads"]),
            log_kib=log_kib,
        )


# --- the soak ---------------------------------------------------------------------------


@dataclass
class Request:
    t: float
    kind: str
    detail: str
    latency: float
    ok: bool
    error: str = ""
    reply: dict[str, Any] | None = None


@dataclass
class Reload:
    t: float  # when it was asked for
    via: str
    toggled: str  # "added" / "removed"
    bumped: str
    result: dict[str, Any] | None


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path | None = None) -> None:
        self.args = args
        self.seed: int = args.seed
        self.rng = random.Random(f"soak/{self.seed}")
        self.cgv2 = os.environ.get("CGV2_VM") == "1"
        self.tinit_tree = tree(args)  # which tinit ran, taken before the run
        self.specs = make_specs(args.services, self.rng, oom=self.cgv2)
        self.by_name = {s.name: s for s in self.specs}
        self.toggle = self.specs[-1].name
        self.toggle_present = True
        self.generations: dict[str, int] = defaultdict(int)
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="tinit-soak-", dir=args.dir))
            (workdir / "state").mkdir()
            (workdir / "journal").mkdir()
            shutil.copy(SERVICE, workdir / SERVICE.name)
        self.workdir = workdir
        self.config = self.workdir / "services.yaml"
        self.sock = str(self.workdir / "control.sock")
        self.stdout_path = self.workdir / "stdout.log"
        self.stderr_path = self.workdir / "stderr.log"
        self.config_lock = threading.Lock()
        self.requests: list[Request] = []
        self.reloads: list[Reload] = []
        self.bursts: list[tuple[float, int]] = []
        self.actions: Counter[str] = Counter()
        self.stop_chaos = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.tinit_pid = 0
        self.pidfd = -1
        self.t_start = 0.0
        self.t_chaos_end = 0.0
        self.t_sigterm = 0.0
        self.shutdown_seconds = math.nan
        self.exit_code: int | None = None
        self.final_status: tuple[float, float, dict[str, Any] | None] = (0.0, 0.0, None)
        self.monitor: Monitor | None = None
        self.cgroup: Path | None = None
        self.drain: threading.Thread | None = None
        self.stall_until = 0.0
        self.stalls: list[tuple[float, float]] = []
        self.raced = False

    # -- keeping a run for a later analysis -------------------------------------------

    _SAVED = (
        "t_start", "t_chaos_end", "shutdown_seconds", "exit_code", "final_status", "actions",
        "bursts", "toggle", "stalls", "tinit_tree",
    )  # fmt: skip

    def save(self) -> None:
        """What the analysis needs besides the files, as ``soak.json`` in the work dir."""
        mon = self.monitor
        assert mon is not None
        state: dict[str, Any] = {k: getattr(self, k) for k in self._SAVED}
        keys = ("duration", "seed", "services", "warmup", "tinit_src")
        state["args"] = {k: getattr(self.args, k) for k in keys}
        state["cgv2"] = self.cgv2
        state["requests"] = [vars(r) for r in self.requests]
        state["reloads"] = [vars(r) for r in self.reloads]
        state["monitor"] = {
            "samples": [vars(x) for x in mon.samples],
            "old_zombies": [[pid, start, age] for (pid, start), age in mon.old_zombies.items()],
            "zombie_sightings": mon.zombie_sightings,
            "max_zombie_age": mon.max_zombie_age,
            "scans": mon.scans,
        }
        (self.workdir / "soak.json").write_text(json.dumps(state))

    @classmethod
    def load(cls, workdir: Path, args: argparse.Namespace) -> Soak:
        state = json.loads((workdir / "soak.json").read_text())
        for key, value in state["args"].items():
            setattr(args, key, value)
        if state["cgv2"]:
            os.environ["CGV2_VM"] = "1"
        soak = cls(args, workdir)
        for key in cls._SAVED:
            if key in state:  # runs kept by an older soak.py lack the newer keys
                setattr(soak, key, state[key])
        soak.actions = Counter(state["actions"])
        soak.bursts = [(t, s) for t, s in state["bursts"]]
        soak.requests = [Request(**r) for r in state["requests"]]
        soak.reloads = [Reload(**r) for r in state["reloads"]]
        mon = Monitor(0)
        m = state["monitor"]
        mon.samples = [Sample(**x) for x in m["samples"]]
        mon.old_zombies = {(pid, start): age for pid, start, age in m["old_zombies"]}
        mon.zombie_sightings = m["zombie_sightings"]
        mon.max_zombie_age = m["max_zombie_age"]
        mon.scans = m["scans"]
        soak.monitor = mon
        return soak

    # -- config -----------------------------------------------------------------

    def render_config(self, *, broken: bool = False) -> str:
        body = [
            "version: 1",
            "settings:",
            f"  shutdown_timeout: {SHUTDOWN_TIMEOUT}",
            "  forward_signals: [SIGUSR1, SIGUSR2, SIGWINCH]",
            "services:",
        ]
        for spec in self.specs:
            if spec.name == self.toggle and not self.toggle_present:
                continue
            body.append(spec.render(self.seed, self.workdir, self.generations[spec.name]))
        if broken:
            body.append("  broken:\n    command: [true]\n    restart: sometimes")
        return "\n".join(body) + "\n"

    def write_config(self, *, broken: bool = False) -> None:
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(self.render_config(broken=broken))
        os.replace(tmp, self.config)

    # -- running tinit --------------------------------------------------------------

    def launch(self) -> None:
        self.write_config()
        tinit = [str(TINIT), "run", "--log-format", "json", "--log-level", "debug"]
        tinit += ["--control-socket", self.sock, str(self.config)]
        argv = self.container_argv(tinit) if self.cgv2 else [*UNSHARE, *tinit]
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        # stdout is a pipe, as under a container runtime, drained into a file by a
        # thread that the chaos sometimes pauses (a stalled log collector);
        # stderr (tinit's events, and stderr lines of services) goes to a file.
        read_end, out = os.pipe2(os.O_CLOEXEC)
        err = os.open(self.stderr_path, flags, 0o644)
        try:
            self.t_start = time.time()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                close_fds=True,
                cwd=self.workdir,
                env=self.env(),
            )
        finally:
            os.close(out)
            os.close(err)
        sink = os.open(self.stdout_path, flags, 0o644)
        self.drain = threading.Thread(target=self.serve_drain, args=(read_end, sink), daemon=True)
        self.drain.start()
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.tinit_pid = self.find_tinit()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reply, _ = ask(self.sock, {"cmd": "ping"}, 5)
            if reply is not None and reply.get("ok"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"tinit exited at once with {self.proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError("tinit's control socket never answered")

    def env(self) -> dict[str, str]:
        """The environment of tinit and its CLI: with ``--tinit-src``, that tree's tinit."""
        env = dict(os.environ)
        if self.args.tinit_src:
            env["PYTHONPATH"] = str(Path(self.args.tinit_src).resolve())
        return env

    def serve_drain(self, read_end: int, sink: int) -> None:
        try:
            while True:
                pause = self.stall_until - time.monotonic()
                if pause > 0:
                    time.sleep(min(pause, 0.1))
                    continue
                data = os.read(read_end, 1 << 20)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(sink, view) :]
        finally:
            os.close(read_end)
            os.close(sink)

    def container_argv(self, tinit: list[str]) -> list[str]:
        """In the cgroup v2 guest: PID 1 of new PID, mount and cgroup namespaces."""
        self.cgroup = Path(f"/sys/fs/cgroup/tinit-soak-{os.getpid()}")
        self.cgroup.mkdir()
        script = (
            'echo 0 > "$1/cgroup.procs" && shift && exec unshare --cgroup --mount sh -c'
            " 'umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup"
            ' && exec "$@"\' sh "$@"'
        )
        return [*UNSHARE, "sh", "-c", script, "sh", str(self.cgroup), *tinit]

    def find_tinit(self) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            kids = children(self.proc.pid)
            if kids:
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{kids[0]}/cmdline").read_bytes()
                    if b"tinit" in cmdline and b"unshare" not in cmdline:
                        return kids[0]
            if self.proc.poll() is not None:
                raise RuntimeError(f"unshare exited early with {self.proc.returncode}")
            time.sleep(0.01)
        raise RuntimeError("tinit did not start inside the namespace")

    def run(self) -> None:
        self.launch()
        log(f"tinit is pid {self.tinit_pid} (host); work dir {self.workdir}")
        self.monitor = Monitor(self.tinit_pid, self.sock)
        self.monitor.start()
        chaos = threading.Thread(target=self.chaos, name="chaos", daemon=True)
        chaos.start()
        end = time.monotonic() + self.args.duration
        progress = time.monotonic() + 60
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                log(f"tinit ended early with {self.proc.returncode}")
                break
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if time.monotonic() >= progress:
                progress += 60
                log(f"{time.time() - self.t_start:.0f}s of {self.args.duration:g}s")
        self.stop_chaos.set()
        chaos.join(timeout=60)
        self.t_chaos_end = time.time()
        sent = time.time()
        reply, _ = ask(self.sock, {"cmd": "status"}, 30)
        self.final_status = (sent, time.time(), reply)
        # The final SIGTERM races an operator's restart of stubborn, which ignores
        # SIGTERM, so stopping it takes its stop_timeout: once the shutdown has
        # begun, nothing may start again, and its SIGKILL makes the exit 137.
        racer = threading.Thread(
            target=self.call, args=("race", {"cmd": "restart", "names": ["stubborn"]}), daemon=True
        )
        racer.start()
        time.sleep(RACE_LEAD)
        self.shutdown()
        racer.join(timeout=30)
        self.monitor.stop_event.set()
        self.monitor.join(timeout=10)
        if self.drain is not None:
            self.stall_until = 0.0
            self.drain.join(timeout=30)
        self.save()

    def shutdown(self) -> None:
        assert self.proc is not None
        self.t_sigterm = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.tinit_pid, signal.SIGTERM)
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        if poller.poll(int((SHUTDOWN_TIMEOUT + 20) * 1000)):
            self.shutdown_seconds = time.monotonic() - self.t_sigterm
            self.exit_code = self.proc.wait(timeout=30)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.tinit_pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                (self.cgroup / "cgroup.kill").write_text("1")
            for _ in range(100):
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)

    # -- chaos ----------------------------------------------------------------------

    def chaos(self) -> None:
        """Draw actions from the seeded RNG; slow ones run on a small pool of threads."""
        from concurrent.futures import ThreadPoolExecutor

        rng = random.Random(f"chaos/{self.seed}")
        kinds, weights = list(RATES), list(RATES.values())
        total = sum(weights)
        actions: dict[str, Callable[[random.Random], None]] = {
            "burst": self.burst,
            "restart": self.restart,
            "restart_cli": self.restart_cli,
            "stop_start": self.stop_start,
            "reload": self.reload,
            "reload_hup": self.reload_hup,
            "reload_invalid": self.reload_invalid,
            "junk": self.junk,
            "revive": self.revive,
            "logs": self.logs,
            "status_cli": self.status_cli,
            "stall": self.stall,
        }
        time.sleep(2.0)  # let every service write its first intent
        with ThreadPoolExecutor(max_workers=4) as pool:
            while not self.stop_chaos.wait(rng.expovariate(total)):
                kind = rng.choices(kinds, weights)[0]
                self.actions[kind] += 1
                # Each action gets an RNG of its own, drawn here: the sequence
                # of actions and their arguments depends on the seed only.
                sub = random.Random(rng.random())
                if kind in ("burst", "stall"):
                    actions[kind](sub)
                else:
                    pool.submit(self.guarded, actions[kind], sub)

    def guarded(self, action: Callable[[random.Random], None], rng: random.Random) -> None:
        try:
            action(rng)
        except Exception as exc:  # a bug in the soak: report it, don't hide it
            self.record("soak-error", action.__name__, 0.0, None, f"{type(exc).__name__}: {exc}")

    def record(
        self, kind: str, detail: str, latency: float, reply: dict[str, Any] | None, error: str
    ) -> Request:
        ok = reply is not None and bool(reply.get("ok")) and not error
        req = Request(time.time(), kind, detail, latency, ok, error, reply)
        self.requests.append(req)
        return req

    def call(self, kind: str, request: dict[str, Any], timeout: float = 60) -> Request:
        began = time.monotonic()
        reply, error = ask(self.sock, request, timeout)
        detail = " ".join([request["cmd"], *request.get("names", [])])
        return self.record(kind, detail, time.monotonic() - began, reply, error)

    def chaos_names(self) -> list[str]:
        return [s.name for s in self.specs if s.role == "chaos" and s.name != self.toggle]

    def burst(self, rng: random.Random) -> None:
        for _ in range(rng.randint(3, 20)):
            signum = rng.choice(FORWARD)
            self.bursts.append((time.time(), signum))
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.tinit_pid, signum)

    def stall(self, rng: random.Random) -> None:
        """Stop reading tinit's stdout for a while: back-pressure, which must lose nothing."""
        seconds = rng.uniform(1.0, 4.0)
        self.stalls.append((time.time(), seconds))
        self.stall_until = time.monotonic() + seconds

    def restart(self, rng: random.Random) -> None:
        self.call("restart", {"cmd": "restart", "names": [rng.choice(self.chaos_names())]})

    def restart_cli(self, rng: random.Random) -> None:
        name = rng.choice(self.chaos_names())
        self.cli("restart_cli", ["restart", name])

    def status_cli(self, rng: random.Random) -> None:
        self.cli("status_cli", ["status"], ok_codes=(0, 1))

    def cli(self, kind: str, args: list[str], ok_codes: tuple[int, ...] = (0,)) -> None:
        env = {**self.env(), "TINIT_CONTROL_SOCKET": self.sock}
        began = time.monotonic()
        try:
            done = subprocess.run(
                [str(TINIT), *args],
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
                cwd=self.workdir,
            )
        except subprocess.TimeoutExpired:
            self.record(kind, " ".join(args), time.monotonic() - began, None, "timed out")
            return
        error = "" if done.returncode in ok_codes else f"exit {done.returncode}: {done.stderr!r}"
        fake = {"ok": not error}
        self.record(kind, " ".join(args), time.monotonic() - began, fake, error)

    def stop_start(self, rng: random.Random) -> None:
        name = rng.choice(self.chaos_names())
        self.call("stop", {"cmd": "stop", "names": [name]})
        time.sleep(rng.uniform(0.2, 2.0))
        self.call("start", {"cmd": "start", "names": [name]})

    def edit(self, rng: random.Random) -> tuple[str, str]:
        """Toggle the toggled service and change another one's env; write the config."""
        self.toggle_present = not self.toggle_present
        bumped = rng.choice(self.chaos_names())
        self.generations[bumped] += 1
        self.write_config()
        return ("added" if self.toggle_present else "removed"), bumped

    def reload(self, rng: random.Random) -> None:
        with self.config_lock:
            toggled, bumped = self.edit(rng)
            sent = time.time()
            req = self.call("reload", {"cmd": "reload"})
            self.reloads.append(Reload(sent, "socket", toggled, bumped, req.reply))

    def reload_hup(self, rng: random.Random) -> None:
        with self.config_lock:
            toggled, bumped = self.edit(rng)
            began, sent = time.monotonic(), time.time()
            os.kill(self.tinit_pid, signal.SIGHUP)
            # No reply to a signal: wait until status shows the toggled service come or go.
            while time.monotonic() - began < 60:
                reply, _ = ask(self.sock, {"cmd": "status"}, 30)
                if reply is not None and reply.get("ok"):
                    names = {s["name"] for s in reply["result"]}
                    if (self.toggle in names) == self.toggle_present:
                        break
                time.sleep(0.1)
            else:
                reply = None
            self.record("reload_hup", "SIGHUP", time.monotonic() - began, reply, "")
            self.reloads.append(Reload(sent, "SIGHUP", toggled, bumped, None))

    def reload_invalid(self, rng: random.Random) -> None:
        with self.config_lock:
            self.write_config(broken=True)
            began = time.monotonic()
            reply, error = ask(self.sock, {"cmd": "reload"}, 60)
            self.write_config()
            good = (
                reply is not None
                and reply.get("ok") is False
                and "invalid" in str(reply.get("error"))
                and any("restart" in p for p in reply.get("problems", []))
            )
            self.record(
                "reload_invalid",
                "reload (broken file)",
                time.monotonic() - began,
                {"ok": good} if reply is not None else None,
                error or ("" if good else f"unexpected reply {reply!r}"),
            )

    def junk(self, rng: random.Random) -> None:
        for _ in range(rng.randint(1, 5)):
            kind = rng.randrange(6)
            began = time.monotonic()
            outcome = self.junk_once(rng, kind)
            latency = time.monotonic() - began
            good = not outcome.startswith("BAD")
            self.record("junk", f"kind {kind}", latency, {"ok": good}, "" if good else outcome)

    def junk_once(self, rng: random.Random, kind: int) -> str:
        """One junk connection; 'BAD ...' if tinit answered junk with success."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(15)
            try:
                s.connect(self.sock)
                if kind == 0:
                    s.sendall(rng.randbytes(rng.randint(1, 4096)).replace(b"\n", b" ") + b"\n")
                elif kind == 1:
                    s.sendall(rng.choice(JUNK))
                elif kind == 2:
                    s.sendall(b"x" * (70 * 1024))  # over MAX_REQUEST, no newline
                elif kind == 3:
                    s.sendall(b'{"v": 1, "cmd": "sta')  # half a request, then hang up
                    return "closed"
                elif kind == 4:
                    for byte in b'{"v": 1, "cmd": "status"}':  # slowly, then give up
                        s.sendall(bytes([byte]))
                        time.sleep(0.02)
                    return "closed"
                else:
                    return "closed"  # connect and hang up
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError as exc:
                return f"closed ({type(exc).__name__})"
        with contextlib.suppress(ValueError):
            reply = json.loads(data)
            if isinstance(reply, dict) and reply.get("ok") is True:
                return f"BAD: junk got a success reply: {data[:200]!r}"
        return "error reply" if data else "closed"

    def revive(self, rng: random.Random) -> None:
        """Start services that ended for good (gave up, or a policy that doesn't restart)."""
        req = self.call("status", {"cmd": "status"})
        if req.reply is None or not req.reply.get("ok"):
            return
        ended = [
            s["name"]
            for s in req.reply["result"]
            if s["state"] in ("failed", "exited") and s["name"] in self.by_name
        ]
        if ended:
            self.call("start", {"cmd": "start", "names": ended})

    def logs(self, rng: random.Random) -> None:
        name = rng.choice(self.chaos_names())
        req = self.call("logs", {"cmd": "logs", "names": [name], "n": 50})
        if req.reply is None or not req.reply.get("ok"):
            return
        for record in req.reply["result"]["lines"]:
            text = record["line"].encode()
            if text.startswith(b"@S "):
                verdict = verify_line(text)
                if verdict == "corrupt":
                    req.ok = False
                    req.error = f"tinit logs gave a corrupt line: {text[:120]!r}"


# --- analysis -------------------------------------------------------------------------


def verify_line(line: bytes) -> str:
    """'ok', 'short' (a piece of a split line), or 'corrupt' for an ``@S`` line."""
    parts = line.split(b" ", 7)
    if len(parts) < 7:
        return "corrupt"
    try:
        size = int(parts[5])
        crc = int(parts[6], 16)
    except ValueError:
        return "corrupt"
    payload = parts[7] if len(parts) == 8 else b""
    if len(payload) < size:
        return "short"
    if len(payload) > size:
        return "corrupt"
    head = b" ".join(parts[1:6])
    return "ok" if zlib.crc32(head + b" " + payload) == crc else "corrupt"


@dataclass
class Check:
    name: str
    ok: bool
    summary: str
    problems: list[str] = field(default_factory=list)
    skipped: str = ""

    @property
    def verdict(self) -> str:
        return "skipped" if self.skipped else "PASS" if self.ok else "FAIL"


@dataclass
class Run:
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


class Stream:
    """The lines of one service on one stream, as they came out of tinit, checked in order."""

    def __init__(self, service: str, stream: str, mode: str) -> None:
        self.service = service
        self.stream = stream
        self.mode = mode
        self.seqs: dict[int, list[int]] = defaultdict(list)
        self.torn: dict[int, list[int]] = defaultdict(list)
        self.last: tuple[int, int] = (0, -1)
        self.piece: list[bytes] | None = None
        self.piece_size = 0
        self.junk: list[bytes] = []
        self.junk_after: dict[tuple[int, int], list[bytes]] = {}
        self.problems: list[str] = []
        self.lines = 0
        self.bytes = 0
        self.long_lines = 0
        self.unattributed = 0

    def feed(self, body: bytes) -> None:
        if self.piece is not None:
            if body.startswith(b"@S "):
                self.finish_piece(torn=True)
            else:
                if len(self.piece[-1]) != MAX_LINE and self.mode != "raw":
                    self.problems.append(f"a piece of a long line is {len(self.piece[-1])} bytes")
                self.piece.append(body)
                if sum(map(len, self.piece)) >= self.piece_size:
                    self.finish_piece(torn=False)
                return
        if not body.startswith(b"@S "):
            self.junk.append(body)
            return
        verdict = verify_line(body)
        if verdict == "short":
            parts = body.split(b" ", 7)
            self.piece = [body]
            self.piece_size = len(body) - len(parts[7]) + int(parts[5])
            return
        self.accept(body, verdict == "corrupt")

    def finish_piece(self, *, torn: bool) -> None:
        assert self.piece is not None
        whole = b"".join(self.piece)
        self.piece = None
        self.long_lines += 1
        self.accept(whole, torn or verify_line(whole) != "ok")

    def accept(self, line: bytes, torn: bool) -> None:
        parts = line.split(b" ", 7)
        try:
            name, run, stream, seq = (
                parts[1].decode(),
                int(parts[2]),
                parts[3].decode(),
                int(parts[4]),
            )
        except (IndexError, ValueError, UnicodeDecodeError):
            self.problems.append(f"unparseable line {line[:100]!r}")
            return
        if name != self.service or stream != self.stream:
            self.problems.append(
                f"line of {name}/{stream} came out as {self.service}'s: {line[:80]!r}"
            )
            return
        self.lines += 1
        self.bytes += len(line) + 1
        if self.junk:
            self.junk_after[self.last] = self.junk
            self.junk = []
        if (run, seq) <= self.last:
            self.problems.append(
                f"run {run} line {seq} after run {self.last[0]} line {self.last[1]}"
            )
        self.last = (run, seq)
        if torn:
            self.torn[run].append(seq)
        self.seqs[run].append(seq)

    def close(self) -> None:
        if self.piece is not None:
            self.finish_piece(torn=True)
        if self.junk:
            self.junk_after[self.last] = self.junk
            self.junk = []


class Analysis:
    """tinit's events, its output and the journals, checked against each other."""

    def __init__(self, soak: Soak) -> None:
        self.soak = soak
        self.events: list[dict[str, Any]] = []
        self.other_stderr: list[bytes] = []
        self.streams: dict[tuple[str, str], Stream] = {}
        self.unattributed: list[bytes] = []
        self.spliced_short: list[bytes] = []
        self._forwards: dict[str, list[int]] | None = None  # signal -> signal_received indices
        self.spliced_long = 0
        self.journal: dict[str, list[dict[str, Any]]] = {}
        self.runs: dict[str, list[Run]] = defaultdict(list)
        self.stats: dict[str, Any] = {}
        self.checks: list[Check] = []

    # -- reading ------------------------------------------------------------------

    def stream(self, service: str, stream: str) -> Stream:
        key = (service, stream)
        if key not in self.streams:
            spec = self.soak.by_name.get(service)
            self.streams[key] = Stream(service, stream, spec.mode if spec else "?")
        return self.streams[key]

    def lines_of(self, path: Path) -> Iterator[bytes]:
        with open(path, "rb") as f:
            tail = b""
            while chunk := f.read(1 << 22):
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                yield from lines
            if tail:
                yield tail

    def route(self, line: bytes, stream: str) -> bool:
        """Service output in any mode; False if ``line`` is not service output."""
        names = self.soak.by_name
        if line.startswith(b"@S "):  # raw mode
            name = line.split(b" ", 2)[1].decode(errors="replace")
            if name in names:
                self.stream(name, "o" if stream == "stdout" else "e").feed(line)
                return True
            return False
        if line.startswith(b'{"ts": '):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("service") in names:
                    which = "o" if record["stream"] == "stdout" else "e"
                    self.stream(record["service"], which).feed(record["line"].encode())
                    return True
            return False
        label, sep, body = line.partition(b" | ")
        who = label.rstrip().decode(errors="replace")
        if sep and who in names:
            self.stream(who, "o" if stream == "stdout" else "e").feed(body)
            return True
        return False

    def read(self) -> None:
        soak = self.soak
        for line in self.lines_of(soak.stderr_path):
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
            if not self.route(line, "stderr") and line:
                self.other_stderr.append(line[:300])
        for line in self.unsplice(self.lines_of(soak.stdout_path)):
            if not self.route(line, "stdout") and line:
                self.unattributed.append(line[:4096])
        for s in self.streams.values():
            s.close()
        for spec in soak.specs:
            path = soak.workdir / "journal" / f"{spec.name}.jsonl"
            records = []
            if path.exists():
                for text in path.read_bytes().splitlines():
                    with contextlib.suppress(ValueError):
                        records.append(json.loads(text))
            self.journal[spec.name] = records

    def unsplice(self, lines: Iterator[bytes]) -> Iterator[bytes]:
        """The lines of the shared stdout pipe, with lines cut by other writers put back.

        tinit and every ``raw`` service write into one pipe. A write longer
        than PIPE_BUF to a full pipe is done in parts, and other writers' lines
        can land between the parts: the physical line then holds the head of
        one line and, after it, the start of another. Heads wait here until the
        rest of their line comes (a physical line that starts like no line).
        """
        specs = self.soak.specs
        width = max(len(s.name) for s in specs)
        starts = [re.escape(f"@S {s.name} ".encode()) for s in specs if s.mode == "raw"]
        starts += [re.escape(f"{s.name:<{width}} | ".encode()) for s in specs if s.mode != "raw"]
        starts.append(re.escape(b'{"ts": "'))
        start = re.compile(b"|".join(starts))
        held: list[bytes] = []
        for line in lines:
            cuts = [m.start() for m in start.finditer(line, 1)]
            parts = [line[a:b] for a, b in zip([0, *cuts], [*cuts, len(line)], strict=True)]
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                if held and not start.match(part):
                    joined = self.rejoin(held, part, whole=last)
                    if joined is None:
                        continue  # still not the whole line
                    part = joined
                if last:
                    yield part
                else:
                    held.append(part)
        self.unattributed.extend(h[:4096] for h in held)

    def rejoin(self, held: list[bytes], rest: bytes, *, whole: bool) -> bytes | None:
        """Join ``rest`` to the head it continues (the latest, unless another verifies)."""
        order = list(range(len(held) - 1, -1, -1))
        if whole:
            fits = [i for i in order if self.verifies(held[i] + rest)]
            order = fits + [i for i in order if i not in fits]
        i = order[0]
        if not whole:
            held[i] += rest
            return None
        line = held.pop(i) + rest
        self.splice(len(line) + 1, line)
        return line

    def verifies(self, line: bytes) -> bool:
        body = line.partition(b" | ")[2] if not line.startswith((b"@S ", b"{")) else line
        if line.startswith(b"{"):
            try:
                body = json.loads(line)["line"].encode()
            except (ValueError, KeyError, TypeError):
                return False
        return verify_line(body) in ("ok", "short")

    def splice(self, size: int, line: bytes) -> None:
        """Note a line of tinit's (``size`` bytes with its newline) that a raw line cut into.

        Up to PIPE_BUF bytes, one write(2) of tinit's is atomic, so a cut there
        is tinit's doing; a longer line cannot be written atomically to a pipe
        at all, which makes that cut a limit of raw mode (docs/reliability.md).
        """
        if size <= PIPE_BUF:
            self.spliced_short.append(line[:300])
        else:
            self.spliced_long += 1

    # -- runs ---------------------------------------------------------------------

    def build_runs(self) -> list[str]:
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

    def analyse(self) -> list[Check]:
        self.read()
        run_problems = self.build_runs()
        self.checks = [
            self.check_statuses(run_problems),
            self.check_orphans(),
            self.check_zombies(),
            self.check_restarts(),
            self.check_output(),
            self.check_junk(),
            self.check_signals(),
            self.check_control(),
            self.check_reloads(),
            self.check_rss(),
            self.check_fds(),
            self.check_threads(),
            self.check_shutdown(),
            self.check_shutdown_order(),
            self.check_own_log(),
            self.check_oom(),
        ]
        self.cpu_figures()
        return self.checks

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

    def check_statuses(self, problems: list[str]) -> Check:
        exits: Counter[str] = Counter()
        no_intent = 0
        began = next(
            (e["_i"] for e in self.events if e["event"] == "shutdown_began"), len(self.events)
        )
        for name, runs in self.runs.items():
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
                        if self.forwarded_during(run, e["_i"], sig):
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
                            problems.append(
                                f"{name}: run {intent['run']} OOM kill not reported as oom"
                            )
                if got not in allowed:
                    problems.append(
                        f"{name}: run {intent['run']} pid {run.pid} meant {describe(intent)},"
                        f" tinit reported {got} (stop sent: {run.stop_sent},"
                        f" killed: {run.killed}, got as far as acting: {run.wrote});"
                        f" allowed: {sorted(allowed)}"
                    )
        total = sum(exits.values())
        self.stats["exits"] = dict(exits)
        self.stats["runs_without_intent"] = no_intent
        return Check(
            "exit statuses",
            not problems,
            f"{total} exits, each matched to its run's intent ({no_intent} runs were stopped"
            " before writing one); " + ", ".join(f"{k}: {v}" for k, v in exits.most_common()),
            problems,
        )

    def check_orphans(self) -> Check:
        reaped: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for e in self.events:
            if e["event"] == "orphan_reaped":
                reaped[e["pid"]].append(e)
        starts: dict[int, list[float]] = defaultdict(list)
        for runs in self.runs.values():
            for run in runs:
                starts[run.pid].append(run.t_start)
        used: set[int] = set()
        problems: list[str] = []
        forked = 0
        statuses: Counter[str] = Counter()
        for name, records in self.journal.items():
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
        self.stats["orphans_forked"] = forked
        self.stats["orphans_reaped"] = total
        return Check(
            "orphans reaped",
            not problems,
            f"{forked} orphans forked by the services, each reaped by tinit with its own status"
            f" ({dict(statuses)}); {total} orphan_reaped events in all"
            f" ({total - len(used)} from storms cut short before they were journaled)",
            problems,
        )

    def check_zombies(self) -> Check:
        mon = self.soak.monitor
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

    def check_restarts(self) -> Check:
        problems: list[str] = []
        ratios: list[float] = []
        decisions: Counter[str] = Counter()
        late: list[float] = []
        began = next(
            (e["_i"] for e in self.events if e["event"] == "shutdown_began"), len(self.events)
        )
        for name, runs in self.runs.items():
            spec = self.soak.by_name[name]
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
                    if not self.stop_requested(name, d["_i"]):
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
        sent, received, reply = self.soak.final_status
        if reply is not None and reply.get("ok"):
            for status in reply["result"]:
                name = status["name"]
                if name == self.soak.toggle:
                    continue  # removed and re-added: its counters started again
                events = [
                    e["_t"] for e in self.events
                    if e.get("service") == name and e["event"] == "service_restarting"
                ]  # fmt: skip
                low = sum(1 for t in events if t <= sent)
                high = sum(1 for t in events if t <= received)
                if not low <= status["restarts"] <= high:
                    problems.append(
                        f"{name}: status says {status['restarts']} restarts, events say"
                        f" {low}..{high}"
                    )
        else:
            problems.append(f"the final status request failed: {reply}")
        self.stats["decisions"] = dict(decisions)
        self.stats["restarts"] = decisions.get("restarting", 0)
        spread = f"{min(ratios):.3f}..{max(ratios):.3f}" if ratios else "n/a"
        if len(ratios) >= 20 and max(ratios) - min(ratios) < 0.05:
            problems.append(f"restart delays show no jitter: ratios {spread}")
        over = "n/a"
        if late:
            p50, p99 = percentile(late, 50) * 1000, percentile(late, 99) * 1000
            over = f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(late) * 1000:.0f} ms"
        self.stats["backoff_overshoot"] = over
        return Check(
            "restart decisions",
            not problems,
            f"{sum(decisions.values())} ends decided as the policy says ({dict(decisions)});"
            f" delay/backoff ratio {spread} (jitter ±20%); the next start came after the"
            f" announced delay + {over}; status restart counters agree with the events",
            problems,
        )

    def check_output(self) -> Check:
        problems: list[str] = []
        lines = long_lines = nbytes = 0
        for name, runs in self.runs.items():
            spec = self.soak.by_name[name]
            for stream_name in ("o", "e"):
                stream = self.streams.get((name, stream_name))
                if stream is not None:
                    problems.extend(f"{name}/{stream_name}: {p}" for p in stream.problems)
                    lines += stream.lines
                    long_lines += stream.long_lines
                    nbytes += stream.bytes
                for run in runs:
                    intent = run.intent
                    if intent is None:
                        continue
                    k = intent["run"]
                    seqs = stream.seqs.get(k, []) if stream else []
                    torn = stream.torn.get(k, []) if stream else []
                    want = intent["out" if stream_name == "o" else "err"]
                    if run.wrote:
                        if seqs != list(range(want)) or torn:
                            problems.append(
                                f"{name}/{stream_name} run {k} ({spec.mode}): wrote lines"
                                f" 0..{want - 1}, got {summarize(seqs, want)}"
                                + (f", torn: {torn}" if torn else "")
                            )
                    elif (
                        seqs != list(range(len(seqs)))
                        or len(seqs) > want
                        or (torn and torn != [seqs[-1]])
                    ):
                        problems.append(
                            f"{name}/{stream_name} run {k} ({spec.mode}, cut short): got"
                            f" {summarize(seqs, want)}, torn {torn}"
                        )
        for (name, stream_name), stream in self.streams.items():
            meant = {r.intent["run"] for r in self.runs.get(name, []) if r.intent}
            for k in sorted(set(stream.seqs) - meant):
                problems.append(
                    f"{name}/{stream_name}: lines of run {k}, which tinit never reported"
                    " starting or which never wrote its intent"
                )
        for line in self.spliced_short[:10]:
            whose = "a raw service's own" if line.startswith(b"@S ") else "tinit's"
            problems.append(
                f"another writer's line landed inside a line of {whose} no longer than"
                f" PIPE_BUF ({PIPE_BUF} bytes): it was written in more than one write(2) to"
                f" the full pipe: {line[:100]!r}"
            )
        for line in self.unattributed[:10]:
            problems.append(f"stdout line from nobody: {line[:100]!r}")
        self.stats["lines"] = lines
        self.stats["long_lines"] = long_lines
        self.stats["output_bytes"] = nbytes
        self.stats["spliced_long"] = self.spliced_long
        return Check(
            "output lines",
            not problems,
            f"{lines} checksummed lines ({long_lines} of them 64 KiB to 1 MiB, reassembled from"
            f" 64 KiB pieces), {nbytes / 1e6:.1f} MB: each exactly once, in order, untorn;"
            f" {self.spliced_long} lines longer than PIPE_BUF had a raw service's line spliced"
            " in on a full pipe (a limit of raw mode; their bytes are all there)",
            problems,
        )

    def check_junk(self) -> Check:
        problems: list[str] = []
        segments = nbytes = 0
        for name, runs in self.runs.items():
            spec = self.soak.by_name[name]
            stream = self.streams.get((name, "o"))
            for run in runs:
                if run.intent is None or not run.intent["junk"] or not run.wrote:
                    continue
                for after, (size, crc, newlines) in run.intent["junk"].items():
                    segments += 1
                    got = stream.junk_after.get((run.intent["run"], int(after))) if stream else None
                    if got is None:
                        problems.append(f"{name} run {run.intent['run']}: junk after {after} lost")
                        continue
                    if spec.mode == "prefix":
                        data = b"\n".join(got) + b"\n"
                        nbytes += len(data)
                        if len(data) != size or zlib.crc32(data) != crc:
                            problems.append(
                                f"{name} run {run.intent['run']}: junk after line {after} came"
                                f" out as {len(data)} bytes (crc {zlib.crc32(data):08x}), not"
                                f" {size} (crc {crc:08x})"
                            )
                    elif len(got) != newlines:
                        problems.append(
                            f"{name} run {run.intent['run']}: junk after {after}: {len(got)}"
                            f" JSON records for {newlines} lines"
                        )
        return Check(
            "binary junk",
            not problems,
            f"{segments} junk segments; prefix mode passed {nbytes} bytes on byte for byte,"
            " JSON mode one record per junk line",
            problems,
        )

    def check_signals(self) -> Check:
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
        bursts = self.soak.bursts
        forwards: dict[str, list[float]] = {}
        for e in self.events:
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
        for name, runs in self.runs.items():
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
        self.stats["signals_sent"] = len(bursts)
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

    def check_control(self) -> Check:
        problems: list[str] = []
        kinds: Counter[str] = Counter()
        status_latency: list[float] = []
        for req in self.soak.requests:
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
            f"{len(self.soak.requests)} requests ({dict(kinds)}), every one answered; junk"
            f" always got an error or a closed connection; {lat}",
            problems,
        )

    def check_reloads(self) -> Check:
        problems: list[str] = []
        reloaded = [e for e in self.events if e["event"] == "config_reloaded"]
        for i, reload in enumerate(self.soak.reloads):
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
            if sorted(result["changed"]) != want_changed or result[reload.toggled] != [
                self.soak.toggle
            ]:
                problems.append(
                    f"reload {i} ({reload.via}): {reload.toggled} {self.soak.toggle}, changed"
                    f" {reload.bumped}; tinit: { ({k: result[k] for k in ('added', 'removed', 'changed')}) }"  # noqa: E501
                )
        invalid = sum(1 for r in self.soak.requests if r.kind == "reload_invalid")
        return Check(
            "reloads",
            not problems,
            f"{len(self.soak.reloads)} reloads (socket and SIGHUP) each added or removed"
            f" exactly the toggled service and restarted exactly the edited one; {invalid}"
            " invalid configs refused with the problem named",
            problems,
        )

    def warm_samples(self) -> tuple[list[Sample], list[Sample], float]:
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
        return sum(
            1 for e in self.events if e["event"] == "service_starting" and t0 <= e["_t"] <= t1
        )

    def check_rss(self) -> Check:
        """RSS growth, less what the `tinit logs` rings took in (bounded, and checked here)."""
        first, last, _ = self.warm_samples()
        if not first or not last:
            return Check("RSS flat", False, "not enough samples", ["no samples"])
        rss0 = sum(s.rss_kib for s in first) / len(first)
        rss1 = sum(s.rss_kib for s in last) / len(last)
        log0 = sum(s.log_kib for s in first) / len(first)
        log1 = sum(s.log_kib for s in last) / len(last)
        starts = self.restarts_between(first[0].t, last[-1].t)
        budget = RSS_BUDGET_KIB * max(1.0, starts / 10_000)
        growth = (rss1 - log1) - (rss0 - log0)
        mon = self.soak.monitor
        assert mon is not None
        peak = max(s.rss_kib for s in mon.samples)
        log_peak = max(s.log_kib for s in mon.samples)
        log_bound = self.soak.args.services * RING_KIB
        self.stats["rss"] = {
            "warm": rss0,
            "end": rss1,
            "peak": peak,
            "starts": starts,
            "log_warm": log0,
            "log_end": log1,
            "log_peak": log_peak,
        }
        per10k = growth / max(starts, 1) * 10_000
        problems = []
        if growth >= budget:
            problems.append(f"grew {growth:.0f} KiB besides the log rings, budget {budget:.0f} KiB")
        if log_peak > log_bound:
            problems.append(f"log rings held {log_peak:.0f} KiB, bound {log_bound} KiB")
        return Check(
            "RSS flat",
            not problems,
            f"VmRSS {rss0 / 1024:.1f} MiB after warm-up -> {rss1 / 1024:.1f} MiB at the end, of"
            f" which `tinit logs` rings {log0 / 1024:.1f} -> {log1 / 1024:.1f} MiB (bound"
            f" {log_bound / 1024:.1f} MiB); the rest {growth:+.0f} KiB over {starts} starts"
            f" ({per10k:+.0f} KiB per 10,000; budget {budget:.0f} KiB); peak {peak / 1024:.1f} MiB",
            problems,
        )

    def check_fds(self) -> Check:
        first, last, _ = self.warm_samples()
        if not first or not last:
            return Check("fds flat", False, "not enough samples", ["no samples"])
        floor0 = min(s.fd_floor for s in first)
        floor1 = min(s.fd_floor for s in last)
        mon = self.soak.monitor
        assert mon is not None
        most = max(s.fds for s in mon.samples)
        cgroup_most = max(s.cgroup_fds for s in mon.samples)
        cgroup_bound = self.soak.args.services * CGROUP_FDS_PER_SERVICE
        self.stats["fds"] = {
            "floor_warm": floor0,
            "floor_end": floor1,
            "max": most,
            "cgroup_max": cgroup_most,
        }
        problems = []
        if floor1 > floor0:
            low0 = min(first, key=lambda s: s.fd_floor).floor_links
            low1 = min(last, key=lambda s: s.fd_floor).floor_links
            extra = Counter(kind_of(link) for link in low1) - Counter(
                kind_of(link) for link in low0
            )
            problems.append(
                f"fd floor grew from {floor0} to {floor1} (more: {dict(extra) or 'unknown'})"
            )
        if cgroup_most > cgroup_bound:
            problems.append(f"{cgroup_most} cgroup files open at once, bound {cgroup_bound}")
        return Check(
            "fds flat",
            not problems,
            f"open fds not held by a running service's pipes or a live service cgroup:"
            f" {floor0} after warm-up, {floor1} at the end (minimum over a window each);"
            f" at most {most} fds in all, {cgroup_most} of them cgroup files"
            f" (bound {cgroup_bound})",
            problems,
        )

    def check_threads(self) -> Check:
        mon = self.soak.monitor
        assert mon is not None
        most = max((s.threads for s in mon.samples), default=0)
        return Check(
            "single thread",
            most == 1,
            f"tinit had {most} thread(s) at most over {len(mon.samples)} samples (it forks"
            " services from its one thread)",
            [] if most == 1 else [f"{most} threads"],
        )

    def check_shutdown(self) -> Check:
        soak = self.soak
        problems: list[str] = []
        began = [e for e in self.events if e["event"] == "shutdown_began"]
        finished = [e for e in self.events if e["event"] == "shutdown_finished"]
        after = [e for e in self.events if began and e["_i"] > began[0]["_i"]]
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
            problems.append(
                f"exit code {soak.exit_code}, not 137: a shutdown that SIGKILLs exits 137"
            )
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
        for runs in self.runs.values():
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

    def check_shutdown_order(self) -> Check:
        problems: list[str] = []
        began = next((e["_i"] for e in self.events if e["event"] == "shutdown_began"), None)
        pairs = [(s.name, d) for s in self.soak.specs for d in s.depends]
        if began is None:
            return Check("shutdown order", False, "no shutdown_began", ["no shutdown_began"])
        tail = self.events[began:]
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

    def check_own_log(self) -> Check:
        problems: list[str] = []
        levels: Counter[tuple[str, str]] = Counter()
        for e in self.events:
            levels[(e.get("level", "?"), e["event"])] += 1
            if e.get("level") == "error" and e["event"] not in EXPECTED_ERRORS:
                problems.append(f"error event: {strip(e)}")
        for line in self.other_stderr[:10]:
            problems.append(f"stderr line that is neither an event nor service output: {line!r}")
        warnings = {f"{ev}": n for (lvl, ev), n in levels.items() if lvl == "warning"}
        self.stats["events"] = len(self.events)
        return Check(
            "tinit's own log",
            not problems,
            f"{len(self.events)} events, no unexpected error, no traceback, no dropped event;"
            f" warnings: {warnings}",
            problems,
        )

    def check_oom(self) -> Check:
        if not self.soak.cgv2:
            return Check(
                "OOM kills",
                True,
                "",
                skipped="needs the pure cgroup v2 guest (CGV2_VM=1, docs/reliability.md):"
                " this host's memory controller is on cgroup v1",
            )
        problems: list[str] = []
        count = 0
        for name, runs in self.runs.items():
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

    def timeline(self, points: int = 8) -> list[list[str]]:
        """tinit's RSS, fds and CPU time at a few moments of the run, with starts so far."""
        mon = self.soak.monitor
        assert mon is not None
        samples = [s for s in mon.samples if s.t <= self.soak.t_chaos_end]
        if len(samples) < points:
            return []
        starts = sorted(e["_t"] for e in self.events if e["event"] == "service_starting")
        rows = []
        for k in range(points):
            s = samples[round(k * (len(samples) - 1) / (points - 1))]
            rows.append(
                [
                    f"{s.t - self.soak.t_start:.0f}",
                    str(bisect.bisect_right(starts, s.t)),
                    f"{s.rss_kib / 1024:.1f}",
                    f"{s.log_kib / 1024:.1f}",
                    str(s.fds),
                    str(s.fd_floor),
                    f"{(s.cpu_ns - samples[0].cpu_ns) / 1e9:.1f}",
                ]
            )
        return rows

    def cpu_figures(self) -> None:
        """tinit's CPU time per service start and per reaped orphan (least squares per second)."""
        mon = self.soak.monitor
        assert mon is not None
        samples = [s for s in mon.samples if s.t <= self.soak.t_chaos_end]
        if len(samples) < 10:
            return
        starts = sorted(e["_t"] for e in self.events if e["event"] == "service_starting")
        orphans = sorted(e["_t"] for e in self.events if e["event"] == "orphan_reaped")
        rows = []
        for a, b in itertools.pairwise(samples):
            n_s = bisect.bisect_right(starts, b.t) - bisect.bisect_right(starts, a.t)
            n_o = bisect.bisect_right(orphans, b.t) - bisect.bisect_right(orphans, a.t)
            rows.append((float(n_s), float(n_o), 1.0, (b.cpu_ns - a.cpu_ns) / 1e6))
        coef = least_squares(rows)
        total_ms = (samples[-1].cpu_ns - samples[0].cpu_ns) / 1e6
        n_starts = self.restarts_between(samples[0].t, samples[-1].t)
        span = samples[-1].t - samples[0].t
        self.stats["cpu"] = {
            "total_s": total_ms / 1000,
            "seconds": span,
            "starts": n_starts,
            "per_start_ms": total_ms / max(n_starts, 1),
            "fit_per_start_ms": coef[0] if coef else None,
            "fit_per_orphan_ms": coef[1] if coef else None,
            "fit_idle_ms_per_s": coef[2] if coef else None,
            "ticks": samples[-1].cpu_ticks - samples[0].cpu_ticks,
        }


def least_squares(rows: list[tuple[float, float, float, float]]) -> list[float] | None:
    """Solve y = a*x0 + b*x1 + c*x2 for (a, b, c) by the normal equations."""
    n = 3
    m = [[sum(r[i] * r[j] for r in rows) for j in range(n)] for i in range(n)]
    v = [sum(r[i] * r[3] for r in rows) for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-12:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        v[col], v[pivot] = v[pivot], v[col]
        for r in range(n):
            if r != col:
                k = m[r][col] / m[col][col]
                m[r] = [x - k * y for x, y in zip(m[r], m[col], strict=True)]
                v[r] -= k * v[col]
    return [v[i] / m[i][i] for i in range(n)]


def describe(intent: dict[str, Any]) -> str:
    if intent["act"] == "exit":
        what = f"exit {intent['code']}"
    elif intent["act"] == "signal":
        what = f"die of {signal.Signals(intent['signal']).name}"
    else:
        what = "go over memory.max"
    return what + (" (ignoring SIGTERM)" if intent["hang"] else "")


def summarize(seqs: list[int], want: int) -> str:
    missing = sorted(set(range(want)) - set(seqs))
    dups = sorted(k for k, n in Counter(seqs).items() if n > 1)
    return (
        f"{len(seqs)} lines"
        + (f", missing {missing[:10]}" if missing else "")
        + (f", repeated {dups[:10]}" if dups else "")
        + ("" if seqs == sorted(seqs) else ", out of order")
    )


def strip(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_") and k != "command"}


# --- the report -----------------------------------------------------------------------------


def report(soak: Soak, analysis: Analysis, checks: list[Check]) -> str:
    stats = analysis.stats
    info = machine_info()
    args = soak.args
    broken = [c for c in checks if c.verdict == "FAIL"]
    run_date = datetime.datetime.fromtimestamp(soak.t_start, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    out = [
        f"## Soak: {args.duration:g} s, seed {args.seed}, {args.services} services",
        "",
        f"**{'PASS' if not broken else 'FAIL'}**: {len(checks) - len(broken)} of"
        f" {len(checks)} invariants hold"
        + (f"; broken: {', '.join(c.name for c in broken)}" if broken else "")
        + ".",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, {info['os']};"
        f" tinit under {info['python (tinit)']}, services under {info['python (helpers)']},"
        f" trio {info['trio']}; {soak.tinit_tree}; run {run_date}."
        f" Cgroups: {'pure cgroup v2 guest' if soak.cgv2 else 'host (v1/v2 hybrid: unified mount without controllers)'}.",  # noqa: E501
        "",
        markdown_table(
            ["invariant", "verdict", "what was seen"],
            [[c.name, c.verdict, c.skipped or c.summary] for c in checks],
        ),
        "",
    ]
    cpu = stats.get("cpu", {})
    rss = stats.get("rss", {})
    fds = stats.get("fds", {})
    actions = ", ".join(f"{k} {v}" for k, v in sorted(soak.actions.items()))
    out += [
        "| figure | value |",
        "|---|---|",
        f"| service starts (restarts by policy) | {sum(len(r) for r in analysis.runs.values())}"
        f" ({stats.get('restarts', 0)}) |",
        f"| exits by kind | {stats.get('exits')} |",
        f"| orphans forked / orphan_reaped events | {stats.get('orphans_forked')} /"
        f" {stats.get('orphans_reaped')} |",
        f"| checksummed lines (long ones), bytes | {stats.get('lines')}"
        f" ({stats.get('long_lines')}), {stats.get('output_bytes', 0) / 1e6:.1f} MB |",
        f"| forwarded signals sent | {stats.get('signals_sent')} |",
        f"| chaos actions | {actions} |",
        f"| tinit VmRSS after warm-up / end / peak | {rss.get('warm', 0) / 1024:.1f} /"
        f" {rss.get('end', 0) / 1024:.1f} / {rss.get('peak', 0) / 1024:.1f} MiB |",
        f"| of which `tinit logs` rings, after warm-up / end / peak |"
        f" {rss.get('log_warm', 0) / 1024:.1f} / {rss.get('log_end', 0) / 1024:.1f} /"
        f" {rss.get('log_peak', 0) / 1024:.1f} MiB |",
        f"| tinit fds (floor after warm-up / at the end, max) | {fds.get('floor_warm')} /"
        f" {fds.get('floor_end')}, {fds.get('max')} |",
    ]
    if cpu:
        out += [
            f"| tinit CPU time | {cpu['total_s']:.1f} s over {cpu['seconds']:.0f} s"
            f" ({100 * cpu['total_s'] / cpu['seconds']:.1f}% of one CPU) |",
            f"| tinit CPU per service start (all of tinit's CPU / starts) |"
            f" {cpu['per_start_ms']:.2f} ms |",
            f"| least-squares split, per second: per start / per reaped orphan / base |"
            f" {fmt_ms(cpu['fit_per_start_ms'])} / {fmt_ms(cpu['fit_per_orphan_ms'])} /"
            f" {fmt_ms(cpu['fit_idle_ms_per_s'])} per s |",
        ]
    out.append(
        f"| shutdown (SIGTERM to exit) | {soak.shutdown_seconds:.2f} s, exit {soak.exit_code} |"
    )
    out.append("")
    rows = analysis.timeline()
    if rows:
        headers = ["s", "service starts", "VmRSS MiB", "logs MiB", "fds", "fd floor", "CPU s"]
        out += ["tinit over the run:", "", markdown_table(headers, rows), ""]
    for c in checks:
        if c.problems:
            out.append(f"### {c.name}: {len(c.problems)} problem(s)")
            out.append("")
            out += [f"- {p}" for p in c.problems[:25]]
            if len(c.problems) > 25:
                out.append(f"- ... and {len(c.problems) - 25} more")
            out.append("")
    return "\n".join(out)


def tree(args: argparse.Namespace) -> str:
    """Which tinit ran: the repository's, or ``--tinit-src`` (a digest of its tinit/*.py)."""
    if not args.tinit_src:
        return tinit_tree()
    import hashlib

    digest = hashlib.sha256()
    root = Path(args.tinit_src).resolve()
    for path in sorted((root / "tinit").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return f"tinit from {root} (tinit/*.py sha256 {digest.hexdigest()[:12]})"


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of chaos")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--report", type=Path, help="also write the markdown report here")
    parser.add_argument("--json", type=Path, help="write the figures and problems as JSON")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before RSS/fd baseline")
    parser.add_argument("--dir", default="/tmp", help="where to make the work directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--tinit-src", metavar="DIR", help="run the tinit package in DIR (a patched tree)"
    )
    parser.add_argument(
        "--analyse", type=Path, metavar="WORKDIR", help="only analyse a run kept with --keep"
    )
    args = parser.parse_args(argv)
    if args.analyse:
        soak = Soak.load(args.analyse, args)
    else:
        if os.geteuid() != 0:
            log("needs root (unshare --pid)")
            return 2
        if args.services < 5:
            log("needs at least 5 services")
            return 2
        soak = Soak(args)
        log(f"{args.services} services, seed {args.seed}, {args.duration:g}s; in {soak.workdir}")
        try:
            soak.run()
        except Exception:
            args.keep = True
            log(f"the soak itself failed; work dir kept: {soak.workdir}")
            raise
        finally:
            soak.cleanup()
    log("analysing")
    analysis = Analysis(soak)
    checks = analysis.analyse()
    text = report(soak, analysis, checks)
    if not args.analyse:
        if args.keep:
            log(f"work dir kept: {soak.workdir}")
        else:
            shutil.rmtree(soak.workdir, ignore_errors=True)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    if args.json:
        data = {
            "stats": analysis.stats,
            "checks": [
                {"name": c.name, "verdict": c.verdict, "summary": c.summary, "problems": c.problems}
                for c in checks
            ],
        }
        args.json.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return 1 if any(c.verdict == "FAIL" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
