"""Shared helpers for tinit's benchmarks: Python standard library only.

Each benchmark starts real processes, usually as PID 1 of a fresh PID
namespace made by ``unshare --pid --fork --mount-proc --kill-child``, and
reads what it needs from /proc. Everything here is bounded: every wait has a
timeout, and every process started through :class:`Launched` is ended and
waited for when its ``with`` block ends.

Times are read with ``time.monotonic_ns()`` (CLOCK_MONOTONIC), which is the
same clock inside and outside a PID namespace, so a timestamp written by a
process in the namespace can be compared with one taken by the benchmark.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import math
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
VENV_BIN: Final = ROOT / ".venv" / "bin"
TINIT: Final = VENV_BIN / "tinit"
VENV_PYTHON: Final = VENV_BIN / "python"
#: The interpreter for helper programs inside the namespace: the system one,
#: started with -S, which is quicker to start than the venv's.
SYSTEM_PYTHON: Final = "/usr/bin/python3"
UNSHARE: Final = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """Progress for the person running the benchmark: stderr, never the table."""
    print(message, file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A measurement could not be taken (a process failed, or a timeout)."""


# --- set-up -------------------------------------------------------------------


def ensure_debian_packages(commands: dict[str, str]) -> None:
    """Install the Debian packages whose command is missing; one line either way.

    ``commands`` maps a command name to the package that provides it.
    """
    missing = sorted({pkg for cmd, pkg in commands.items() if shutil.which(cmd) is None})
    if not missing:
        log(f"bench: {', '.join(sorted(commands))} already installed")
        return
    log(f"bench: installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if _quiet_run(install, env, check=False) != 0:
        _quiet_run(["apt-get", "update", "-q"], env, check=True)
        _quiet_run(install, env, check=True)
    still = [cmd for cmd in commands if shutil.which(cmd) is None]
    if still:
        raise BenchError(f"still missing after apt-get: {', '.join(still)}")


def _quiet_run(argv: Sequence[str], env: dict[str, str], *, check: bool) -> int:
    devnull = subprocess.DEVNULL
    done = subprocess.run(argv, env=env, stdout=devnull, stderr=devnull, timeout=900, check=check)
    return done.returncode


# --- processes ------------------------------------------------------------------


class Launched:
    """One process started for a measurement, optionally as an unshare'd PID namespace.

    ``t_launch`` is taken right before ``Popen``. With ``namespace=True`` the
    process is ``unshare ... ARGV`` and :meth:`init_pid` finds ARGV's process
    (PID 1 inside) by its host pid. stdout is a pipe when ``capture`` is set;
    stderr goes to a temporary file, shown when something fails.
    """

    def __init__(self, argv: Sequence[str], *, namespace: bool = True, capture: bool = True):
        self.argv = [*UNSHARE, *argv] if namespace else list(argv)
        self.namespace = namespace
        # Closed by close(): its life is the process's, not one block's.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._buffer = b""
        self._init_pid: int | None = None
        self._init_pidfd: int | None = None
        self.t_launch = time.monotonic_ns()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=self._stderr,
            close_fds=True,
        )
        self._pidfd = os.pidfd_open(self.proc.pid)

    def __enter__(self) -> Launched:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def stdout_fd(self) -> int:
        if self.proc.stdout is None:
            raise BenchError("stdout is not captured")
        return self.proc.stdout.fileno()

    def init_pid(self, timeout: float = 10.0) -> int:
        """The host pid of unshare's child: PID 1 of the namespace."""
        if self._init_pid is not None:
            return self._init_pid
        if not self.namespace:
            self._init_pid = self.proc.pid
            self._init_pidfd = os.pidfd_open(self.proc.pid)
            return self._init_pid
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                found = Path(path).read_text().split()
                if found:
                    pid = int(found[0])
                    # A pidfd pins this very process: no pid-reuse race when we kill it.
                    self._init_pidfd = os.pidfd_open(pid)
                    self._init_pid = pid
                    return pid
            if self.proc.poll() is not None:
                raise BenchError(f"{self.describe()} exited early: {self.proc.returncode}")
            time.sleep(0.001)
        raise BenchError(f"{self.describe()}: no process inside the namespace after {timeout}s")

    def read_some(self, timeout: float) -> tuple[bytes, int]:
        """Block until stdout has data (or EOF); return it with the time it was read."""
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data, time.monotonic_ns()
        if not _wait_readable(self.stdout_fd, timeout):
            raise BenchError(f"{self.describe()}: no output within {timeout}s")
        data = os.read(self.stdout_fd, 65536)
        return data, time.monotonic_ns()

    def read_line(self, timeout: float) -> bytes:
        """The next line of stdout, without its newline; EOF is an error."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not _wait_readable(self.stdout_fd, left):
                raise BenchError(f"{self.describe()}: no full line within {timeout}s")
            chunk = os.read(self.stdout_fd, 65536)
            if not chunk:
                raise BenchError(f"{self.describe()}: EOF before a full line{self.stderr_tail()}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def wait_exit(self, timeout: float) -> tuple[int, int]:
        """Wait for the launched process to exit: (time it was seen, exit code).

        Waits on a pidfd, so the time is taken as the exit happens (Popen.wait
        with a timeout polls with sleeps of up to 50 ms).
        """
        if not _wait_readable(self._pidfd, timeout):
            raise BenchError(f"{self.describe()}: still running after {timeout}s")
        seen = time.monotonic_ns()
        return seen, self.proc.wait(timeout=5)

    def describe(self) -> str:
        return " ".join(self.argv[len(UNSHARE) if self.namespace else 0 :])[:80]

    def stderr_text(self) -> str:
        """Everything written to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stderr_tail(self) -> str:
        """The end of stderr, ready to append to an error message."""
        text = self.stderr_text()[-600:].strip()
        return f"; stderr: {text}" if text else ""

    def close(self) -> None:
        """SIGKILL PID 1 of the namespace (ending it) or the process; wait for the end."""
        try:
            if self.proc.poll() is None:
                if self._init_pidfd is not None:
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(timeout=10)
                if self.proc.poll() is None:
                    # unshare's --kill-child takes PID 1 (and so the namespace) with it.
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            for fd in (self._pidfd, self._init_pidfd):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._stderr.close()


