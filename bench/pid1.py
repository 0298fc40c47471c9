"""PID 1 benchmark: tinit's one-command mode against tini and dumb-init.

Run it as root from the repository (after ``bash .ci/setup``)::

    .venv/bin/python bench/pid1.py            # the full run, 1-2 minutes on 2 CPUs
    .venv/bin/python bench/pid1.py --quick    # a smoke run with small counts
    .venv/bin/python bench/pid1.py --json results.json

Every init runs as PID 1 of a fresh PID namespace,
``unshare --pid --fork --mount-proc --kill-child INIT... -- CMD...``, with
tinit as ``tinit run --``, tini as ``tini -g --`` and dumb-init as
``dumb-init --``. Within each measurement the inits take turns (round-robin),
so machine noise falls on all of them alike. Measured:

- startup: from just before ``Popen`` to the first byte ``/bin/echo``
  writes to a pipe (so: after its exec); also with no init at all, the floor;
- idle RSS (VmRSS, RssAnon, PSS) of the init one second after start;
- idle cost: CPU ticks and context switches of the init over 5 s;
- zombie drain: 5,000 zombies handed to PID 1 at once, until none is left;
- SIGUSR1 forwarding latency, one signal at a time, 200 samples;
- SIGTERM to exit: until the whole namespace is gone; and how long after
  launch the init first catches or blocks SIGTERM (before that, the kernel
  drops a SIGTERM sent to a namespace's PID 1);
- context: the Python floor under tinit (interpreter and trio start-up,
  exit and memory; minimal trio and plain-Python forwarders as PID 1).

The table goes to stdout, progress to stderr, raw numbers to ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import (
    CLK_TCK,
    ROOT,
    SYSTEM_PYTHON,
    TINIT,
    VENV_PYTHON,
    BenchError,
    Launched,
    comm,
    cpu_ns,
    cpu_pressure_total_us,
    cpu_ticks,
    ensure_debian_packages,
    fmt,
    log,
    machine_info,
    markdown_table,
    median,
    percentile,
    proc_status,
    pss_kib,
    snapshot_tinit,
    status_kib,
    takes_signal,
    threads,
)

INITS: dict[str, list[str]] = {
    "tinit": [str(TINIT), "run", "--"],
    "tini": ["tini", "-g", "--"],
    "dumb-init": ["dumb-init", "--"],
}
#: The floor: the command itself is PID 1 of the namespace.
NO_INIT = "no init"
WITH_FLOOR: dict[str, list[str]] = {**INITS, NO_INIT: []}
COLUMNS = [*INITS, NO_INIT]

# The command for the zombie drain, run by the system Python with -S (quick
# to start). It forks a maker, which forks COUNT children that exit at once
# and waits until all of them are zombies; the maker then sends their pids,
# takes the time and exits, so all COUNT zombies pass to PID 1 in one go.
# This script (PID 1's child, not a subreaper) reaps the maker and polls the
# pids with kill(pid, 0), in the order they were created (the order PID 1's
# waitpid(-1) finds them), until every one is gone; it prints the time from
# the maker's exit. kill(pid, 0) fails with ESRCH once a zombie is reaped,
# and pids are not reused this soon (they are handed out cyclically).
ZOMBIE_SCRIPT = r"""
import os, sys, time
count = int(sys.argv[1])
r, w = os.pipe()
maker = os.fork()
if maker == 0:
    os.close(r)
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pids.append(pid)
    pending = pids
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        left = []
        for pid in pending:
            try:
                with open("/proc/%d/stat" % pid, "rb") as f:
                    stat = f.read()
                end = stat.rindex(b")")
                zombie = stat[end + 2 : end + 3] == b"Z"
            except OSError:
                zombie = False
            if not zombie:
                left.append(pid)
        pending = left
        if pending:
            time.sleep(0.001)
    os.write(w, b" ".join(b"%d" % p for p in pids) + b"\n")
    os.write(w, b"%d %d\n" % (time.monotonic_ns(), len(pending)))
    os._exit(0)
os.close(w)
data = b""
while data.count(b"\n") < 2:
    chunk = os.read(r, 65536)
    if not chunk:
        break
    data += chunk
