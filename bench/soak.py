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
and the journals against each other (bench/soak_checks/). The report
(markdown) goes to stdout and ``--report``; the exit status is 1 when any
invariant broke, 2 when the soak itself could not run. Everything it starts
dies with the namespace; ``--keep`` keeps the work directory (config,
journals, tinit's stdout and stderr, ``soak.json``) for ``--analyse``, and
``--tinit-src DIR`` runs the tinit package in DIR (a patched tree).
docs/reliability.md describes the invariants and what the soak found.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from _common import (
    ROOT,
    TINIT,
    UNSHARE,
    machine_info,
    markdown_table,
    tinit_tree,
)
from soak_checks import RACE_LEAD, SHUTDOWN_TIMEOUT, STUBBORN_STOP, Analysis, Check, Sample
from soak_checks.streams import verify_line

SERVICE: Final = ROOT / "bench" / "soak_service.py"
PYTHON: Final = "/usr/bin/python3"
ZOMBIE_AGE: Final = 1.0
CGROUP_FS: Final = "/sys/fs/cgroup/"
FORWARD: Final = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
WORDS: Final = ("web", "worker", "cron", "queue", "cache", "api", "mailer", "log-shipper")
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
    """One request on the control socket: (reply, "") or (None, what went wrong).

    A ``logs`` stream (the names, runs of lines, the end) comes back as one
    reply whose result is ``{"services": [...], "lines": [run, ...]}``.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps({"v": 1, **request}).encode() + b"\n")
            messages = _messages(s)
            reply = next(messages)
            result = reply.get("result") if isinstance(reply, dict) else None
            if reply.get("ok") and isinstance(result, dict) and set(result) == {"services"}:
                runs: list[Any] = []
                while (part := next(messages)["result"]) != {"end": True}:
                    runs.extend(part["lines"])
                result["lines"] = runs
    except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if not isinstance(reply, dict):
        return None, f"reply is not an object: {reply!r}"
    return reply, ""


def _messages(s: socket.socket) -> Iterator[Any]:
    """The JSON lines the server sends, until it closes the connection."""
    data = b""
    while True:
        while b"\n" not in data:
            chunk = s.recv(1 << 20)
            if not chunk:
                if data:
                    yield json.loads(data)
                return
            data += chunk
        line, _, data = data.partition(b"\n")
        yield json.loads(line)


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
        texts = [line.encode() for run in req.reply["result"]["lines"] for line in run["lines"]]
        for text in texts:
            if text.startswith(b"@S "):
                verdict = verify_line(text)
                if verdict == "corrupt":
                    req.ok = False
                    req.error = f"tinit logs gave a corrupt line: {text[:120]!r}"


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
