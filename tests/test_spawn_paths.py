"""A service starts in the same state whether tinit spawns it or forks it.

Without cgroup placement or a user switch a service is started with
``posix_spawn`` (spawn.py); with cgroups it is forked and joins its cgroup
before exec. Each test runs tinit as PID 1 both ways where it can, and the
service reports what it got: signal state, fds, session, working directory,
umask, and how a failed start is told.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import pytest

from tests.svcrun import Result, finish, start, write_config

if TYPE_CHECKING:
    from pathlib import Path

#: glibc's own two signals, left ignored by its posix_spawn (see spawn._spawnable)
_GLIBC_INTERNAL: frozenset[int] = frozenset({32, 33})

_REPORT = r"""
import fcntl, json, os, sys
def is_open(fd):
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFD) >= 0
    except OSError:
        return False
# (the listing's own fd is closed by the time each is checked)
fds = sorted(fd for fd in map(int, os.listdir("/proc/self/fd")) if is_open(fd))
json.dump({
    "fds": fds,
    "sid": os.getsid(0),
    "pid": os.getpid(),
    "cwd": os.getcwd(),
    "umask": os.umask(0),
    "cgroup": open("/proc/self/cgroup").read().strip(),
}, open(sys.argv[1], "w"))
"""


def run_config(tmp_path: Path, body: str, args: tuple[str, ...], **popen: Any) -> Result:
    return finish(start(write_config(tmp_path, body), *args, **popen))


def _ways() -> list[Any]:
    with_cgroups = pytest.param((), id="forked-into-a-cgroup")
    return [pytest.param(("--no-cgroups",), id="spawned"), with_cgroups]


def _signals(mask: int) -> set[int]:
    return {n + 1 for n in range(64) if mask >> n & 1}


@pytest.mark.parametrize("args", _ways())
def test_a_service_starts_clean_either_way(tmp_path: Path, args: tuple[str, ...]) -> None:
    script = tmp_path / "report.py"
    script.write_text(_REPORT)
    report = tmp_path / "report.json"
    workdir = tmp_path / "work"
    workdir.mkdir()
    # An fd tinit was handed and no service asked for (inherit_fds) reaches none.
    kept_r, kept_w = os.pipe()
    try:
        result = _run_reporter(tmp_path, script, report, workdir, args, pass_fds=(kept_w,))
    finally:
        os.close(kept_r)
        os.close(kept_w)
    assert result.code == 0, result.stderr
    got = json.loads(report.read_text())
    # Handlers never survive an exec; the mask and ignored signals do.
    state = {key: int(value, 16) for key, value in map(str.split, result.output("signals"))}
    assert state["SigBlk:"] == 0
    assert _signals(state["SigIgn:"]) <= _GLIBC_INTERNAL
    assert got["fds"] == [0, 1, 2]
    assert got["sid"] == got["pid"]  # a session of its own
    assert got["cwd"] == str(workdir)
    assert got["umask"] == 0o027
    if not args and "tinit" in got["cgroup"]:
        assert _signals(state["SigIgn:"]) == set()  # forked: not even glibc's own


def _run_reporter(
    tmp_path: Path, script: Path, report: Path, workdir: Path, args: tuple[str, ...], **popen: Any
) -> Result:
    return run_config(
        tmp_path,
        f"""
        version: 1
        services:
          probe:
            command: [PYTHON, -S, {script}, {report}]
            oneshot: true
            workdir: {workdir}
            umask: "027"
          # Python ignores SIGPIPE and SIGXFSZ itself as it starts, so the
          # signal state is read by a program that leaves it alone.
          signals:
            command: [grep, -E, "^Sig(Blk|Ign)", /proc/self/status]
            oneshot: true
        """,
        args,
        **popen,
    )


def test_a_spawned_service_keeps_tinits_own_directory_and_umask(tmp_path: Path) -> None:
    """tinit borrows its cwd and umask for a spawn; the next service sees tinit's own."""
    script = tmp_path / "report.py"
    script.write_text(_REPORT)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          first:
            command: [PYTHON, -S, {script}, {first}]
            oneshot: true
            workdir: {workdir}
            umask: "077"
          second:
            command: [PYTHON, -S, {script}, {second}]
            oneshot: true
            depends_on: {{first: completed}}
        """,
        args=("--no-cgroups",),
    )
    assert result.code == 0, result.stderr
    assert json.loads(first.read_text())["cwd"] == str(workdir)
    after = json.loads(second.read_text())
    assert after["cwd"] != str(workdir)
    own = os.umask(0)
    os.umask(own)
    assert after["umask"] == own  # tinit's, inherited from this test


#: programs whose exec fails: (file contents, mode, exit code, the error's words)
_UNRUNNABLE: dict[str, tuple[str, int, int, str]] = {
    "bad-interpreter": ("#!/nonexistent/interpreter\n", 0o755, 127, "command not found"),
    "not-a-program": ("\x01\x02 garbage\n", 0o755, 126, "Exec format error"),
}


@pytest.mark.parametrize("args", _ways())
@pytest.mark.parametrize("kind", sorted(_UNRUNNABLE))
def test_a_failed_exec_is_told_the_same_way(
    tmp_path: Path, args: tuple[str, ...], kind: str
) -> None:
    text, mode, code, words = _UNRUNNABLE[kind]
    program = tmp_path / kind
    program.write_text(text)
    program.chmod(mode)
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          broken:
            command: [{program}]
            restart: never
        """,
        args=args,
    )
    found = result.named("service_start_failed", "broken")
    assert len(found) == 1, result.stderr
    failed = found[0]
    assert failed["exit_code"] == code
    assert words in failed["error"]


@pytest.mark.parametrize("args", _ways())
def test_a_missing_workdir_is_a_failed_start_at_chdir(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    gone = tmp_path / "gone"
    config = f"""
        version: 1
        services:
          lost:
            command: [/bin/true]
            restart: never
            workdir: {gone}
        """
    result = run_config(tmp_path, config, args=args)
    (failed,) = result.named("service_start_failed", "lost")
    assert "chdir" in failed["error"] or "No such file" in failed["error"]
    assert failed["exit_code"] != 0