os.waitpid(maker, 0)
t_handoff = time.monotonic_ns()
pid_line, time_line = data.splitlines()[:2]
pids = [int(p) for p in pid_line.split()]
t0, not_zombie = (int(x) for x in time_line.split())
polls = 0
i = 0
deadline = time.monotonic() + 60
while i < len(pids) and time.monotonic() < deadline:
    try:
        os.kill(pids[i], 0)
    except ProcessLookupError:
        i += 1
        continue
    polls += 1
    time.sleep(0.0002)
t1 = time.monotonic_ns()
left = 0
for pid in pids:
    try:
        os.kill(pid, 0)
        left += 1
    except ProcessLookupError:
        pass
print(t1 - t0, t_handoff - t0, polls, left, not_zombie, flush=True)
"""

# The command for forwarding latency: on each SIGUSR1, write the time.
FORWARD_SCRIPT = r"""
import os, signal, time
def on_usr1(signum, frame):
    os.write(1, b"%d\n" % time.monotonic_ns())
signal.signal(signal.SIGUSR1, on_usr1)
os.write(1, b"ready\n")
while True:
    signal.pause()
"""

# For the context section: how long the interpreter takes to exit after its
# last statement, without and with trio loaded (and one trio.run done).
TEARDOWN = {
    "python": "import os, time\nos.write(1, b'%d\\n' % time.monotonic_ns())",
    "python + trio.run()": (
        "import os, time, trio\n"
        "async def main():\n    pass\n"
        "trio.run(main)\n"
        "os.write(1, b'%d\\n' % time.monotonic_ns())"
    ),
}

# Two minimal forwarders for the context section, run by tinit's interpreter
# as PID 1 like the inits: the command after the code is forked into its own
# process group, and SIGUSR1 is passed to that group. One does it from a
# plain Python signal handler, the other from a trio signal receiver the way
# tinit does: the difference to tinit is what tinit's own code adds.
PYTHON_FORWARDER = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.execvp(sys.argv[1], sys.argv[1:])
signal.signal(signal.SIGUSR1, lambda signum, frame: os.killpg(pid, signum))
while os.waitpid(pid, 0)[0] != pid:
    pass
"""
TRIO_FORWARDER = """
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGCHLD})
pid = os.fork()
if pid == 0:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    os.setpgid(0, 0)
    os.execvp(sys.argv[1], sys.argv[1:])
import trio
async def main():
    with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGCHLD) as received:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        async for signum in received:
            if signum == signal.SIGUSR1:
                os.killpg(pid, signum)
            elif os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
trio.run(main)
"""
FORWARD_FLOORS: dict[str, list[str]] = {
    "python signal handler": [str(VENV_PYTHON), "-c", PYTHON_FORWARDER],
    "trio signal receiver": [str(VENV_PYTHON), "-c", TRIO_FORWARDER],
}

MIB = 1024.0


@dataclass(frozen=True)
class Counts:
    startup: int
    zombies: int
    zombie_runs: int
    forward: int
    forward_warmup: int
    sigterm: int
    idle_window: float
    context: int


FULL = Counts(
    startup=30,
    zombies=5000,
    zombie_runs=5,
    forward=200,
    forward_warmup=10,
    sigterm=10,
    idle_window=5.0,
    context=10,
)
QUICK = Counts(
    startup=5,
    zombies=5000,
    zombie_runs=1,
    forward=30,
    forward_warmup=3,
    sigterm=3,
    idle_window=2.0,
    context=3,
)


def ms(ns: int) -> float:
    return ns / 1e6


# --- measurements ------------------------------------------------------------------


