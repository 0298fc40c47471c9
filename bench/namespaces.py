"""Namespaces benchmark: what ``--isolate`` and each per-service namespace add to start-up.

Run it as root from the repository (after ``bash .ci/setup``)::

    .venv/bin/python bench/namespaces.py                   # N=30: about 3-4 minutes on 2 CPUs
    .venv/bin/python bench/namespaces.py --runs 5          # a smoke run
    .venv/bin/python bench/namespaces.py --tinit-ref HEAD --json out.json

Every variant is measured against a baseline without namespaces in the same
run. Within each round every variant is started once, in an order shuffled
anew each round (seeded: ``--seed``), with a pause of SETTLE_S between
launches, so noise on the machine and work the kernel defers after a launch
(a network namespace is freed by a kernel worker) fall on all of them alike.
Reported: median and p90 of N, the difference of the medians to the
baseline in ms and their ratio, and the median of the per-round differences
(each variant against the baseline of its own round). Measured:

1. **One-command mode**, started plainly (``--isolate`` makes its own PID
   namespace, so no ``unshare`` around it): from just before ``Popen`` to the
   first byte ``/bin/echo`` writes to the pipe that is its (inherited) stdout,
   i.e. just after its exec; also launch to exit. ``tinit run -- CMD`` vs
   ``tinit run --isolate -- CMD`` vs ``--isolate=net``, and the command alone.
2. **Services mode**, tinit as PID 1 of
   ``unshare --pid --fork --mount-proc --kill-child``: a config with one
   service, ``/bin/sh -c 'echo R; exec sleep 3600'`` with ``output: raw`` (it
   writes to tinit's stdout, a pipe the benchmark reads), and
   ``settings.control_socket: null``, ``cgroups: off``; ``namespaces`` unset
   vs each of ``private_tmp``, ``read_only_paths: [/usr]``,
   ``hidden_paths: [/srv]`` (a directory of the work dir if /srv is missing),
   ``network: none``, ``pid: private``, and all of them. From launch to the
   service's ``R``, and from SIGTERM to PID 1 until the namespace is gone.
3. **Services mode with --isolate**: the same config without namespaces,
   started plainly as ``tinit run CONFIG`` vs ``--isolate`` vs
   ``--isolate=net``; the same two times (SIGTERM to the outer process).
4. **Restart cost**: a service that crashes at once (``restart: always``,
   ``backoff: {initial: 0s}``, ``max_restarts: null``), run by
   ``/usr/bin/python3 -S``: its first statement writes ``R <CLOCK_MONOTONIC
   ns>``, its last ``X <ns>`` just before ``os._exit(1)``. The respawn interval
   is each ``X`` to the next ``R`` (the interpreter's own start-up is in it, the
   same for every variant; the interpreter alone is given as a floor). The
   variants of 2., ``--restart-rounds`` launches of each, the first start of
   each launch not counted. A respawn takes the same path through tinit as a
   first start, without the interpreter and config loading around it, so this
   is also the quieter measure of what each namespace costs a start.
5. **The kernel alone**: ``unshare(2)`` of each set of namespaces, timed
   around the call in a fresh forked child.

Every process is ended and waited for (every wait has a timeout);
/proc/self/mountinfo is compared before and after, and no process may be left
whose command line holds the work directory. The table goes to stdout,
progress to stderr, raw numbers to ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

from _common import (
    SYSTEM_PYTHON,
    TINIT,
    BenchError,
    Launched,
    comm,
    cpu_pressure_total_us,
    ensure_debian_packages,
    fmt,
    log,
    machine_info,
    markdown_table,
    median,
    percentile,
    snapshot_tinit,
    takes_signal,
)

START_TIMEOUT: Final = 30.0
#: the pause before each launch
SETTLE_S: Final = 0.05
STOP_TIMEOUT: Final = 30.0
#: the command of one-command mode; its first byte is "x"
ECHO: Final = "/bin/echo"
#: the service of parts 2 and 3: one line, then it idles
IDLE_SERVICE: Final = ("/bin/sh", "-c", "echo R; exec sleep 3600")
#: the service of part 4: its own timestamps, then exit 1 at once
CRASH_SCRIPT: Final = (
    "import time\n"
    "t = time.monotonic_ns()\n"
    "import os\n"
    "os.write(1, b'R %d\\n' % t)\n"
    "os.write(1, b'X %d\\n' % time.monotonic_ns())\n"
    "os._exit(1)\n"
)
#: the interpreter alone, for the floor of part 4
FLOOR_SCRIPT: Final = (
    "import time\nt = time.monotonic_ns()\nimport os\nos.write(1, b'R %d\\n' % t)\n"
)

#: The kernel alone: unshare(2) of each set of namespaces, in a fresh forked
#: child each time (which then exits, taking its namespaces with it), timed
#: around the syscall. Prints one JSON object: name -> samples in ns.
KERNEL_SCRIPT: Final = r"""
import ctypes, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
NS, UTS, IPC, PID, NET = 0x20000, 0x4000000, 0x8000000, 0x20000000, 0x40000000
sets = {
    "CLONE_NEWNS (private_tmp, read_only_paths, hidden_paths)": NS,
    "CLONE_NEWNET (network: none)": NET,
    "CLONE_NEWPID (pid: private; the first step of --isolate)": PID,
    "CLONE_NEWNS + NEWUTS + NEWIPC (the rest of --isolate)": NS | UTS | IPC,
    "CLONE_NEWNS + NEWUTS + NEWIPC + NEWNET (the rest of --isolate=net)": NS | UTS | IPC | NET,
}
out = {name: [] for name in sets}
for _ in range(int(sys.argv[1])):
    for name, flags in sets.items():
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            t0 = time.monotonic_ns()
            failed = libc.unshare(flags)
            t1 = time.monotonic_ns()
            os.write(w, b"%d" % (-1 if failed else t1 - t0))
            os._exit(0)
        os.close(w)
        took = int(os.read(r, 64))
        os.close(r)
        os.waitpid(pid, 0)
        if took < 0:
            sys.exit("unshare failed: " + name)
        out[name].append(took)
