"""Privileges of services, end to end: user switch, capabilities, no_new_privs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.svcrun import run_config

pytestmark = pytest.mark.timeout(60)

# The venv may live where nobody can read it; the system python serves non-root services.
SYSTEM_PYTHON = "/usr/bin/python3"


def _port_80_free() -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 80))
        except OSError:
            return False
    return True


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to switch users")
@pytest.mark.skipif(not _port_80_free(), reason="port 80 is taken on this machine")
def test_non_root_service_with_net_bind_service_binds_port_80(tmp_path: Path) -> None:
    bind = f"[{SYSTEM_PYTHON}, -c, \"import os, socket; s = socket.socket(); s.bind(('127.0.0.1', 80)); print('bound as', os.getuid())\"]"
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          web:
            command: {bind}
            user: nobody
            capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}
            restart: never
          plain:
            command: {bind}
            user: nobody
            restart: never
        """,
    )
    assert result.output("web") == ["bound as 65534"]
    assert result.output("plain") == []  # EACCES: no capability, no bind
    assert "PermissionError" in result.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="needs root")
def test_drop_all_root_service_cannot_chown_and_no_new_privs_is_set(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          locked:
            command: "sh -c 'grep NoNewPrivs /proc/self/status; chown 65534 {target} && echo chowned || echo refused'"
            capabilities: {{drop: [ALL]}}
            no_new_privs: true
            restart: never
        """,
    )
    assert result.output("locked") == ["NoNewPrivs:\t1", "refused"]
    assert target.stat().st_uid == 0


@pytest.mark.skipif(os.getuid() != 0, reason="needs root")
def test_workdir_the_user_cannot_enter_is_a_failed_start_with_a_clear_reason(
    tmp_path: Path,
) -> None:
    result = run_config(
        tmp_path,
        """
        version: 1
        services:
          app:
            command: "true"
            user: nobody
            workdir: /root/definitely-not-there
            restart: never
        """,
    )
    failed = result.named("service_start_failed", "app")
    assert failed
    assert "chdir" in failed[0]["error"]
    assert result.code == 126
