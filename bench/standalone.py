"""The standalone tinit against the same tinit installed from the wheel into a venv.

Run it as root from the repository, after ``bash .ci/build``::

    .venv/bin/python bench/standalone.py            # about a minute on 2 CPUs
    .venv/bin/python bench/standalone.py --quick    # a smoke run with small counts
    .venv/bin/python bench/standalone.py --extra nuitka=/tmp/nuitka/tinit --json out.json

The contenders are ``dist/tinit-linux-ARCH/tinit`` (the standalone) and
``tinit`` from a venv made here, ``build/bench-venv``, by ``pip install`` of
``dist/``'s wheel (remade when the wheel changes; the first time fetches
tinit's dependencies). ``--extra NAME=PATH`` adds any other tinit executable,
such as a build by another freezing tool. Each runs as PID 1 of a fresh PID
namespace (``unshare --pid --fork --mount-proc --kill-child``), the
contenders taking turns within each measurement so that machine noise falls
on all of them alike. Measured:

- size on disk: the standalone's directory; the venv, and beside it the
  Python installation the venv needs (its standard library, libpython and
  interpreter), which an image for the venv must also carry;
- start-up: ``tinit run -- /bin/echo x``, from just before ``Popen`` to the
  first byte echo writes (so: after the child's exec);
- idle: ``tinit run -- sleep``, one second after start: VmRSS, RssAnon, PSS
  and the number of threads (the standalone must have one, as the venv does);
- 200 services: ``tinit run FILE`` with 200 services, each ``/bin/sh``
  writing a line to a FIFO the benchmark reads, then ``exec sleep``: from
  just before ``Popen`` to the 200th line, and the CPU time tinit used until
  then; then tinit's VmRSS, and SIGTERM to the namespace's end. tinit runs
  with ``--no-cgroups``: this compares the packaging, not the host's cgroups.

Each measurement starts with one run of each contender that is not counted,
so that neither pays alone for a cold page cache.

The table goes to stdout, progress to stderr, raw numbers to ``--json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from _common import (
    CLK_TCK,
    ROOT,
    BenchError,
    Launched,
    cpu_pressure_total_us,
    cpu_ticks,
    fmt,
    log,
    machine_info,
    markdown_table,
    median,
    proc_status,
    pss_kib,
    status_kib,
    threads,
)

STANDALONE: Final = ROOT / "dist" / f"tinit-linux-{platform.machine()}"
BENCH_VENV: Final = ROOT / "build" / "bench-venv"
MIB: Final = 1024.0


@dataclass(frozen=True, slots=True)
class Counts:
    startup: int
    services: int
    service_runs: int


FULL: Final = Counts(startup=30, services=200, service_runs=3)
QUICK: Final = Counts(startup=5, services=50, service_runs=1)


def ms(ns: int) -> float:
    return ns / 1e6


# --- the contenders ------------------------------------------------------------


def wheel() -> Path:
    found = sorted((ROOT / "dist").glob("tinit-*-py3-none-any.whl"))
    if not found:
        raise BenchError("no wheel in dist/ (run: bash .ci/build)")
    return found[-1]


def bench_venv() -> Path:
    """build/bench-venv with dist/'s wheel installed (not editable), remade when it changes."""
    built = wheel()
    stamp = BENCH_VENV / f".wheel-{hashlib.sha256(built.read_bytes()).hexdigest()[:16]}"
    if not stamp.exists():
        log(f"bench: installing {built.name} into {BENCH_VENV.relative_to(ROOT)}")
        subprocess.run(["rm", "-rf", str(BENCH_VENV)], check=True, timeout=120)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True, timeout=120)
        pip = [str(BENCH_VENV / "bin/python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--disable-pip-version-check", str(built)], check=True, timeout=900)
        stamp.touch()
    return BENCH_VENV / "bin/tinit"


def contenders(extra: list[str]) -> dict[str, Path]:
    standalone = STANDALONE / "tinit"
    if not standalone.is_file():
        raise BenchError(f"no {standalone.relative_to(ROOT)} (run: bash .ci/build)")
    found = {"standalone": standalone, "venv": bench_venv()}
    for item in extra:
        name, _, path = item.partition("=")
        if not name or not Path(path).is_file():
            raise BenchError(f"--extra {item!r}: expected NAME=PATH to a tinit executable")
        found[name] = Path(path)
    return found


# --- size ------------------------------------------------------------------------