print(json.dumps(out))
"""

BASELINE: Final = "none"
ALL: Final = "all of them"

#: How tinit is started; ``--tinit-ref`` replaces it with a snapshot of a commit.
TINIT_COMMAND: list[str] = [str(TINIT)]

T = TypeVar("T")


def ms(ns: int) -> float:
    return ns / 1e6


def shuffled(items: Sequence[T], rng: random.Random) -> list[T]:
    """``items`` in a random order: a different one each round."""
    order = list(items)
    rng.shuffle(order)
    return order


# --- configs -----------------------------------------------------------------------


def namespace_variants(hidden: str) -> dict[str, dict[str, Any] | None]:
    """The ``namespaces:`` of each variant of part 2 (None: the key is left out)."""
    each: dict[str, dict[str, Any]] = {
        "private_tmp": {"private_tmp": True},
        "read_only_paths: [/usr]": {"read_only_paths": ["/usr"]},
        f"hidden_paths: [{hidden}]": {"hidden_paths": [hidden]},
        "network: none": {"network": "none"},
        "pid: private": {"pid": "private"},
    }
    together: dict[str, Any] = {}
    for keys in each.values():
        together.update(keys)
    return {BASELINE: None, **each, ALL: together}


def write_config(
    path: Path, command: Sequence[str], namespaces: dict[str, Any] | None, *, crash: bool
) -> Path:
    """One service, no control socket, no cgroups. JSON is YAML, so no quoting to get wrong."""
    service: dict[str, Any] = {"command": list(command), "output": "raw", "stop_timeout": "10s"}
    if crash:
        service.update(restart="always", max_restarts=None, backoff={"initial": "0s"})
    else:
        service["restart"] = "never"
    if namespaces is not None:
        service["namespaces"] = namespaces
    config = {
        "version": 1,
        "settings": {
            "control_socket": None,
            "cgroups": "off",
            "log_level": "warning",
            "shutdown_timeout": "20s",
        },
        "services": {"svc": service},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def check_config(path: Path) -> None:
    """``tinit check`` it first: a refusal is one clear line, not a timeout later."""
    done = subprocess.run(
        [*TINIT_COMMAND, "check", str(path)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise BenchError(f"tinit check {path.name}: {done.stderr.strip() or done.returncode}")


# --- one launch ------------------------------------------------------------------------


@dataclass
class Samples:
    """The samples of one variant, one per round."""

    to_exec_ms: list[float] = field(default_factory=list)
    to_exit_ms: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)


def one_command(argv: Sequence[str], samples: Samples) -> None:
    """Launch to the command's first byte, and launch to exit, started plainly."""
    with Launched(argv, namespace=False) as run:
        data, t_first = run.read_some(timeout=START_TIMEOUT)
        if not data.startswith(b"x"):
            raise BenchError(f"{run.describe()}: unexpected output {data!r}{run.stderr_tail()}")
        t_exit, code = run.wait_exit(timeout=STOP_TIMEOUT)
        if code != 0:
            raise BenchError(f"{run.describe()}: exit code {code}{run.stderr_tail()}")
    samples.to_exec_ms.append(ms(t_first - run.t_launch))
    samples.to_exit_ms.append(ms(t_exit - run.t_launch))
    samples.exit_codes.append(code)