def measure_startup(n: int) -> dict[str, dict[str, list[float]]]:
    """Launch to the child's first output byte, and launch to the end, in ms."""
    first: dict[str, list[float]] = {name: [] for name in WITH_FLOOR}
    done: dict[str, list[float]] = {name: [] for name in WITH_FLOOR}
    for i in range(n):
        log(f"startup {i + 1}/{n}")
        for name, prefix in WITH_FLOOR.items():
            with Launched([*prefix, "/bin/echo", "x"]) as run:
                data, t_first = run.read_some(timeout=30)
                if not data.startswith(b"x"):
                    raise BenchError(f"{name}: unexpected output {data!r}{run.stderr_tail()}")
                t_exit, code = run.wait_exit(timeout=30)
                if code != 0:
                    raise BenchError(f"{name}: exit code {code}{run.stderr_tail()}")
            first[name].append(ms(t_first - run.t_launch))
            done[name].append(ms(t_exit - run.t_launch))
    return {"to_exec_ms": first, "to_exit_ms": done}


def measure_idle(window: float) -> dict[str, dict[str, Any]]:
    """Memory one second after start, then CPU and wake-ups over ``window`` seconds.

    All three inits run at once (each with ``sleep`` as its command), so they
    share one window.
    """
    log(f"idle: RSS after 1 s, then CPU and wake-ups over {window:g} s")
    runs: dict[str, Launched] = {}
    out: dict[str, dict[str, Any]] = {}
    try:
        for name, prefix in INITS.items():
            runs[name] = Launched([*prefix, "sleep", str(int(window) + 30)])
        pids = {name: run.init_pid() for name, run in runs.items()}
        time.sleep(1.0)
        for pid in pids.values():
            wait_settled(pid, signal.SIGTERM, settle=0)
        before: dict[str, tuple[int, int, int]] = {}
        for name, pid in pids.items():
            status = proc_status(pid)
            out[name] = {
                "VmRSS_kib": status_kib(status, "VmRSS"),
                "RssAnon_kib": status_kib(status, "RssAnon"),
                "RssFile_kib": status_kib(status, "RssFile"),
                "Pss_kib": pss_kib(pid),
                "VmHWM_kib": status_kib(status, "VmHWM"),
            }
            before[name] = _idle_counters(pid)
        t0 = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        for name, pid in pids.items():
            after = _idle_counters(pid)
            ticks, vol, nonvol = (a - b for a, b in zip(after, before[name], strict=True))
            out[name].update(
                window_s=round(elapsed, 3),
                cpu_ticks=ticks,
                clk_tck=CLK_TCK,
                voluntary_switches=vol,
                nonvoluntary_switches=nonvol,
                threads=len(threads(pid)),
            )
            if runs[name].proc.poll() is not None:
                raise BenchError(f"{name} exited during the idle window")
    finally:
        for run in runs.values():
            run.close()
    return out


def _idle_counters(pid: int) -> tuple[int, int, int]:
    status = proc_status(pid)
    return (
        cpu_ticks(pid),
        int(status["voluntary_ctxt_switches"]),
        int(status["nonvoluntary_ctxt_switches"]),
    )


def measure_zombies(count: int, runs: int) -> dict[str, list[dict[str, int]]]:
    """Time for PID 1 to reap ``count`` zombies handed to it at once."""
    out: dict[str, list[dict[str, int]]] = {name: [] for name in INITS}
    for i in range(runs):
        log(f"zombie drain {i + 1}/{runs} ({count} zombies)")
        for name, prefix in INITS.items():
            argv = [*prefix, SYSTEM_PYTHON, "-S", "-c", ZOMBIE_SCRIPT, str(count)]
            with Launched(argv) as run:
                line = run.read_line(timeout=120)
                _, code = run.wait_exit(timeout=60)
                if code != 0:
                    raise BenchError(f"{name}: zombie script exit code {code}{run.stderr_tail()}")
            drain_ns, handoff_ns, polls, left, not_zombie = (int(x) for x in line.split())
            if left or not_zombie:
                raise BenchError(f"{name}: {left} zombies left, {not_zombie} never became zombies")
            out[name].append({"drain_ns": drain_ns, "handoff_ns": handoff_ns, "polls": polls})
    return out


