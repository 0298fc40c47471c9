"""Exec probes run inside their service, end to end: its user, env, workdir and namespaces.

Each service here has an exec ready probe that writes what it sees to a
file, then the service exits: the run is short and the file says where the
probe ran. Cgroups are covered in tests/test_cgroups_e2e.py (a cgroup v2 guest).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.svcrun import run_config

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="switching users and namespaces need root"),
]


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may write, outside /tmp (a private /tmp would hide it)."""
    path = Path(tempfile.mkdtemp(prefix="tinit-probe-", dir="/dev/shm"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_exec_probe_runs_as_the_services_user(tmp_path: Path, shared: Path) -> None:
    out = shared / "probe"
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          app:
            command: "sh -c 'sleep 1'"
            user: nobody
            restart: never
            ready: {{exec: "sh -c 'id -u > {out}; id -G >> {out}; echo $HOME >> {out}'", interval: 50ms}}
        """,
    )
    assert result.code == 0, result.stderr
    assert result.named("service_ready", "app"), result.stderr
    uid, groups, home = out.read_text().splitlines()
    assert uid == "65534"
    assert "0" not in groups.split()  # root's group was not kept
    assert home == "/nonexistent"


def test_exec_probe_sees_the_services_env_and_workdir(tmp_path: Path, shared: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    out = shared / "probe"
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          app:
            command: "sh -c 'sleep 1'"
            env: {{PROBE_SEES: from-the-service}}
            workdir: {workdir}
            restart: never
            ready: {{exec: "sh -c 'echo $PROBE_SEES > {out}; pwd >> {out}'", interval: 50ms}}
        """,
    )
    assert result.code == 0, result.stderr
    assert out.read_text().splitlines() == ["from-the-service", str(workdir)]


def test_exec_probe_joins_the_services_namespaces(tmp_path: Path, shared: Path) -> None:
    marker = f"tinit-probe-{os.getpid()}"
    links = "readlink /proc/self/ns/pid /proc/self/ns/net /proc/self/ns/mnt"
    out = shared / "probe"
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          app:
            command: "sh -c 'echo hello > /tmp/{marker}; {links}; sleep 1'"
            namespaces: {{private_tmp: true, network: none, pid: private}}
            restart: never
            ready: {{exec: "sh -c 'cat /tmp/{marker} > {out} && {links} >> {out}'", interval: 50ms}}
        """,
    )
    assert result.code == 0, result.stderr
    assert result.named("service_ready", "app"), result.stderr
    seen = out.read_text().splitlines()
    assert seen[0] == "hello"  # the service's own /tmp
    service_links = result.output("app")
    assert len(service_links) == 3
    assert seen[1:] == service_links
    assert service_links != [os.readlink(f"/proc/self/ns/{k}") for k in ("pid", "net", "mnt")]
    assert not Path(f"/tmp/{marker}").exists()


def test_exec_probe_does_not_see_the_hosts_tmp(tmp_path: Path) -> None:
    """A file in tinit's /tmp is not in the service's private one: the probe never passes."""
    host_file = Path(f"/tmp/tinit-probe-host-{os.getpid()}")
    host_file.write_text("x")
    try:
        result = run_config(
            tmp_path,
            f"""
        version: 1
        services:
          app:
            command: "sleep 5"
            namespaces: {{private_tmp: true}}
            restart: never
            ready: {{exec: "test -e {host_file}", interval: 50ms, start_timeout: 500ms}}
        """,
        )
    finally:
        host_file.unlink()
    assert result.named("service_not_ready", "app"), result.stderr
    assert not result.named("service_ready", "app")