def service_start(argv: Sequence[str], samples: Samples, *, namespace: bool) -> None:
    """Launch to the service's ``R``; then SIGTERM to (the outer) tinit until it is gone."""
    with Launched(argv, namespace=namespace) as run:
        data, t_first = run.read_some(timeout=START_TIMEOUT)
        if not data.startswith(b"R"):
            raise BenchError(f"{run.describe()}: unexpected output {data!r}{run.stderr_tail()}")
        pid = run.init_pid()
        t_term = sigterm_when_taken(pid)
        t_exit, code = run.wait_exit(timeout=STOP_TIMEOUT)
        if code != 0:
            raise BenchError(f"{run.describe()}: exit code {code}{run.stderr_tail()}")
    samples.to_exec_ms.append(ms(t_first - run.t_launch))
    samples.to_exit_ms.append(ms(t_exit - t_term))
    samples.exit_codes.append(code)


def sigterm_when_taken(pid: int, timeout: float = 10.0) -> int:
    """SIGTERM ``pid`` once it catches or blocks it (else PID 1 would drop it); the time sent."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if comm(pid) != "unshare" and takes_signal(pid, signal.SIGTERM):
                break
        if time.monotonic() > deadline:
            raise BenchError(f"pid {pid} did not take SIGTERM within {timeout}s")
        time.sleep(0.0005)
    sent = time.monotonic_ns()
    os.kill(pid, signal.SIGTERM)
    return sent


@dataclass
class Respawns:
    intervals_ms: list[float] = field(default_factory=list)
    #: the median of each launch's intervals, for the paired difference
    per_round_ms: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)


def respawns(argv: Sequence[str], count: int, out: Respawns) -> None:
    """``count`` intervals from a crash (``X``) to the next start (``R``), from one launch."""
    got: list[float] = []
    with Launched(argv) as run:
        last_exit: int | None = None
        deadline = time.monotonic() + START_TIMEOUT + count
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{run.describe()}: {len(got)} of {count} restarts in time")
            kind, _, stamp = run.read_line(timeout=left).partition(b" ")
            if kind == b"X":
                last_exit = int(stamp)
            elif kind == b"R":
                if last_exit is not None:
                    got.append(ms(int(stamp) - last_exit))
                last_exit = None
            else:
                raise BenchError(f"{run.describe()}: unexpected line {kind!r}")
        sigterm_when_taken(run.init_pid())
        _, code = run.wait_exit(timeout=STOP_TIMEOUT)
    out.intervals_ms += got
    out.per_round_ms.append(median(got))
    out.exit_codes.append(code)


def python_floor(count: int, out: Respawns) -> None:
    """``python3 -S`` alone: from just before Popen to its first statement."""
    got: list[float] = []
    for _ in range(count):
        with Launched([SYSTEM_PYTHON, "-S", "-c", FLOOR_SCRIPT], namespace=False) as run:
            kind, _, stamp = run.read_line(timeout=START_TIMEOUT).partition(b" ")
            if kind != b"R":
                raise BenchError(f"python floor: unexpected line {kind!r}")
            _, code = run.wait_exit(timeout=STOP_TIMEOUT)
        got.append(ms(int(stamp) - run.t_launch))
        out.exit_codes.append(code)
    out.intervals_ms += got
    out.per_round_ms.append(median(got))


def kernel_floor(count: int) -> dict[str, list[float]]:
    """unshare(2) alone for each set of namespaces, in ms."""
    log(f"kernel: unshare(2) alone, {count} per set")
    done = subprocess.run(
        [SYSTEM_PYTHON, "-S", "-c", KERNEL_SCRIPT, str(count)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise BenchError(f"kernel floor: {done.stderr.strip() or done.returncode}")
    raw: dict[str, list[int]] = json.loads(done.stdout)
    return {name: [ms(v) for v in values] for name, values in raw.items()}


# --- the parts ---------------------------------------------------------------------------


@dataclass
class Plan:
    """Every launch of one round: a name per group, and how to take one sample."""

    groups: dict[str, dict[str, Callable[[Samples], None]]]


def build_plan(work: Path, hidden: str) -> Plan:
    echo = [ECHO, "x", str(work)]  # the work dir in argv: the leftover check finds it
    run = [*TINIT_COMMAND, "run"]
    one: dict[str, Callable[[Samples], None]] = {
        "`/bin/echo` alone (floor)": partial(one_command, echo),
        "`tinit run -- CMD`": partial(one_command, [*run, "--", *echo]),
        "`tinit run --isolate -- CMD`": partial(one_command, [*run, "--isolate", "--", *echo]),
        "`tinit run --isolate=net -- CMD`": partial(
            one_command, [*run, "--isolate=net", "--", *echo]
        ),
    }
    services: dict[str, Callable[[Samples], None]] = {}
    for i, (name, ns) in enumerate(namespace_variants(hidden).items()):
        config = write_config(work / f"svc{i}.yaml", IDLE_SERVICE, ns, crash=False)
        check_config(config)
        services[name] = partial(service_start, [*run, str(config)], namespace=True)
    plain = work / "plain.yaml"
    write_config(plain, IDLE_SERVICE, None, crash=False)
    # CONFIG before the option: `tinit run --isolate CONFIG` takes CONFIG as
    # the value of --isolate (argparse, nargs="?") and is refused.
    isolated: dict[str, Callable[[Samples], None]] = {}
    for name, extra in (
        ("`tinit run CONFIG`", []),
        ("`tinit run CONFIG --isolate`", ["--isolate"]),
        ("`tinit run CONFIG --isolate=net`", ["--isolate=net"]),
    ):
        isolated[name] = partial(service_start, [*run, str(plain), *extra], namespace=False)
    return Plan({"one-command": one, "services": services, "isolate-config": isolated})


def run_rounds(plan: Plan, runs: int, rng: random.Random) -> dict[str, dict[str, Samples]]:
    """``runs`` rounds; in each, every variant of every group once, in a random order."""
    samples = {g: {name: Samples() for name in variants} for g, variants in plan.groups.items()}
    flat = [
        (g, name, take) for g, variants in plan.groups.items() for name, take in variants.items()
    ]
    for i in range(runs):
        log(f"start-up round {i + 1}/{runs} ({len(flat)} launches)")
        for group, name, take in shuffled(flat, rng):
            time.sleep(SETTLE_S)
            take(samples[group][name])
    return samples


def run_restarts(
    work: Path, hidden: str, total: int, rounds: int, rng: random.Random
) -> tuple[dict[str, Respawns], Respawns]:
    """Respawn intervals of a crashing service; ``rounds`` launches of each variant."""
    variants = namespace_variants(hidden)
    argvs: dict[str, list[str]] = {}
    for i, (name, ns) in enumerate(variants.items()):
        command = (SYSTEM_PYTHON, "-S", "-c", CRASH_SCRIPT)
        config = write_config(work / f"crash{i}.yaml", command, ns, crash=True)
        check_config(config)
        argvs[name] = [*TINIT_COMMAND, "run", str(config)]
    per_round = max(1, -(-total // rounds))
    out = {name: Respawns() for name in argvs}
    floor = Respawns()
    names = list(argvs)
    for r in range(rounds):
        log(f"restart round {r + 1}/{rounds} ({per_round} restarts per variant)")
        for name in shuffled(names, rng):
            time.sleep(SETTLE_S)
            respawns(argvs[name], per_round, out[name])
        python_floor(per_round, floor)
    return out, floor


# --- hygiene --------------------------------------------------------------------------------


def mountinfo() -> list[str]:
    """The mounts of the benchmark's own namespace, without the ids that change on remount."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return sorted(" ".join(line.split()[3:]) for line in lines)