def du_kib(*paths: Path) -> int:
    """Disk usage (allocated blocks), each file counted once, as ``du -sk`` would."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top in paths:
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            info = path.lstat()
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total // 1024


def python_floor(venv: Path) -> list[Path]:
    """What of the base Python installation the venv runs on: stdlib, libpython, interpreter.

    The standard library without its site-packages, its test suite and the
    static library for embedding, which an image's Python need not have.
    """
    code = (
        "import sys, sysconfig; print(sysconfig.get_paths()['stdlib']);"
        "print(sysconfig.get_config_var('LIBDIR') + '/' + sysconfig.get_config_var('LDLIBRARY'));"
        "print(sys._base_executable)"
    )
    done = subprocess.run(
        [str(venv / "bin/python"), "-c", code], capture_output=True, text=True, timeout=30
    )
    stdlib, *rest = [Path(line).resolve() for line in done.stdout.split()]
    skip = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"}
    paths = [
        path
        for path in (stdlib.iterdir() if stdlib.is_dir() else [])
        if path.name not in skip and not path.name.startswith("config-")
    ]
    return [path for path in [*paths, *rest] if path.exists()]


def measure_size(found: dict[str, Path]) -> dict[str, dict[str, int]]:
    sizes: dict[str, dict[str, int]] = {}
    for name, executable in found.items():
        if name == "venv":
            venv = executable.parent.parent
            sizes[name] = {"own_kib": du_kib(venv), "python_kib": du_kib(*python_floor(venv))}
        else:
            sizes[name] = {"own_kib": du_kib(executable.parent), "python_kib": 0}
    return sizes


# --- start-up and idle --------------------------------------------------------------


def children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def measure_startup(found: dict[str, Path], n: int) -> dict[str, dict[str, list[float]]]:
    """Launch to the child's first byte; and the CPU time of the whole run.

    The CPU time (unshare, tinit and echo, all reaped by the time the run
    ends) moves much less than the wall time when other work shares the
    machine.
    """
    to_exec: dict[str, list[float]] = {name: [] for name in found}
    cpu: dict[str, list[float]] = {name: [] for name in found}
    for i in range(-1, n):  # -1: the warm-up, not counted
        log(f"startup {i + 1}/{n}")
        for name, executable in found.items():
            cpu_before = children_cpu_ms()
            with Launched([str(executable), "run", "--", "/bin/echo", "x"]) as run:
                data, t_first = run.read_some(timeout=30)
                if not data.startswith(b"x"):
                    raise BenchError(f"{name}: unexpected output {data!r}{run.stderr_tail()}")
                _, code = run.wait_exit(timeout=30)
                if code != 0:
                    raise BenchError(f"{name}: exit code {code}{run.stderr_tail()}")
            if i >= 0:
                to_exec[name].append(ms(t_first - run.t_launch))
                cpu[name].append(children_cpu_ms() - cpu_before)
    return {"to_exec_ms": to_exec, "cpu_ms": cpu}


def measure_idle(found: dict[str, Path]) -> dict[str, dict[str, Any]]:
    log("idle: memory and threads one second after start")
    out: dict[str, dict[str, Any]] = {}
    runs = {name: Launched([str(exe), "run", "--", "sleep", "60"]) for name, exe in found.items()}
    try:
        pids = {name: run.init_pid() for name, run in runs.items()}
        time.sleep(1.0)
        for name, pid in pids.items():
            status = proc_status(pid)
            out[name] = {
                "VmRSS_kib": status_kib(status, "VmRSS"),
                "RssAnon_kib": status_kib(status, "RssAnon"),
                "Pss_kib": pss_kib(pid),
                "threads": len(threads(pid)),
            }
    finally:
        for run in runs.values():
            run.close()
    return out


# --- 200 services --------------------------------------------------------------------


def services_config(fifo: Path, n: int) -> str:
    lines = ["version: 1", "services:"]
    for i in range(n):
        lines.append(f"  s{i:03d}:")
        lines.append(f'    command: [/bin/sh, -c, "echo R > {fifo}; exec sleep 600"]')
    return "\n".join(lines) + "\n"


def measure_services(found: dict[str, Path], counts: Counts) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {name: [] for name in found}
    with tempfile.TemporaryDirectory(prefix="tinit-bench-") as top:
        fifo = Path(top) / "ready"
        os.mkfifo(fifo)
        config = Path(top) / "services.yaml"
        config.write_text(services_config(fifo, counts.services))
        # Read-write, so that opening it never blocks and no writer ever meets EOF.
        reader = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        try:
            for executable in found.values():
                _one_services_run(executable, config, reader, counts.services)
            for i in range(counts.service_runs):
                log(f"{counts.services} services {i + 1}/{counts.service_runs}")
                for name, executable in found.items():
                    out[name].append(_one_services_run(executable, config, reader, counts.services))
        finally:
            os.close(reader)
    return out


def _one_services_run(executable: Path, config: Path, reader: int, n: int) -> dict[str, float]:
    argv = [str(executable), "run", "--no-cgroups", str(config)]
    with Launched(argv, capture=False) as run:
        pid = run.init_pid()
        seen = _read_ready(reader, n, timeout=120.0, run=run)
        t_all = time.monotonic_ns()
        ticks = cpu_ticks(pid)
        rss = status_kib(proc_status(pid), "VmRSS")
        t_term = time.monotonic_ns()
        os.kill(pid, signal.SIGTERM)
        t_gone, code = run.wait_exit(timeout=60)
        if code != 0:
            raise BenchError(f"{executable}: exit code {code} after SIGTERM{run.stderr_tail()}")
    if seen != n:
        raise BenchError(f"{executable}: {seen} of {n} services ran")
    return {
        "start_ms": ms(t_all - run.t_launch),
        "tinit_cpu_ms": ticks * 1000 / CLK_TCK,
        "shutdown_ms": ms(t_gone - t_term),
        "VmRSS_kib": rss,
    }


def _read_ready(reader: int, n: int, timeout: float, run: Launched) -> int:
    import select

    seen = 0
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(reader, select.POLLIN)
    while seen < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"only {seen} of {n} services ran in {timeout:.0f}s")
        if run.proc.poll() is not None:
            raise BenchError(f"tinit exited with {seen} of {n} running{run.stderr_tail()}")
        if poller.poll(int(min(left, 1.0) * 1000)):
            seen += os.read(reader, 65536).count(b"R")
    return seen


# --- report ------------------------------------------------------------------------------


def summarize(results: dict[str, Any]) -> str:
    names = list(results["size"])
    rows: list[list[str]] = []

    def row(label: str, values: dict[str, str]) -> None:
        rows.append([label, *(values[name] for name in names)])

    size = results["size"]
    row("size on disk (MiB)", {k: fmt(v["own_kib"] / MIB) for k, v in size.items()})
    row(
        "+ the Python it needs (MiB)",
        {k: fmt(v["python_kib"] / MIB) if v["python_kib"] else "-" for k, v in size.items()},
    )
    startup = results["startup"]["to_exec_ms"]
    row(
        "start-up to the child's exec, median (ms)", {k: fmt(median(v)) for k, v in startup.items()}
    )
    row("start-up, min-max (ms)", {k: f"{min(v):.1f}-{max(v):.1f}" for k, v in startup.items()})
    cpu = results["startup"]["cpu_ms"]
    row("start-up: CPU time of the run, median (ms)", {k: fmt(median(v)) for k, v in cpu.items()})
    idle = results["idle"]
    row("idle VmRSS (MiB)", {k: fmt(v["VmRSS_kib"] / MIB) for k, v in idle.items()})
    row("idle RssAnon (MiB)", {k: fmt(v["RssAnon_kib"] / MIB) for k, v in idle.items()})
    row(
        "idle PSS (MiB)",
        {k: fmt(None if v["Pss_kib"] is None else v["Pss_kib"] / MIB) for k, v in idle.items()},
    )
    row("threads", {k: str(v["threads"]) for k, v in idle.items()})
    services = results["services"]
    n = results["counts"]["services"]
    row(
        f"{n} services: start to all running, median (ms)",
        {k: fmt(median([r["start_ms"] for r in v]), 0) for k, v in services.items()},
    )
    row(
        f"{n} services: tinit's CPU time until then, median (ms)",
        {k: fmt(median([r["tinit_cpu_ms"] for r in v]), 0) for k, v in services.items()},
    )
    row(
        f"{n} services: SIGTERM to the end, median (ms)",
        {k: fmt(median([r["shutdown_ms"] for r in v]), 0) for k, v in services.items()},
    )
    row(
        f"{n} services: tinit's VmRSS (MiB)",
        {k: fmt(median([r["VmRSS_kib"] for r in v]) / MIB) for k, v in services.items()},
    )
    return markdown_table(["", *names], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--json", metavar="OUT", type=Path)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: run as root (it makes PID namespaces)", file=sys.stderr)
        return 2
    counts = QUICK if args.quick else FULL
    started, pressure = time.monotonic(), cpu_pressure_total_us()
    try:
        found = contenders(args.extra)
        results: dict[str, Any] = {
            "machine": machine_info(),
            "counts": {"startup": counts.startup, "services": counts.services},
            "contenders": {name: str(path) for name, path in found.items()},
            "size": measure_size(found),
            "startup": measure_startup(found, counts.startup),
            "idle": measure_idle(found),
            "services": measure_services(found, counts),
        }
    except (BenchError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    waited = cpu_pressure_total_us()
    if pressure is not None and waited is not None:
        # How busy the machine was with other work: 0% means nothing ever waited for a CPU.
        share = (waited - pressure) / 1e6 / (time.monotonic() - started) * 100
        results["machine"]["cpu pressure"] = f"some task waited for a CPU {share:.0f}% of the run"
    print(summarize(results))
    print()
    for key in ("date", "nproc", "cpu", "kernel", "os", "tinit", "cpu pressure"):
        print(f"- {key}: {results['machine'].get(key, 'n/a')}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