def measure_forwarding(n: int, warmup: int) -> dict[str, dict[str, Any]]:
    """SIGUSR1 to PID 1 until the command's handler runs, one signal at a time, in µs."""
    log(f"forwarding: {warmup} warm-up + {n} SIGUSR1 per init, taking turns")
    # The forwarder floors take part in the same rounds; they are reported
    # in the context section.
    everyone = {**WITH_FLOOR, **FORWARD_FLOORS}
    runs: dict[str, Launched] = {}
    samples: dict[str, list[float]] = {name: [] for name in everyone}
    lost = dict.fromkeys(everyone, 0)
    try:
        for name, prefix in everyone.items():
            runs[name] = Launched([*prefix, SYSTEM_PYTHON, "-S", "-c", FORWARD_SCRIPT])
        pids = {name: run.init_pid() for name, run in runs.items()}
        for name, run in runs.items():
            if run.read_line(timeout=30) != b"ready":
                raise BenchError(f"{name}: forwarding helper did not start{run.stderr_tail()}")
        for pid in pids.values():
            wait_settled(pid, signal.SIGUSR1)  # tinit imports trio after the fork
        cpu_before: dict[str, int | None] = {}
        switches_before: dict[str, int] = {}
        for i in range(warmup + n):
            if i == warmup:
                cpu_before = {name: cpu_ns(pid) for name, pid in pids.items()}
                switches_before = {name: _voluntary(pid) for name, pid in pids.items()}
            for name, run in runs.items():
                latency = _one_signal(run, pids[name])
                if latency is None:
                    lost[name] += 1
                elif i >= warmup:
                    samples[name].append(latency / 1000)
                time.sleep(0.005)
        # What PID 1 itself spent per signal: CPU time and times it went to sleep.
        cpu_per_signal: dict[str, float | None] = {}
        sleeps_per_signal: dict[str, float] = {}
        for name, pid in pids.items():
            first, last = cpu_before.get(name), cpu_ns(pid)
            spent = None if first is None or last is None else (last - first) / n / 1000
            cpu_per_signal[name] = spent
            sleeps_per_signal[name] = (_voluntary(pid) - switches_before[name]) / n
    finally:
        for run in runs.values():
            run.close()
    return {
        name: {
            "samples_us": samples[name],
            "lost": lost[name],
            "init_cpu_us_per_signal": cpu_per_signal[name],
            "init_sleeps_per_signal": sleeps_per_signal[name],
        }
        for name in runs
    }


def _voluntary(pid: int) -> int:
    return int(proc_status(pid)["voluntary_ctxt_switches"])


def _one_signal(run: Launched, pid: int) -> int | None:
    """Send one SIGUSR1; the latency in ns, or None if nothing came within 2 s."""
    sent = time.monotonic_ns()
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 2.0
    while (left := deadline - time.monotonic()) > 0:
        try:
            received = int(run.read_line(timeout=left))
        except BenchError:
            return None
        if received >= sent:  # an earlier signal that was late would come before ``sent``
            return received - sent
    return None


def measure_sigterm(n: int) -> dict[str, dict[str, list[float] | list[int]]]:
    """SIGTERM to PID 1 (command: ``sleep``) until unshare has exited, in ms.

    Also: how long after launch the init first takes SIGTERM (catches or
    blocks it). Before that, the kernel drops a SIGTERM sent to a namespace's
    PID 1, which then never learns it was asked to stop.
    """
    times: dict[str, list[float]] = {name: [] for name in INITS}
    codes: dict[str, list[int]] = {name: [] for name in INITS}
    safe: dict[str, list[float]] = {name: [] for name in INITS}
    for i in range(n):
        log(f"SIGTERM to exit {i + 1}/{n}")
        for name, prefix in INITS.items():
            with Launched([*prefix, "sleep", "1000"]) as run:
                pid = run.init_pid()
                t_safe = wait_settled(pid, signal.SIGTERM)
                safe[name].append(ms(t_safe - run.t_launch))
                sent = time.monotonic_ns()
                os.kill(pid, signal.SIGTERM)
                t_exit, code = run.wait_exit(timeout=30)
            times[name].append(ms(t_exit - sent))
            codes[name].append(code)
    return {
        name: {"ms": times[name], "exit_codes": codes[name], "sigterm_safe_ms": safe[name]}
        for name in INITS
    }


