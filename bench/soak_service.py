"""One service of the soak (bench/soak.py): a seeded, self-reporting troublemaker.

Run as ``python3 -S -u soak_service.py SEED NAME DIR MODE OOM ROLE`` under tinit.
Each run numbers itself (a counter in ``DIR/state/NAME``), draws everything it
will do from ``Random(f"{SEED}/{NAME}/{run}")``, and writes that plan as a JSON
*intent* to its journal ``DIR/journal/NAME.jsonl`` **before** doing any of it:

- how it will end: ``exit`` with a code, ``signal`` (SIGSEGV, SIGKILL, SIGABRT,
  SIGTERM sent to itself), or ``oom`` (allocate past its cgroup's memory.max;
  only when OOM is 1); whether it ignores SIGTERM (``hang``) and how long it
  lives first;
- how many numbered, checksummed lines it prints on stdout and stderr, which
  of them are long (64 KiB - 1 MiB), and where binary junk goes between them.

Output lines look like ``@S NAME RUN STREAM SEQ LEN CRC PAYLOAD`` where CRC is
the CRC-32 of everything else, so the soak can tell a lost, repeated,
reordered or torn line from a whole one. Before it ends, the run journals
``wrote`` (every line is out of its hands) and, for each storm of children it
forks and never waits for (zombies, sleeping orphans, setsid'd orphans,
grandchildren), their pids and the exit codes they will use. Forwarded
signals (USR1, USR2, WINCH) are journaled as ``got`` records as they arrive.

Standard library only; started with ``-S`` so it costs little to start.
Role ``stubborn`` ignores SIGTERM and never ends by itself: tinit's final
shutdown must SIGKILL it, which makes the expected exit code 137.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import sys
import time
import zlib
from typing import Any, Final

FORWARDED: Final = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
EXIT_CODES: Final = (0, 0, 0, 1, 2, 3, 42, 77, 126, 255)
SELF_SIGNALS: Final = (
    (signal.SIGSEGV, 40),
    (signal.SIGKILL, 30),
    (signal.SIGABRT, 15),
    (signal.SIGTERM, 15),
)
MiB: Final = 1 << 20
#: bytes of stdout the first run prints, to fill tinit's 256 KiB ring for `tinit logs`
FILL_BYTES: Final = 320 * 1024


def line(name: str, run: int, stream: str, seq: int, payload: bytes) -> bytes:
    head = f"{name} {run} {stream} {seq} {len(payload)}".encode()
    crc = zlib.crc32(head + b" " + payload)
    return b"@S " + head + b" %08x " % crc + payload + b"\n"


def payload_of(rng: random.Random, size: int) -> bytes:
    base = rng.randbytes(32).hex().encode()  # 64 hex digits, never '@' or a newline
    return (base * (size // len(base) + 1))[:size]


def junk_of(rng: random.Random, size: int) -> bytes:
    data = bytearray(rng.randbytes(size - 1))
    for i, byte in enumerate(data):
        if byte == 0x40:  # '@': junk must never look like a checksummed line
            data[i] = 0x41
    return bytes(data) + b"\n"


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Journal:
    def __init__(self, path: str, run: int) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.run = run

    def put(self, kind: str, **fields: Any) -> None:
        record = {"k": kind, "run": self.run, "pid": os.getpid(), "t": time.time(), **fields}
        # One write per record, O_APPEND: records from this process, its
        # signal handlers and its children never interleave.
        os.write(self.fd, json.dumps(record, separators=(",", ":")).encode() + b"\n")


def next_run(state: str) -> int:
    try:
        with open(state) as f:
            run = int(f.read().strip() or 0) + 1
    except FileNotFoundError:
        run = 1
    tmp = f"{state}.tmp"
    with open(tmp, "w") as f:
        f.write(str(run))
    os.replace(tmp, state)
    return run


def plan_run(rng: random.Random, run: int, mode: str, oom: bool, role: str) -> dict[str, Any]:
    if role == "stubborn":
        return {
            "act": "exit", "code": 0, "signal": None, "hang": True, "life": 1e9,
            "out": 3, "err": 1, "long": {}, "junk": {}, "storm": None, "fill": 0,
        }  # fmt: skip
    hang = rng.random() < 0.10
    r = rng.random()
    if oom and r < 0.10:
        act, code, sig = "oom", None, None
    elif r < 0.65:
        act, code, sig = "exit", rng.choice(EXIT_CODES), None
    else:
        choices = [(s, w) for s, w in SELF_SIGNALS if not (hang and s == signal.SIGTERM)]
        act, code = "signal", None
        sig = int(rng.choices([s for s, _ in choices], [w for _, w in choices])[0])
    r = rng.random()
    life = (
        rng.uniform(0.02, 0.8)
        if r < 0.35
        else rng.uniform(1.5, 7)
        if r < 0.8
        else (rng.uniform(9, 25))
    )
    fill = 0
    if run == 1 and mode != "raw":
        fill = FILL_BYTES // 130 + 1
    out = fill + rng.randint(3, 60)
    err = rng.randint(0, 8)
    long: dict[str, int] = {}  # stdout seq -> payload size
    if rng.random() < 0.006:
        long[str(rng.randrange(fill, out))] = MiB + rng.randrange(1000)
    if rng.random() < 0.03:
        long[str(rng.randrange(fill, out))] = rng.randrange(64 * 1024, 200 * 1024)
    junk: dict[str, list[int]] = {}  # after stdout seq -> [size, crc, newlines]
    if mode in ("prefix", "json") and rng.random() < 0.05:
        for _ in range(rng.randint(1, 3)):
            junk[str(rng.randrange(fill, out))] = [rng.randint(100, 8000), 0, 0]
    storm = None
    if rng.random() < 0.12:
        kind = rng.choice(("zombies", "orphans", "grandchildren"))
        count = {"zombies": rng.randint(20, 150), "orphans": rng.randint(3, 20)}.get(
            kind, rng.randint(20, 100)
        )
        storm = {"kind": kind, "count": count, "at": rng.random()}
    return {
        "act": act, "code": code, "signal": sig, "hang": hang, "life": round(life, 3),
        "out": out, "err": err, "long": long, "junk": junk, "storm": storm, "fill": fill,
    }  # fmt: skip


def fork_storm(rng: random.Random, storm: dict[str, Any], journal: Journal) -> None:
    """Fork children this process never waits for; journal their pids and exit codes."""
    kind, count = storm["kind"], storm["count"]
    procs: list[list[int]] = []
    t0 = time.time()
    if kind == "grandchildren":
        r, w = os.pipe()
        codes = [rng.randrange(0, 5) for _ in range(count)]
        middle = os.fork()
        if middle == 0:  # pragma: no cover - the middle process
            os.close(r)
            pids = []
            for code in codes:
                pid = os.fork()
                if pid == 0:
                    os._exit(code)
                pids.append(pid)
            os.write(w, json.dumps(pids).encode())
            os._exit(0)
        os.close(w)
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.close(r)
        procs.append([middle, 0])
        procs.extend(
            [pid, code] for pid, code in zip(json.loads(data or b"[]"), codes, strict=False)
        )
    else:
        for _ in range(count):
            code = rng.randrange(0, 8)
            sleep = rng.uniform(0.05, 2.5) if kind == "orphans" else 0.0
            detach = kind == "orphans" and rng.random() < 0.5
            pid = os.fork()
            if pid == 0:  # pragma: no cover - a child of the storm
                if detach:
                    os.setsid()
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                if sleep:
                    time.sleep(sleep)
                os._exit(code)
            procs.append([pid, code])
    journal.put("forked", storm=kind, t0=t0, procs=procs)


def allocate_forever() -> None:
    hog = []
    for _ in range(1024):
        block = bytearray(8 * MiB)
        for i in range(0, len(block), 4096):
            block[i] = 1
        hog.append(block)
    os._exit(98)  # never killed: memory.max did not hold


def main(argv: list[str]) -> None:
    seed, name, directory, mode, oom, role = argv[1:7]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    run = next_run(os.path.join(directory, "state", name))
    journal = Journal(os.path.join(directory, "journal", f"{name}.jsonl"), run)

    def record(signum: int, _frame: object) -> None:
        journal.put("got", sig=signal.Signals(signum).name)

    for signum in FORWARDED:
        signal.signal(signum, record)
    rng = random.Random(f"{seed}/{name}/{run}")
    plan = plan_run(rng, run, mode, oom == "1", role)
    if plan["hang"]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Junk is drawn now so its checksum is in the intent, before any of it is written.
    junk_data: dict[int, bytes] = {}
    for after, spec in plan["junk"].items():
        data = junk_of(rng, spec[0])
        junk_data[int(after)] = data
        spec[1], spec[2] = zlib.crc32(data), data.count(b"\n")
    journal.put("intent", **plan)

    out_lines: list[tuple[int, bytes]] = []
    for seq in range(plan["out"]):
        size = plan["long"].get(str(seq)) or (100 if seq < plan["fill"] else rng.randint(10, 300))
        out_lines.append((1, line(name, run, "o", seq, payload_of(rng, size))))
        if seq in junk_data:
            out_lines.append((1, junk_data[seq]))
    err_lines = [
        (2, line(name, run, "e", seq, payload_of(rng, rng.randint(10, 200))))
        for seq in range(plan["err"])
    ]
    fill_lines = [out_lines.pop(0) for _ in range(plan["fill"])]
    for i in range(0, len(fill_lines), 10):
        write_all(1, b"".join(data for _, data in fill_lines[i : i + 10]))
    # The rest is written in bursts spread over the run's life, stderr lines
    # mixed in among stdout's (each stream keeps its own order).
    merged: list[tuple[int, bytes]] = []
    for item in out_lines:
        merged.append(item)
        if err_lines and rng.random() < 0.2:
            merged.append(err_lines.pop(0))
    merged.extend(err_lines)
    bursts = max(1, min(5, len(merged)))
    per = len(merged) // bursts + 1
    pause = min(plan["life"], 60.0) / (bursts + 1)
    storm_at = None if plan["storm"] is None else int(plan["storm"]["at"] * bursts)
    for b in range(bursts):
        for fd, data in merged[b * per : (b + 1) * per]:
            write_all(fd, data)
        if storm_at == b:
            fork_storm(rng, plan["storm"], journal)
        time.sleep(pause)
    journal.put("wrote")
    if role == "stubborn":
        while True:
            time.sleep(3600)
    time.sleep(pause)
    if plan["act"] == "exit":
        os._exit(plan["code"])
    if plan["act"] == "oom":
        allocate_forever()
    os.kill(os.getpid(), plan["signal"])
    time.sleep(5)
    os._exit(99)  # the signal did not kill: the soak reports it as a wrong status


if __name__ == "__main__":
    main(sys.argv)
