"""Run tinit for real, as PID 1 of a fresh PID namespace or as a plain process.

Tests talk to the real thing: ``unshare --pid --fork --mount-proc`` makes the
namespace, tinit is its PID 1, and the test signals tinit by its pid as the
host sees it. ``--kill-child`` ties the namespace to unshare, so killing
unshare ends everything inside; :func:`reap_leftovers` does that for any
tinit a test leaves behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

_live: list[subprocess.Popen[bytes]] = []


def tinit_argv(*args: str) -> list[str]:
    return [PYTHON, "-m", "tinit", *args]


def py(code: str) -> list[str]:
    """argv for a Python snippet, in the style of trio's subprocess tests."""
    return [PYTHON, "-u", "-c", code]


def imported_modules(stderr: str) -> set[str]:
    """Module names from the ``python -X importtime`` lines (PYTHONPROFILEIMPORTTIME) of stderr."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


class Tinit:
    """A running tinit; ``pid`` is tinit itself (PID 1 inside, when namespaced)."""

    def __init__(
        self,
        *args: str,
        namespace: bool = True,
        env: dict[str, str] | None = None,
        **popen: Any,
    ) -> None:
        argv = tinit_argv(*args)
        if namespace:
            argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv]
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        # Files, not pipes: a test that reads the output only at the end must
        # never make tinit wait for a reader.
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by wait()
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by wait()
        popen.setdefault("stdout", self._out)
        popen.setdefault("stderr", self._err)
        self.env = full_env
        self.proc = subprocess.Popen(argv, env=full_env, cwd=ROOT, **popen)
        _live.append(self.proc)
        self.namespace = namespace
        self.pid = self._find_tinit() if namespace else self.proc.pid

    def _find_tinit(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                children = Path(path).read_text().split()
                if children:
                    return int(children[0])
            if self.proc.poll() is not None:
                raise RuntimeError(f"unshare exited early with {self.proc.returncode}")
            time.sleep(0.005)
        raise TimeoutError("tinit did not start inside the namespace")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stderr_so_far(self) -> str:
        """What tinit has written to stderr until now (the run goes on)."""
        fd = self._err.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def wait(self, timeout: float = 20.0) -> tuple[int, str, str]:
        """Wait for the end; return (exit code, stdout, stderr)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        out = out if out is not None else self._read(self._out)
        err = err if err is not None else self._read(self._err)
        return self.proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    @staticmethod
    def _read(file: IO[bytes]) -> bytes:
        file.seek(0)
        data = file.read()
        file.close()
        return data

    def kill(self) -> None:
        kill_tree(self.proc)


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process and, through unshare --kill-child, its whole namespace."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            stream.close()


def reap_leftovers() -> None:
    while _live:
        kill_tree(_live.pop())


def run(*args: str, timeout: float = 20.0, **kwargs: Any) -> tuple[int, str, str]:
    """Run tinit to completion as PID 1 of a new namespace."""
    return Tinit(*args, **kwargs).wait(timeout)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
