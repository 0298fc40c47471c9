"""The control socket's speed: `tinit status` round trips and requests per second.

    .venv/bin/python bench/control.py [--services 50] [--seconds 3] [--json OUT]

Starts tinit as PID 1 of a fresh PID namespace with N idle services and a
control socket, then measures:

- the whole `tinit status` command (a new CLI process each time, interpreter
  start included), median and p90 of 30;
- requests per second the socket answers, with 1 and 4 client processes,
  each sending requests one after another over one connection (`ping`, and
  `status` of all N services).

Targets (the project's issue): status round trip <= 150 ms; >= 2,000
requests/s while 50 services run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TINIT = ROOT / ".venv" / "bin" / "tinit"


def start_tinit(services: int, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = workdir / "services.yaml"
    body = "".join(f"  s{i:02d}: {{command: 'sleep 3600'}}\n" for i in range(services))
    config.write_text(f"version: 1\nservices:\n{body}")
    sock = str(workdir / "control.sock")
    proc = subprocess.Popen(
        [
            "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
            str(TINIT), "run", "--log-level", "warning", "--control-socket", sock, str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if len(request(sock, {"v": 1, "cmd": "status"})["result"]) == services:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        proc.kill()
        raise SystemExit("tinit did not come up")
    return proc, sock


def request(path: str, payload: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        return exchange(s, payload)


def exchange(s: socket.socket, payload: dict[str, Any]) -> dict[str, Any]:
    s.sendall(json.dumps(payload).encode() + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = s.recv(1 << 16)
        if not chunk:
            raise OSError("connection closed")
        reply += chunk
    result: dict[str, Any] = json.loads(reply)
    return result


def round_trips(sock: str, count: int) -> list[float]:
    env = {**os.environ, "TINIT_CONTROL_SOCKET": sock}
    times = []
    for _ in range(count):
        began = time.perf_counter()
        subprocess.run([str(TINIT), "status"], env=env, stdout=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - began)
    return times


def _hammer(args: tuple[str, str, float]) -> int:
    sock, cmd, seconds = args
    done = 0
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            exchange(s, {"v": 1, "cmd": cmd})
            done += 1
    return done


def rate(sock: str, cmd: str, clients: int, seconds: float) -> float:
    with multiprocessing.Pool(clients) as pool:
        counts = pool.map(_hammer, [(sock, cmd, seconds)] * clients)
    return sum(counts) / seconds


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    python = platform.python_version()
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, Python {python}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    if not shutil.which("unshare"):
        raise SystemExit("needs unshare (util-linux)")
    workdir = Path(tempfile.mkdtemp(prefix="tinit-bench-", dir="/tmp"))
    proc, sock = start_tinit(args.services, workdir)
    results: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    try:
        trips = round_trips(sock, 30)
        results["status_round_trip_ms"] = {
            "median": statistics.median(trips) * 1000,
            "p90": statistics.quantiles(trips, n=10)[-1] * 1000,
        }
        for cmd in ("ping", "status"):
            for clients in (1, 4):
                results[f"{cmd}_per_second_{clients}_clients"] = rate(
                    sock, cmd, clients, args.seconds
                )
    finally:
        # SIGTERM, not SIGKILL: tinit removes its cgroups on the way out.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    trip = results["status_round_trip_ms"]
    best = max(v for k, v in results.items() if k.endswith("_clients"))
    print(f"# control socket, {args.services} services -- {results['machine']}, {results['date']}")
    print()
    print("| measurement | tinit | target | met |")
    print("|---|---|---|---|")
    print(
        f"| `tinit status` round trip (whole CLI process) | median {trip['median']:.0f} ms, "
        f"p90 {trip['p90']:.0f} ms | <= 150 ms | {'yes' if trip['median'] <= 150 else 'no'} |"
    )
    for key, value in results.items():
        if key.endswith("_clients"):
            cmd, _, _, count, _ = key.split("_")
            met = "yes" if value >= 2000 else "no"
            print(f"| `{cmd}` requests/s, {count} client(s) | {value:,.0f} | >= 2,000 | {met} |")
    print(f"\nbest rate: {best:,.0f} requests/s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