def _wait_readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, math.ceil(timeout * 1000))))


# --- /proc -----------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict of stripped strings."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def status_kib(status: dict[str, str], key: str) -> int:
    """A ``NNN kB`` field of /proc/PID/status, in KiB."""
    return int(status[key].split()[0])


def cpu_ticks(pid: int) -> int:
    """utime + stime (fields 14 and 15 of /proc/PID/stat), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()  # rest[0] is field 3 (state)
    return int(rest[11]) + int(rest[12])


def signal_mask(status: dict[str, str], key: str) -> int:
    """A signal mask field of /proc/PID/status (SigBlk, SigCgt, SigPnd...) as an int."""
    return int(status[key], 16)


def takes_signal(pid: int, signum: int) -> bool:
    """Whether a signal sent now would reach the process's code.

    True once the signal is caught (SigCgt) or blocked (SigBlk, then it stays
    pending). A PID 1 that does neither has the default disposition, and the
    kernel drops such a signal for a namespace's init. A process waiting in
    sigtimedwait (tini, dumb-init) shows its blocked set without the signals
    it waits for, so that wait counts as taking the signal too.
    """
    status = proc_status(pid)
    bit = 1 << (signum - 1)
    if (signal_mask(status, "SigCgt") | signal_mask(status, "SigBlk")) & bit:
        return True
    try:
        return "sigtimedwait" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def cpu_ns(pid: int) -> int | None:
    """CPU time the process has run, in ns (/proc/PID/schedstat), if the kernel has it."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pss_kib(pid: int) -> int | None:
    """Proportional set size from /proc/PID/smaps_rollup, if the kernel has it."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def threads(pid: int) -> list[int]:
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


def cpu_pressure_total_us() -> int | None:
    """Total µs some task waited for a CPU, from /proc/pressure/cpu (PSI), if available.

    The change over a run, divided by its length, says how busy the machine
    was with other work: 0% means nothing ever waited for a CPU.
    """
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some "):
                return int(line.rpartition("total=")[2])
    except (OSError, ValueError):
        return None
    return None


# --- numbers ---------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 198th smallest)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- which tinit is measured ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TinitSnapshot:
    """tinit as committed at a git ref, unpacked outside the working tree."""

    ref: str
    commit: str
    #: the argv prefix that starts this tinit (in place of ``TINIT``)
    command: tuple[str, ...]
    #: requirements of REF's pyproject.toml the venv lacked, installed beside the snapshot
    installed: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """What a report says was measured."""
        text = f"{self.ref} = {self.commit[:12]} (a snapshot: git archive)"
        if self.installed:
            text += f"; with {', '.join(self.installed)} installed for it alone (not in the venv)"
        return text


#: How long pip may take to install a snapshot's missing dependencies.
PIP_TIMEOUT: Final = 300


def git(*args: str) -> str:
    """Run git in the repository and return its stdout; raise if it fails or hangs.

    ``safe.directory`` lets git read a tree owned by another user, as the
    repository is when mounted into the cgroup v2 guest.
    """
    argv = ["git", "-c", f"safe.directory={ROOT}", "-C", str(ROOT), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def snapshot_tinit(ref: str, top: Path) -> TinitSnapshot:
    """Unpack ``git archive REF tinit`` into ``top`` and say how to run that tinit.

    The venv's tinit is an editable install of the working tree, which may
    change while a long benchmark runs; a snapshot does not. Its directory
    goes first on PYTHONPATH, and ``-P`` keeps the current directory (the
    working tree) off sys.path. An older tinit may need a distribution the
    venv no longer has (it used to log through structlog): whatever REF's own
    pyproject.toml requires and the venv lacks is pip-installed into
    ``top/deps``, second on PYTHONPATH. ``top`` must outlive the runs: the
    caller owns it.
    """
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    archive = subprocess.run(
        ["git", "-c", f"safe.directory={ROOT}", "-C", str(ROOT), "archive", "--format=tar",
         commit, "tinit"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout  # fmt: skip
    dest = top / "tinit-src"
    dest.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    path = [str(dest)]
    missing = missing_requirements(commit)
    if missing:
        path.append(str(install_requirements(missing, top / "deps")))
    pythonpath = f"PYTHONPATH={os.pathsep.join(path)}"
    command = ("/usr/bin/env", pythonpath, str(VENV_PYTHON), "-P", "-m", "tinit")
    return TinitSnapshot(ref, commit, command, tuple(missing))


def _distribution_name(requirement: str) -> str:
    """The normalized distribution name of a PEP 508 requirement (``Foo_Bar>=1`` -> foo-bar)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise BenchError(f"cannot read the requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


# Run by the venv's Python: which of the names in argv no installed distribution has.
_UNINSTALLED: Final = """
import importlib.metadata, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
have = {norm(d.metadata["Name"] or "") for d in importlib.metadata.distributions()}
print("\\n".join(n for n in sys.argv[1:] if n not in have))
"""


def missing_requirements(commit: str) -> list[str]:
    """The requirements of ``commit``'s pyproject.toml with no distribution in the venv.

    Only presence is checked, not versions: the snapshot runs on the venv's
    versions of what it shares with the working tree, so the columns differ
    by tinit's code and the distributions added for it alone.
    """
    try:
        project = tomllib.loads(git("show", f"{commit}:pyproject.toml")).get("project", {})
    except (subprocess.CalledProcessError, tomllib.TOMLDecodeError) as exc:
        raise BenchError(f"{commit[:12]}: cannot read its pyproject.toml: {exc}") from exc
    requirements = [str(r) for r in project.get("dependencies", [])]
    names = [_distribution_name(r) for r in requirements]
    argv = [str(VENV_PYTHON), "-I", "-c", _UNINSTALLED, *names]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise BenchError(f"cannot list the venv's distributions: {done.stderr.strip()[-300:]}")
    absent = set(done.stdout.split())
    return [r for r, name in zip(requirements, names, strict=True) if name in absent]


def install_requirements(requirements: Sequence[str], target: Path) -> Path:
    """pip-install ``requirements`` into ``target``, not into the venv.

    pip puts what they depend on there too, even a distribution the venv has
    (``--target`` ignores what is installed); a snapshot dependency that needs
    a shared one would then run on pip's copy.
    """
    log(f"bench: installing {', '.join(requirements)} for the snapshot, into {target}")
    argv = [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-input", "--target", str(target), *requirements]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"pip install {' '.join(requirements)}: over {PIP_TIMEOUT} s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-600:]
        raise BenchError(f"pip install {' '.join(requirements)} failed: {tail}")
    return target


# --- the machine -------------------------------------------------------------------


def _command_output(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=20, check=False, text=True)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.stdout + done.stderr else ""


def deb_version(package: str) -> str:
    return _command_output(["dpkg-query", "-W", "-f=${Version}", package]) or "n/a"


def tinit_tree() -> str:
    """Which tinit was measured: the git commit, and a digest of tinit/*.py as it is."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "tinit").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    head = _command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _command_output(["git", "-C", str(ROOT), "status", "--porcelain", "--", "tinit"])
    state = " with uncommitted changes in tinit/" if dirty else ""
    return f"commit {head}{state}; tinit/*.py sha256 {digest.hexdigest()[:12]}"


def machine_info() -> dict[str, str]:
    """What a reader needs to compare a run with theirs."""
    model = "n/a"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    distro = "n/a"
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.partition("=")[2].strip('"')
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "kernel": platform.release(),
        "os": distro,
        "python (tinit)": _command_output([str(VENV_PYTHON), "--version"]),
        "python (helpers)": _command_output([SYSTEM_PYTHON, "--version"]),
        "trio": _command_output(
            [str(VENV_PYTHON), "-c", "import importlib.metadata as m; print(m.version('trio'))"]
        ),
        "tini": f"{_command_output(['tini', '--version'])} (deb {deb_version('tini')})",
        "dumb-init": (
            f"{_command_output(['dumb-init', '--version'])} (deb {deb_version('dumb-init')})"
        ),
        "unshare": _command_output(["unshare", "--version"]),
        "tinit": tinit_tree(),
    }
