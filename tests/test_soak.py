"""The soak (bench/soak.py): 60 seconds of chaos against tinit as PID 1, every invariant held.

The soak runs once for the module (50 services, seed 1, ~75 s with its
shutdown and analysis) and keeps its work directory. Then the same checker is
pointed at copies of that run with one fault planted in each (a line dropped
from tinit's output, an exit code changed in its events, a zombie in the
monitor's record, ...): each must break the invariant it is about, which shows
that a green soak means something.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nsrun import PYTHON, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

SOAK = ROOT / "bench" / "soak.py"
Events = list[dict[str, Any]]


def soak(*args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    """Run bench/soak.py; (exit status, its --json figures, its stderr)."""
    out = Path(args[args.index("--json") + 1])
    done = subprocess.run(
        [PYTHON, str(SOAK), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    data = json.loads(out.read_text()) if out.exists() else {}
    return done.returncode, data, done.stdout + done.stderr


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, Any], Path]]:
    """The 60-second soak, its work directory kept for the fault-planting tests."""
    base = tmp_path_factory.mktemp("soak")
    args = ["--duration", "60", "--seed", "1", "--services", "50", "--keep", "--dir", str(base)]
    code, data, output = soak(*args, "--json", str(base / "soak.json"), timeout=170)
    found = [p for p in base.iterdir() if p.name.startswith("tinit-soak-")]
    assert len(found) == 1, output[-3000:]
    yield code, data, found[0]
    if code == 0:
        shutil.rmtree(base, ignore_errors=True)
    # else the run stays for a post-mortem: bench/soak.py --analyse WORKDIR


@pytest.mark.timeout(180)
def test_sixty_seconds_of_chaos_break_no_invariant(
    kept: tuple[int, dict[str, Any], Path],
) -> None:
    """Crashes, hangs, junk output, orphan storms, signal bursts, restarts, reloads and a
    stalled stdout reader for 60 s: every invariant of the soak holds, and nothing is left."""
    code, data, workdir = kept
    broken = "\n".join(
        f"{c['name']}: {problem}"
        for c in data["checks"]
        if c["verdict"] == "FAIL"
        for problem in c["problems"][:10]
    )
    assert code == 0, f"kept for a post-mortem: {workdir}\n{broken}"
    assert {c["verdict"] for c in data["checks"]} <= {"PASS", "skipped"}
    assert data["stats"]["restarts"] >= 200  # the chaos really happened
    assert data["stats"]["orphans_forked"] >= 500
    # Nothing left behind: no process runs anything from the work directory.
    marker = str(workdir).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert marker not in cmdline, f"pid {pid} is left: {cmdline!r}"


# --- planted faults -------------------------------------------------------------------


def read_events(workdir: Path) -> tuple[list[bytes], Events]:
    lines = (workdir / "stderr.log").read_bytes().split(b"\n")
    events = []
    for i, line in enumerate(lines):
        if line.startswith(b"{") and b'"event": ' in line:
            event = json.loads(line)
            event["_line"] = i
            events.append(event)
    return lines, events


def rewrite_event(workdir: Path, pick: Callable[[dict[str, Any]], bool], edit: Any) -> None:
    """Replace (``edit`` returns a dict) or delete (None) the first event ``pick`` chooses."""
    lines, events = read_events(workdir)
    event = next(e for e in events if pick(e))
    i = event.pop("_line")
    new = edit(event)
    if new is None:
        del lines[i]
    else:
        lines[i] = json.dumps(new).encode()
    (workdir / "stderr.log").write_bytes(b"\n".join(lines))


def journal(workdir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((workdir / "journal").iterdir()):
        for raw in path.read_bytes().splitlines():
            yield path.stem, json.loads(raw)


def a_middle_line(workdir: Path) -> tuple[list[bytes], int, int]:
    """stdout lines, and the indexes of two lines of one prefix service's run: seq k and k+1."""
    lines = (workdir / "stdout.log").read_bytes().split(b"\n")
    where: dict[bytes, int] = {}
    for i, line in enumerate(lines):
        _, sep, body = line.partition(b" | @S ")
        if not sep:
            continue
        name, run, stream, seq = body.split(b" ")[:4]
        key = b" ".join((name, run, stream))
        if int(seq) == 5 and stream == b"o":
            where[key] = i
        elif int(seq) == 6 and key in where:
            return lines, where[key], i
    raise AssertionError("no run with 7 lines in the soak's output")