def wait_settled(pid: int, signum: int, *, settle: float = 0.5, timeout: float = 30.0) -> int:
    """Wait until PID 1 takes ``signum`` and then sits idle; return when it first took it.

    "Takes" is checked every 0.5 ms from the host (the time is that precise)
    and only once the process is no longer unshare, which blocks signals
    itself before it execs the init. "Idle" means at least ``settle`` seconds
    later, and no CPU time used over 50 ms (tinit imports trio after it has
    started the command).
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if comm(pid) != "unshare" and takes_signal(pid, signum):
                break
        if time.monotonic() > deadline:
            raise BenchError(f"pid {pid} did not take signal {signum} within {timeout}s")
        time.sleep(0.0005)
    taken = time.monotonic_ns()
    time.sleep(settle)
    while time.monotonic() < deadline:
        before = cpu_ns(pid)
        time.sleep(0.05)
        if before is None or cpu_ns(pid) == before:
            return taken
    raise BenchError(f"pid {pid} was still busy {timeout}s after start")


def measure_context(n: int) -> dict[str, Any]:
    """The Python floor under tinit: interpreter and trio start-up, and their RSS."""
    log("context: the Python + trio floor")
    python = str(VENV_PYTHON)
    programs = {
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import trio'": [python, "-c", "import trio"],
        "tinit version": [str(TINIT), "version"],
    }
    times: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(n):
        for name, argv in programs.items():
            with Launched(argv, namespace=False, capture=False) as run:
                t_exit, code = run.wait_exit(timeout=30)
                if code != 0:
                    raise BenchError(f"{name}: exit code {code}{run.stderr_tail()}")
            times[name].append(ms(t_exit - run.t_launch))
    import_us: list[int] = []
    for _ in range(n):
        with Launched([python, "-X", "importtime", "-c", "import trio"], namespace=False) as run:
            run.wait_exit(timeout=30)
            import_us.append(_trio_import_us(run))
    rss: dict[str, dict[str, int | None]] = {}
    sleepers = {
        "python, idle": "import time; time.sleep(30)",
        "python + import trio, idle": "import trio, time; time.sleep(30)",
    }
    for name, snippet in sleepers.items():
        with Launched([python, "-c", snippet], namespace=False, capture=False) as run:
            pid = run.init_pid()
            time.sleep(1.0)
            status = proc_status(pid)
            rss[name] = {
                "VmRSS_kib": status_kib(status, "VmRSS"),
                "RssAnon_kib": status_kib(status, "RssAnon"),
                "Pss_kib": pss_kib(pid),
            }
    teardown: dict[str, list[float]] = {name: [] for name in TEARDOWN}
    for _ in range(n):
        for name, snippet in TEARDOWN.items():
            with Launched([python, "-c", snippet], namespace=False) as run:
                last = int(run.read_line(timeout=30))
                t_exit, code = run.wait_exit(timeout=30)
                if code != 0:
                    raise BenchError(f"{name}: exit code {code}{run.stderr_tail()}")
            teardown[name].append(ms(t_exit - last))
    return {
        "launch_to_exit_ms": times,
        "trio_import_us": import_us,
        "rss": rss,
        "teardown_ms": teardown,
    }


def _trio_import_us(run: Launched) -> int:
    """Cumulative µs of the top-level ``import trio`` from ``-X importtime`` output."""
    text = run.stderr_text()
    for line in reversed(text.splitlines()):
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == "trio":
            return int(parts[1])
    raise BenchError("no 'trio' line in -X importtime output")


# --- report --------------------------------------------------------------------------


@dataclass
class Target:
    label: str
    met: bool
    detail: str
    short: str


def summarize(results: dict[str, Any]) -> tuple[list[list[str]], list[Target]]:
    """The table rows and the target verdicts, from the raw results."""
    rows: list[list[str]] = []
    targets: list[Target] = []

    def row(label: str, values: dict[str, str], target: str = "", met: str = "") -> None:
        rows.append([label, *(values.get(c, "–") for c in COLUMNS), target, met])

    start = results["startup"]["to_exec_ms"]
    start_med = {k: median(v) for k, v in start.items()}
    floor = start_med[NO_INIT]
    t = start_med["tinit"]
    targets.append(_at_most("startup to child exec", t, 120.0, "ms"))
    row(
        "startup to child exec, median (ms)",
        {k: fmt(v) for k, v in start_med.items()},
        "≤ 120",
        targets[-1].short,
    )
    row("startup to child exec, p90 (ms)", {k: fmt(percentile(v, 90)) for k, v in start.items()})
    row(
        "startup minus no-init floor, median (ms)",
        {k: fmt(v - floor) for k, v in start_med.items()},
    )
    row(
        "launch to exit, `/bin/echo x`, median (ms)",
        {k: fmt(median(v)) for k, v in results["startup"]["to_exit_ms"].items()},
    )

    idle = results["idle"]
    rss = idle["tinit"]["VmRSS_kib"] / MIB
    targets.append(_at_most("RSS while idle", rss, 25.0, "MiB"))
    row(
        "RSS while idle, VmRSS (MiB)",
        {k: fmt(v["VmRSS_kib"] / MIB) for k, v in idle.items()},
        "≤ 25",
        targets[-1].short,
    )
    row("  of which RssAnon (MiB)", {k: fmt(v["RssAnon_kib"] / MIB) for k, v in idle.items()})
    row(
        "  PSS (MiB)",
        {k: fmt(None if v["Pss_kib"] is None else v["Pss_kib"] / MIB) for k, v in idle.items()},
    )

    drains = {k: median([r["drain_ns"] for r in v]) / 1e6 for k, v in results["zombies"].items()}
    ratio = drains["tinit"] / drains["tini"]
    targets.append(_at_most("5,000-zombie drain vs tini", ratio, 3.0, "× tini"))
    count = results["counts"]["zombies"]
    row(
        f"{count:,}-zombie drain, median (ms)",
        {k: fmt(v) for k, v in drains.items()},
        "≤ 3× tini",
        targets[-1].short,
    )
    handoff = {k: median([r["handoff_ns"] for r in v]) / 1e6 for k, v in results["zombies"].items()}
    row(
        "  of which the hand-over (maker's exit), median (ms)",
        {k: fmt(v) for k, v in handoff.items()},
    )
    row("  relative to tini", {k: f"{v / drains['tini']:.2f}×" for k, v in drains.items()})

    fwd = {k: v["samples_us"] for k, v in results["forwarding"].items()}
    fwd_med = median(fwd["tinit"])
    fwd_p99 = percentile(fwd["tinit"], 99)
    targets.append(_at_most("forwarding latency, median", fwd_med, 300.0, "µs"))
    row(
        "SIGUSR1 forwarding, median (µs)",
        {k: fmt(median(v), 0) for k, v in fwd.items()},
        "≤ 300",
        targets[-1].short,
    )
    targets.append(_at_most("forwarding latency, p99", fwd_p99, 2000.0, "µs"))
    row(
        "SIGUSR1 forwarding, p99 (µs)",
        {k: fmt(percentile(v, 99), 0) for k, v in fwd.items()},
        "≤ 2000",
        targets[-1].short,
    )
    row("SIGUSR1 forwarding, max (µs)", {k: fmt(max(v), 0) for k, v in fwd.items()})
    lost = {k: str(v["lost"]) for k, v in results["forwarding"].items()}
    if any(v != "0" for v in lost.values()):
        row("SIGUSR1 lost (no delivery within 2 s)", lost)

    term = results["sigterm"]
    row(
        "launch to SIGTERM-safe (caught or blocked), median (ms)",
        {k: fmt(median(v["sigterm_safe_ms"])) for k, v in term.items()},
    )
    row("SIGTERM to exit, median (ms)", {k: fmt(median(v["ms"])) for k, v in term.items()})
    row(
        "  exit code(s)",
        {k: "/".join(str(c) for c in sorted(set(v["exit_codes"]))) for k, v in term.items()},
        "143",
        "yes" if set(term["tinit"]["exit_codes"]) == {143} else "no",
    )

    window = results["counts"]["idle_window"]
    ticks = idle["tinit"]["cpu_ticks"]
    wakes = idle["tinit"]["voluntary_switches"]
    targets.append(_exactly_zero(f"idle CPU ticks in {window:g} s", ticks))
    row(
        f"idle CPU ticks in {window:g} s (1 tick = {1000 // CLK_TCK} ms)",
        {k: str(v["cpu_ticks"]) for k, v in idle.items()},
        "0",
        targets[-1].short,
    )
    targets.append(_exactly_zero(f"idle wake-ups in {window:g} s", wakes))
    row(
        f"idle voluntary wake-ups in {window:g} s",
        {k: str(v["voluntary_switches"]) for k, v in idle.items()},
        "0",
        targets[-1].short,
    )
    row(
        f"idle involuntary switches in {window:g} s",
        {k: str(v["nonvoluntary_switches"]) for k, v in idle.items()},
    )
    row("threads", {k: str(v["threads"]) for k, v in idle.items()})
    return rows, targets


def _at_most(label: str, value: float, limit: float, unit: str) -> Target:
    """A 'value ≤ limit' target, with the margin both absolute and relative."""
    margin = abs(limit - value)
    where = f"{_num(value)} {unit} vs ≤ {_num(limit)} {unit}, {value / limit:.2f}× the limit"
    ratio = f"{value / limit:.2f}×"
    if value <= limit:
        detail = f"yes, {_num(margin)} {unit} under ({where})"
        return Target(label, True, detail, f"yes ({ratio})")
    detail = f"**no**, {_num(margin)} {unit} over ({where})"
    return Target(label, False, detail, f"**no** ({ratio})")


def _num(x: float) -> str:
    """3 significant digits without exponents: 1473, 52.8, 1.21, 0.352."""
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _exactly_zero(label: str, value: int) -> Target:
    verdict = "yes" if value == 0 else f"**no** ({value})"
    return Target(label, value == 0, verdict, verdict)


def context_table(context: dict[str, Any], forwarding: dict[str, Any]) -> str:
    rows = [
        [name, fmt(median(v)), fmt(percentile(v, 90))]
        for name, v in context["launch_to_exit_ms"].items()
    ]
    rows.append(
        [
            "`import trio` alone (-X importtime, cumulative)",
            fmt(median(context["trio_import_us"]) / 1000),
            fmt(percentile(context["trio_import_us"], 90) / 1000),
        ]
    )
    rows += [
        [f"exit after the last statement: {name}", fmt(median(v)), fmt(percentile(v, 90))]
        for name, v in context["teardown_ms"].items()
    ]
    table = markdown_table(["time", "median (ms)", "p90 (ms)"], rows)
    rss_rows = [
        [
            name,
            fmt(v["VmRSS_kib"] / MIB),
            fmt(v["RssAnon_kib"] / MIB),
            fmt(None if v["Pss_kib"] is None else v["Pss_kib"] / MIB),
        ]
        for name, v in context["rss"].items()
    ]
    rss_table = markdown_table(
        ["idle process", "VmRSS (MiB)", "RssAnon (MiB)", "PSS (MiB)"], rss_rows
    )
    fwd_rows = [
        [
            name,
            fmt(median(forwarding[name]["samples_us"]), 0),
            fmt(percentile(forwarding[name]["samples_us"], 99), 0),
            fmt(forwarding[name]["init_cpu_us_per_signal"], 0),
        ]
        for name in ("tinit", "tini", *FORWARD_FLOORS, NO_INIT)
    ]
    fwd_headers = ["SIGUSR1 forwarded by", "median (µs)", "p99 (µs)", "PID 1 CPU per signal (µs)"]
    fwd_table = markdown_table(fwd_headers, fwd_rows)
    return f"{table}\n\n{rss_table}\n\n{fwd_table}"


def _bytecode_cache() -> str:
    """Whether tinit's own modules load from .pyc files (it changes start-up a little)."""
    if os.environ.get("PYTHONPYCACHEPREFIX"):
        return f"PYTHONPYCACHEPREFIX={os.environ['PYTHONPYCACHEPREFIX']}"
    present = (ROOT / "tinit" / "__pycache__").is_dir()
    dont = os.environ.get("PYTHONDONTWRITEBYTECODE")
    note = f"{'present' if present else 'absent'} in tinit/__pycache__"
    return f"{note}{', PYTHONDONTWRITEBYTECODE is set' if dont else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--json", metavar="OUT", type=Path, help="write the raw numbers here")
    parser.add_argument(
        "--tinit-ref",
        metavar="REF",
        help="also measure tinit as committed at REF, as one more column of the same run",
    )
    args = parser.parse_args(argv)
    if args.tinit_ref:
        with tempfile.TemporaryDirectory(prefix="tinit-pid1-") as tmp:
            try:
                snapshot = snapshot_tinit(args.tinit_ref, Path(tmp))
            except (BenchError, subprocess.SubprocessError) as exc:
                print(f"bench/pid1.py: --tinit-ref {args.tinit_ref}: {exc}", file=sys.stderr)
                return 2
            log(snapshot.label)
            name = f"tinit {args.tinit_ref}"
            _add_column(name, [*snapshot.command, "run", "--"])
            return _run(args, {name: snapshot.label})
    return _run(args, {})