def leftovers(marker: str) -> list[str]:
    """Processes whose command line holds ``marker``, and children of this process."""
    found: list[str] = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if marker in argv:
                found.append(f"{entry}: {argv[:120]}")
    for task in os.listdir(f"/proc/{me}/task"):
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{me}/task/{task}/children").read_text().split()
            found += [f"{pid}: a child of the benchmark" for pid in children]
    return found


# --- report -------------------------------------------------------------------------------


def paired_delta(values: Sequence[float], base: Sequence[float]) -> float:
    """The median of the per-round differences to the baseline."""
    return median([v - b for v, b in zip(values, base, strict=True)])


def compare_rows(
    samples: dict[str, list[float]], baseline: str, skip: Sequence[str] = ()
) -> list[list[str]]:
    base = samples[baseline]
    base_med = median(base)
    rows = []
    for name, values in samples.items():
        med = median(values)
        if name == baseline:
            delta, ratio, paired = "(baseline)", "1.00×", "–"
        elif name in skip:
            delta, ratio, paired = "–", "–", "–"
        else:
            delta = f"{med - base_med:+.1f}"
            ratio = f"{med / base_med:.2f}×"
            paired = f"{paired_delta(values, base):+.1f}"
        rows.append([name, fmt(med), fmt(percentile(values, 90)), delta, ratio, paired])
    return rows