def write_stdout(workdir: Path, lines: list[bytes]) -> None:
    (workdir / "stdout.log").write_bytes(b"\n".join(lines))


def drop_line(workdir: Path) -> None:
    lines, i, _ = a_middle_line(workdir)
    del lines[i]
    write_stdout(workdir, lines)


def repeat_line(workdir: Path) -> None:
    lines, i, _ = a_middle_line(workdir)
    lines.insert(i + 1, lines[i])
    write_stdout(workdir, lines)


def swap_lines(workdir: Path) -> None:
    lines, i, j = a_middle_line(workdir)
    lines[i], lines[j] = lines[j], lines[i]
    write_stdout(workdir, lines)


def tear_line(workdir: Path) -> None:
    lines, i, _ = a_middle_line(workdir)
    last = lines[i][-1:]
    lines[i] = lines[i][:-1] + (b"0" if last != b"0" else b"1")
    write_stdout(workdir, lines)


def change_junk(workdir: Path) -> None:
    records = list(journal(workdir))
    wrote = {(name, r["run"]) for name, r in records if r["k"] == "wrote"}
    lines = (workdir / "stdout.log").read_bytes().split(b"\n")
    for name, record in records:
        if record["k"] != "intent" or not record["junk"] or (name, record["run"]) not in wrote:
            continue
        head = f" | @S {name} {record['run']} o {next(iter(record['junk']))} ".encode()
        at = next((i for i, line in enumerate(lines) if head in line), None)
        if at is None:
            continue  # not prefix mode
        prefix = lines[at].partition(b" | ")[0] + b" | "
        junk = next(i for i in range(at + 1, len(lines)) if lines[i].startswith(prefix))
        lines[junk] += b"!"
        write_stdout(workdir, lines)
        return
    pytest.skip("the soak wrote no junk in prefix mode")


def wrong_exit_code(workdir: Path) -> None:
    rewrite_event(
        workdir,
        lambda e: e["event"] == "service_exited" and e["exit_code"] is not None,
        lambda e: {**e, "exit_code": (e["exit_code"] + 1) % 256},
    )


def lost_exit(workdir: Path) -> None:
    rewrite_event(workdir, lambda e: e["event"] == "service_exited", lambda e: None)


def lost_orphan(workdir: Path) -> None:
    forked = next(r for _, r in journal(workdir) if r["k"] == "forked")
    pid, t0 = forked["procs"][0][0], forked["t0"]

    def pick(e: dict[str, Any]) -> bool:
        when = datetime.datetime.fromisoformat(e["timestamp"]).timestamp()
        return bool(e["event"] == "orphan_reaped" and e["pid"] == pid and when >= t0)

    rewrite_event(workdir, pick, lambda e: None)


def wrong_delay(workdir: Path) -> None:
    rewrite_event(
        workdir,
        lambda e: e["event"] == "service_restarting",
        lambda e: {**e, "delay": round(e["delay"] * 2 + 0.01, 3)},
    )


def start_during_shutdown(workdir: Path) -> None:
    lines, events = read_events(workdir)
    began = next(e for e in events if e["event"] == "shutdown_began")
    start = dict(next(e for e in events if e["event"] == "service_starting"))
    start.pop("_line")
    start["timestamp"] = began["timestamp"]
    lines.insert(began["_line"] + 1, json.dumps(start).encode())
    (workdir / "stderr.log").write_bytes(b"\n".join(lines))