def _add_column(name: str, prefix: list[str]) -> None:
    """One more init to measure beside the others (``--tinit-ref``)."""
    INITS[name] = prefix
    WITH_FLOOR.clear()
    WITH_FLOOR.update({**INITS, NO_INIT: []})
    COLUMNS[:] = [*INITS, NO_INIT]


def _run(args: argparse.Namespace, snapshots: dict[str, str]) -> int:
    if os.geteuid() != 0:
        print("bench/pid1.py: run as root (it makes PID namespaces)", file=sys.stderr)
        return 2
    if not TINIT.exists():
        print(f"bench/pid1.py: {TINIT} is missing: run 'bash .ci/setup'", file=sys.stderr)
        return 2
    ensure_debian_packages({"tini": "tini", "dumb-init": "dumb-init", "unshare": "util-linux"})
    counts = QUICK if args.quick else FULL
    machine = machine_info()
    machine["tinit bytecode cache"] = _bytecode_cache()
    machine |= snapshots
    results: dict[str, Any] = {"counts": asdict(counts), "quick": args.quick}
    pressure_start, t_start = cpu_pressure_total_us(), time.monotonic()
    results["startup"] = measure_startup(counts.startup)
    results["idle"] = measure_idle(counts.idle_window)
    results["zombies"] = measure_zombies(counts.zombies, counts.zombie_runs)
    results["forwarding"] = measure_forwarding(counts.forward, counts.forward_warmup)
    results["sigterm"] = measure_sigterm(counts.sigterm)
    results["context"] = measure_context(counts.context)
    pressure_end, elapsed = cpu_pressure_total_us(), time.monotonic() - t_start
    results["elapsed_s"] = round(elapsed, 1)
    if pressure_start is not None and pressure_end is not None:
        share = (pressure_end - pressure_start) / 1e6 / elapsed
        results["cpu_pressure_some"] = round(share, 3)
        machine["CPU pressure during the run"] = (
            f"{share:.0%} (share of time some task waited for a CPU, /proc/pressure/cpu; "
            "the benchmark's own processes count too)"
        )
    rows, targets = summarize(results)

    print("## PID 1: tinit vs tini and dumb-init\n")
    print("\n".join(f"- {k}: {v}" for k, v in machine.items()))
    print(f"- counts: {'quick' if args.quick else 'full'} run, {asdict(counts)}\n")
    headers = ["measurement", *COLUMNS, "target (tinit)", "met? (tinit ÷ target)"]
    print(markdown_table(headers, rows))
    met = sum(t.met for t in targets)
    print(f"\nTargets met by tinit: {met} of {len(targets)}")
    for t in targets:
        print(f"- {t.label}: {t.detail}")
    print("\n### Context: the Python floor under tinit\n")
    print(context_table(results["context"], results["forwarding"]))
    if args.json is not None:
        document = {
            "machine": machine,
            "results": results,
            "table": {"headers": headers, "rows": rows},
            "targets": [asdict(t) for t in targets],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        log(f"raw numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