HEADERS: Final = [
    "variant",
    "median (ms)",
    "p90 (ms)",
    "Δ median vs baseline (ms)",
    "ratio",
    "paired Δ (ms)",
]


def report(
    results: dict[str, dict[str, Samples]],
    restarts: dict[str, Respawns],
    floor: Respawns,
    kernel: dict[str, list[float]],
) -> str:
    def table(group: str, to_exit: bool, baseline: str, skip: Sequence[str] = ()) -> str:
        values = {
            name: s.to_exit_ms if to_exit else s.to_exec_ms for name, s in results[group].items()
        }
        return markdown_table(HEADERS, compare_rows(values, baseline, skip))

    one, echo_alone, plain = "`tinit run -- CMD`", "`/bin/echo` alone (floor)", "`tinit run CONFIG`"
    parts = [
        "### 1. One-command mode, started plainly: launch to the command's exec\n",
        table("one-command", False, one, [echo_alone]),
        "\nLaunch to exit (`/bin/echo` has exited and tinit with it):\n",
        table("one-command", True, one, [echo_alone]),
        "\n### 2. Services mode, tinit as PID 1 of `unshare`: launch to the service's exec\n",
        table("services", False, BASELINE),
        "\nSIGTERM to PID 1 until the namespace is gone:\n",
        table("services", True, BASELINE),
        "\n### 3. Services mode started plainly, with and without `--isolate`\n",
        table("isolate-config", False, plain),
        "\nSIGTERM to (the outer) tinit until it has exited:\n",
        table("isolate-config", True, plain),
        "\n### 4. Restart: from a crash (`X`) to the next start (`R`), by the service's clock\n",
    ]
    rows = compare_rows({k: v.intervals_ms for k, v in restarts.items()}, BASELINE)
    # The paired difference for restarts: per launch (round), median against median.
    base_rounds = restarts[BASELINE].per_round_ms
    for row, (name, r) in zip(rows, restarts.items(), strict=True):
        if name != BASELINE:
            row[5] = f"{paired_delta(r.per_round_ms, base_rounds):+.1f}"
    rows.append(
        [
            "`python3 -S` alone: Popen to its first statement (floor)",
            fmt(median(floor.intervals_ms)),
            fmt(percentile(floor.intervals_ms, 90)),
            "–",
            "–",
            "–",
        ]
    )
    parts.append(markdown_table(HEADERS, rows))
    parts.append("\n### 5. The kernel alone: unshare(2) in a fresh child, timed around the call\n")
    kernel_rows = [
        [name, f"{median(v):.2f}", f"{percentile(v, 90):.2f}"] for name, v in kernel.items()
    ]
    parts.append(markdown_table(["namespaces", "median (ms)", "p90 (ms)"], kernel_rows))
    return "\n".join(parts)