def traceback_on_stderr(workdir: Path) -> None:
    with open(workdir / "stderr.log", "ab") as f:
        f.write(b"Traceback (most recent call last):\n")


def signals_lost(workdir: Path) -> None:
    for path in (workdir / "journal").iterdir():
        kept = [r for r in path.read_bytes().splitlines() if b'"k":"got"' not in r]
        path.write_bytes(b"".join(r + b"\n" for r in kept))


def edit_state(workdir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = workdir / "soak.json"
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))


def old_zombie(workdir: Path) -> None:
    edit_state(workdir, lambda s: s["monitor"]["old_zombies"].append([12345, 678, 1.75]))


def exit_zero(workdir: Path) -> None:
    edit_state(workdir, lambda s: s.update(exit_code=0))


def _last_samples(s: dict[str, Any], key: str, delta: int) -> None:
    samples = s["monitor"]["samples"]
    for sample in samples[len(samples) // 2 :]:
        sample[key] += delta


def rss_grows(workdir: Path) -> None:
    edit_state(workdir, lambda s: _last_samples(s, "rss_kib", 4096))


def fd_leaks(workdir: Path) -> None:
    edit_state(workdir, lambda s: _last_samples(s, "fd_floor", 1))


def second_thread(workdir: Path) -> None:
    edit_state(workdir, lambda s: s["monitor"]["samples"][-3].update(threads=2))


def unanswered_request(workdir: Path) -> None:
    def edit(s: dict[str, Any]) -> None:
        request = next(r for r in s["requests"] if r["kind"] == "status")
        request.update(ok=False, error="TimeoutError: timed out", reply=None)

    edit_state(workdir, edit)


def reload_changes_more(workdir: Path) -> None:
    def edit(s: dict[str, Any]) -> None:
        reload = next(r for r in s["reloads"] if r["via"] == "socket")
        reload["result"]["result"]["changed"].append("stubborn")

    edit_state(workdir, edit)


FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "a line dropped": (drop_line, "output lines"),
    "a line repeated": (repeat_line, "output lines"),
    "two lines swapped": (swap_lines, "output lines"),
    "a line torn": (tear_line, "output lines"),
    "a junk byte changed": (change_junk, "binary junk"),
    "an exit code changed": (wrong_exit_code, "exit statuses"),
    "an exit lost": (lost_exit, "exit statuses"),
    "an orphan's reaping lost": (lost_orphan, "orphans reaped"),
    "a restart delay doubled": (wrong_delay, "restart decisions"),
    "a start after shutdown began": (start_during_shutdown, "shutdown"),
    "a traceback on stderr": (traceback_on_stderr, "tinit's own log"),
    "forwarded signals lost": (signals_lost, "forwarded signals"),
    "a zombie older than 1 s": (old_zombie, "no zombie older than 1 s"),
    "exit code 0 after a SIGKILL": (exit_zero, "shutdown"),
    "RSS grows 4 MiB": (rss_grows, "RSS flat"),
    "an fd leaks": (fd_leaks, "fds flat"),
    "a second thread": (second_thread, "single thread"),
    "a request unanswered": (unanswered_request, "control socket"),
    "a reload restarts one more service": (reload_changes_more, "reloads"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_checker_catches_a_planted_fault(
    kept: tuple[int, dict[str, Any], Path], tmp_path: Path, fault: str
) -> None:
    """The soak's checker, run on a copy of the green run with one fault planted, names it."""
    plant, invariant = FAULTS[fault]
    _, _, workdir = kept
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns("*.sock"))
    plant(copy)
    code, data, output = soak(
        "--analyse", str(copy), "--json", str(tmp_path / "out.json"), timeout=100
    )
    failed = {c["name"] for c in data.get("checks", []) if c["verdict"] == "FAIL"}
    assert code == 1, output[-3000:]
    assert invariant in failed, failed