def samples_json(samples: Samples | Respawns) -> dict[str, Any]:
    return dict(vars(samples))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30, help="start-up samples per variant")
    parser.add_argument("--restarts", type=int, default=30, help="restarts per variant")
    parser.add_argument("--restart-rounds", type=int, default=3, help="launches per variant")
    parser.add_argument("--seed", type=int, default=1, help="of the launch order")
    parser.add_argument("--tinit-ref", metavar="REF", help="run tinit from `git archive REF`")
    parser.add_argument("--json", metavar="OUT", type=Path, help="write the raw numbers here")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.restarts < 1 or args.restart_rounds < 1:
        parser.error("--runs, --restarts and --restart-rounds must be at least 1")
    if os.geteuid() != 0:
        print("bench/namespaces.py: run as root (it makes namespaces)", file=sys.stderr)
        return 2
    if not TINIT.exists():
        print(f"bench/namespaces.py: {TINIT} is missing: run 'bash .ci/setup'", file=sys.stderr)
        return 2
    ensure_debian_packages({"unshare": "util-linux"})
    mounts_before = mountinfo()
    work = Path(tempfile.mkdtemp(prefix="tinit-bench-ns-"))
    machine = {
        k: v
        for k, v in machine_info().items()
        if k not in ("tini", "dumb-init")  # not used here
    }
    results: dict[str, Any] = {"counts": vars(args) | {"json": str(args.json)}}
    try:
        if args.tinit_ref:
            snapshot = snapshot_tinit(args.tinit_ref, work)
            TINIT_COMMAND[:] = snapshot.command
            machine["tinit"] = snapshot.label
        if os.path.isdir("/srv"):
            hidden = "/srv"
        else:
            hidden = str(work / "hidden")
            os.mkdir(hidden)
        plan = build_plan(work, hidden)
        pressure_start, t_start = cpu_pressure_total_us(), time.monotonic()
        rng = random.Random(args.seed)
        startup = run_rounds(plan, args.runs, rng)
        restarts, floor = run_restarts(work, hidden, args.restarts, args.restart_rounds, rng)
        kernel = kernel_floor(args.runs)
        pressure_end, elapsed = cpu_pressure_total_us(), time.monotonic() - t_start
    finally:
        left = leftovers(str(work))
        shutil.rmtree(work, ignore_errors=True)
    mounts_after = mountinfo()
    added = sorted(set(mounts_after) - set(mounts_before))
    removed = sorted(set(mounts_before) - set(mounts_after))
    machine["elapsed"] = f"{elapsed:.0f} s"
    if pressure_start is not None and pressure_end is not None:
        share = (pressure_end - pressure_start) / 1e6 / elapsed
        results["cpu_pressure_some"] = round(share, 3)
        machine["CPU pressure during the run"] = (
            f"{share:.0%} (share of time some task waited for a CPU, /proc/pressure/cpu; "
            "the benchmark's own processes count too)"
        )
    machine["mounts"] = (
        "/proc/self/mountinfo the same before and after"
        if not added and not removed
        else f"CHANGED: {len(added)} added, {len(removed)} removed"
    )
    machine["leftover processes"] = "none" if not left else f"{len(left)}: {'; '.join(left)}"
    results["startup"] = {
        g: {name: samples_json(s) for name, s in variants.items()}
        for g, variants in startup.items()
    }
    results["restarts"] = {name: samples_json(r) for name, r in restarts.items()}
    results["python_floor"] = samples_json(floor)
    results["kernel_unshare_ms"] = kernel
    results["mounts_added"], results["mounts_removed"], results["leftovers"] = added, removed, left

    print("## Namespaces: start-up overhead of --isolate and per-service namespaces\n")
    print("\n".join(f"- {k}: {v}" for k, v in machine.items()))
    print(
        f"- counts: start-up ×{args.runs} per variant; restarts ×{args.restarts} per variant "
        f"over {args.restart_rounds} launches\n"
    )
    print(report(startup, restarts, floor, kernel))
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
        log(f"raw numbers written to {args.json}")
    return 0 if not added and not removed and not left else 1


if __name__ == "__main__":
    sys.exit(main())
